"""ViMAEdit: seconds per 512² edit (50 DDIM steps, both branches, IP-Adapter, P2P controls, grounding, adaptive
variance), with the tiny random-weight SD-1.5-shaped models on the CPU.

    python scripts/benchmarks/bench_vimaedit.py [--size 512] [--steps 50] [--repeats 2] [--threads 2]

GPU: not measured here (this machine has none; a full-size random-weight build is not written yet).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def measure(options) -> list[tuple[str, str]]:
    from nerf_edit.config.editor import EditorConfig
    from nerf_edit.config.vimaedit import ViMAEditConfig
    from nerf_edit.vimaedit.editor import ViMAEditEditor

    torch.set_num_threads(options.threads)
    config = EditorConfig(model="tiny", device="cpu")
    config.vimaedit = ViMAEditConfig(model="tiny", ip_adapter="tiny", clip_model="tiny", source_prompt="a red ball",
                                     blend_words="red blue", steps=options.steps)
    editor = ViMAEditEditor(config)
    images = torch.rand(1, 3, options.size, options.size, generator=torch.Generator().manual_seed(0))
    times = []
    for _ in range(options.repeats):
        begin = time.perf_counter()
        editor.edit(images, "a blue ball", generator=torch.Generator().manual_seed(0))
        times.append(time.perf_counter() - begin)
    label = f"ViMAEdit {options.size}² edit, {options.steps} steps (tiny SD-1.5-shaped models, CPU {options.threads} threads)"
    return [(label, f"{statistics.median(times):.2f} s"),
            (f"ViMAEdit full-size SD-1.5 {options.size}² edit on GPU", "not measured: no GPU")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    for name, value in measure(parser.parse_args()):
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
