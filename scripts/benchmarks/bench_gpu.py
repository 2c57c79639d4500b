"""GPU benchmark: the full-size IP2P architecture with random weights (same FLOPs as the real model, no download).

Reports seconds per 512x512 relevance-guided edit at 20 steps in fp16 and bf16, the FLOPs of one guided UNet call
(batch 3, torch's FLOP counter), and the floor those FLOPs imply at this GPU's measured bf16 matmul rate.

    python scripts/benchmarks/bench_gpu.py [--steps 20] [--repeats 3]

Without a CUDA GPU it prints "skipped: no GPU" and exits 0.
"""

from __future__ import annotations

import torch
from bench_common import median_seconds, run_cli, timed


def matmul_tflops(dtype: torch.dtype, size: int = 8192, repeats: int = 20) -> float:
    a = torch.randn(size, size, device="cuda", dtype=dtype)
    b = torch.randn(size, size, device="cuda", dtype=dtype)
    a @ b
    seconds = timed(lambda: [a @ b for _ in range(repeats)], "cuda")
    return 2 * size**3 * repeats / seconds / 1e12


def unet_call_flops(ip2p, latents: torch.Tensor, image_latents: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        ip2p.predict_guided(latents, torch.tensor([500], device="cuda"), image_latents, "turn the ball blue")
    return counter.get_total_flops()


def main() -> None:
    run_cli(__doc__, measure, steps=20, repeats=3, size=512)


def measure(options) -> list[tuple[str, str]]:
    """(row name, value) pairs; says "skipped: no GPU" without one."""
    if not torch.cuda.is_available():
        return [(f"GPU full-size IP2P {dtype}, s per {options.size}² edit ({options.steps} steps)", "skipped: no GPU")
                for dtype in ("fp16", "bf16")] + [("GPU UNet call FLOPs and floor", "skipped: no GPU")]
    rows = []

    from nerf_edit.editors import EditorConfig, RelevanceGuidedEditor
    from nerf_edit.ip2p import InstructPix2Pix
    from nerf_edit.tiny import build_full_size_ip2p_pipeline

    gpu = torch.cuda.get_device_name()
    image = torch.rand(1, 3, options.size, options.size, device="cuda")
    for name, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        ip2p = InstructPix2Pix(build_full_size_ip2p_pipeline(dtype=dtype).to("cuda"))
        editor = RelevanceGuidedEditor(EditorConfig(model="full-size random", device="cuda", steps=options.steps), ip2p=ip2p)
        editor.edit(image, "turn the ball blue")  # warm-up
        seconds = median_seconds(lambda: editor.edit(image, "turn the ball blue"), options.repeats, "cuda")
        latents = torch.randn(1, 4, options.size // 8, options.size // 8, device="cuda", dtype=dtype)
        flops = unet_call_flops(ip2p, latents, latents)
        rate = matmul_tflops(dtype)
        floor = flops * options.steps / (rate * 1e12)
        rows += [
            (f"GPU full-size IP2P {name}, s per {options.size}² edit ({options.steps} steps, {gpu})", f"{seconds:.3f} s"),
            (f"GPU {name} UNet call (batch 3) FLOPs; floor at measured matmul rate",
             f"{flops / 1e12:.2f} TFLOP; {rate:.0f} TFLOP/s -> {floor:.3f} s ({floor / seconds:.0%} of measured)"),
            (f"GPU {name} peak memory", f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"),
        ]
        del editor, ip2p
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    return rows


if __name__ == "__main__":
    main()
