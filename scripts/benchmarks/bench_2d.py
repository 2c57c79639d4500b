"""2D benchmark on CPU with the tiny random-weight IP2P, measured side by side in one run:

  * relevance-guided edit (relevance map + masked denoising + composite) ÷ diffusers'
    StableDiffusionInstructPix2PixPipeline, same scheduler (DDIM), steps and size   (goal <= 1.10)
  * throughput of one batched call on 8 images ÷ 8 one-by-one calls                (higher is better)

    python scripts/benchmarks/bench_2d.py [--size 128] [--steps 20] [--repeats 5]

Runs alternate between the two sides so that machine load hits both alike; medians are reported.
"""

from __future__ import annotations

import statistics

import torch
from diffusers import DDIMScheduler, StableDiffusionInstructPix2PixPipeline

from nerf_edit.config.editor import EditorConfig
from nerf_edit.models.ip2p import InstructPix2Pix
from nerf_edit.models.loading import load_ip2p_pipeline
from nerf_edit.wys.editor import RelevanceGuidedEditor
from nerf_edit_scripts.benchmarks.bench_common import run_cli, timed

INSTRUCTION = "turn the ball blue"


def main() -> None:
    run_cli(__doc__, measure, size=128, steps=20, repeats=5, threads=2)


def measure(options) -> list[tuple[str, str]]:
    """(row name, value) pairs."""
    torch.set_num_threads(options.threads)

    pipe = load_ip2p_pipeline("tiny")
    reference = StableDiffusionInstructPix2PixPipeline(**pipe.components)
    ip2p = InstructPix2Pix(pipe)
    reference.scheduler = DDIMScheduler.from_config(ip2p.scheduler.config)
    reference.set_progress_bar_config(disable=True)
    editor = RelevanceGuidedEditor(EditorConfig(model="tiny", steps=options.steps), ip2p=ip2p)
    image = torch.rand(1, 3, options.size, options.size, generator=torch.Generator().manual_seed(0))
    batch = torch.rand(8, 3, options.size, options.size, generator=torch.Generator().manual_seed(1))

    def run_reference():
        reference(INSTRUCTION, image=image, num_inference_steps=options.steps, output_type="pt",
                  generator=torch.Generator().manual_seed(0))

    def run_guided(images=image):
        editor.edit(images, INSTRUCTION, generator=torch.Generator().manual_seed(0))

    def run_one_by_one():
        for i in range(len(batch)):
            run_guided(batch[i : i + 1])

    run_reference(), run_guided()  # warm-up
    reference_times, guided_times, batched_times, single_times = [], [], [], []
    for _ in range(options.repeats):
        reference_times.append(timed(run_reference))
        guided_times.append(timed(run_guided))
    for _ in range(max(1, options.repeats // 2)):
        batched_times.append(timed(lambda: run_guided(batch)))
        single_times.append(timed(run_one_by_one))
    reference_s, guided_s = statistics.median(reference_times), statistics.median(guided_times)
    batched_s, single_s = statistics.median(batched_times), statistics.median(single_times)
    setting = f"tiny IP2P {options.size}², {options.steps} DDIM steps, CPU {options.threads} threads"
    return [
        (f"2D diffusers IP2P pipeline ({setting})", f"{reference_s * 1000:.1f} ms"),
        ("2D relevance-guided edit", f"{guided_s * 1000:.1f} ms"),
        ("2D guided ÷ diffusers (goal <= 1.10)", f"{guided_s / reference_s:.3f}"),
        ("2D 8 images batched ÷ one-by-one, throughput", f"{single_s / batched_s:.2f}x"),
    ]


if __name__ == "__main__":
    main()
