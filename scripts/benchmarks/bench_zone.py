"""ZONE: seconds per stage of one edit, and the cost of recording cross-attention.

CPU (default): the tiny random-weight IP2P, a second tiny model as MagicBrush, and a tiny SAM, so the numbers show
where the *pipeline's own* time goes (mask maths, FFT smoother at full image size, SAM's 1024 prompts). With
--device cuda: the full-size architectures (SD-1.5 IP2P twice, SAM ViT-H) with random weights in fp16.

    python scripts/benchmarks/bench_zone.py [--device cpu|cuda] [--size 256] [--steps 20] [--repeats 3]
"""

from __future__ import annotations

import torch

from nerf_edit_scripts.benchmarks.bench_common import Flag, median_seconds, run_cli


def build_editor(device: str, steps: int):
    from nerf_edit.config.editor import EditorConfig
    from nerf_edit.config.zone import ZoneConfig
    from nerf_edit.models.ip2p import InstructPix2Pix
    from nerf_edit.models.segment import SamSegmenter
    from nerf_edit.zone.editor import ZoneEditor

    config = EditorConfig(model="tiny", device=device, steps=steps, zone=ZoneConfig(fusion_model="none", segmenter="none"))
    if device == "cpu":
        ip2p, fusion = InstructPix2Pix.from_pretrained("tiny"), InstructPix2Pix.from_pretrained("tiny:1")
        segmenter = SamSegmenter("tiny")
    else:
        from nerf_edit.models.full_size import build_full_size_ip2p_pipeline, build_full_size_sam

        ip2p = InstructPix2Pix(build_full_size_ip2p_pipeline(seed=0, dtype=torch.float16).to(device))
        fusion = InstructPix2Pix(build_full_size_ip2p_pipeline(seed=1, dtype=torch.float16).to(device))
        segmenter = SamSegmenter(build_full_size_sam(dtype=torch.float16), device=device)
    # random weights make few masks pass SAM's quality filters; keep every mask so Region-IoU sees real counts
    segmenter.options.update(pred_iou_thresh=0.0, stability_score_thresh=0.0)
    return ZoneEditor(config, ip2p=ip2p, fusion=fusion, segmenter=segmenter)


def measure(options) -> list[tuple[str, str]]:
    device = options.device
    if device == "cuda" and not torch.cuda.is_available():
        return [(f"ZONE full-size {options.size}² stages", "not measured: no GPU")]
    if device == "cpu":
        torch.set_num_threads(options.threads)
    from nerf_edit.zone.ops import fft_edge_mask

    editor = build_editor(device, options.steps)
    label = "tiny models, CPU" if device == "cpu" else f"full-size random fp16, {torch.cuda.get_device_name()}"
    image = torch.rand(1, 3, options.size, options.size, generator=torch.Generator().manual_seed(0)).to(device)
    instruction = "give him a red hat"
    editor.edit(image, instruction)  # warm-up
    editor.stages.start()
    for _ in range(options.repeats):
        editor.edit(image, instruction, generator=torch.Generator().manual_seed(0))
    stages = {name: seconds / options.repeats for name, seconds in editor.stages.seconds.items()}
    total = sum(stages.values())
    rows = [(f"ZONE {options.size}² ({label}): {name}", f"{seconds:.3f} s ({seconds / total:.0%})")
            for name, seconds in stages.items()]
    rows.append((f"ZONE {options.size}² ({label}): one edit, {options.steps} steps", f"{total:.3f} s"))
    segments = len(editor.zone.parts.segmenter(image[0]))
    rows.append((f"ZONE {options.size}² ({label}): SAM segments kept (quality filters off)", f"{segments}"))

    encoded = editor.ip2p.encode_inputs(image, image)
    noise = editor.draw_noise(image, torch.Generator().manual_seed(0))
    editor.stages.seconds = None  # the fused edits below are timed whole

    def denoise(record):
        editor.zone.fused_edit(encoded, instruction, 1.0, noise, record=record)

    plain = median_seconds(lambda: denoise(False), options.repeats, device)
    captured = median_seconds(lambda: denoise(True), options.repeats, device)
    rows.append((f"ZONE fused denoise with ÷ without attention capture ({label})", f"{captured / plain:.3f}"))

    big = torch.rand(1, 3, 512, 512, device=device)
    mask = torch.zeros(1, 512, 512, dtype=torch.bool, device=device)
    mask[:, 128:384, 160:400] = True
    smoother = median_seconds(lambda: fft_edge_mask(big, big.flip(-1), mask), options.repeats, device)
    rows.append((f"ZONE edge smoother at 512² ({device})", f"{smoother:.3f} s"))
    return rows


def main() -> None:
    run_cli(__doc__, measure, width=70, device=Flag("cpu", choices=("cpu", "cuda")), size=256, steps=20, repeats=3,
            threads=2)


if __name__ == "__main__":
    main()
