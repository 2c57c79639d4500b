"""GPU benchmark: the full-size IP2P architecture with random weights (same FLOPs as the real model, no download).

Reports seconds per 512x512 relevance-guided edit at 20 steps, batch 1 and 8, in fp16, bf16, bf16 channels-last and
bf16 compiled (with the compile time), against issue 15's 66 ms floor; the FLOPs of one guided UNet call (batch 3,
torch's FLOP counter) and this GPU's measured matmul rate; peak memory.

    python scripts/benchmarks/bench_gpu.py [--steps 20] [--repeats 3]

Without a CUDA GPU every row says "not measured: no GPU" and it exits 0.
"""

from __future__ import annotations

import torch

from nerf_edit_scripts.benchmarks.bench_common import median_seconds, run_cli, timed


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


# Issue 15's floor for a 512², 20-step edit: 51.8 TFLOP (UNet batch-3 guidance 2.41 TFLOP × 20 + VAE 3.63 TFLOP) at
# ~790 bf16 TFLOP/s; goals: batch 1 within 3× (≤ 200 ms), batch 8 within 2× (≤ 130 ms per edit).
FLOOR_MS = 66.0
BATCHES = (1, 8)
VARIANTS = (("fp16", {}), ("bf16", {}), ("bf16 channels-last", {"channels_last": True}),
            ("bf16 compiled", {"channels_last": True, "compile": True}))


def measure(options) -> list[tuple[str, str]]:
    """(row name, value) pairs; says "not measured: no GPU" without one."""
    if not torch.cuda.is_available():
        return ([(f"GPU full-size IP2P {name}, batch {batch}: s per {options.size}² edit ({options.steps} steps) "
                  f"vs {FLOOR_MS:.0f} ms floor", "not measured: no GPU") for name, _ in VARIANTS for batch in BATCHES]
                + [("GPU UNet call FLOPs and floor", "not measured: no GPU"),
                   ("GPU torch.compile time of the UNet", "not measured: no GPU")])
    rows = []

    from nerf_edit.config.editor import EditorConfig
    from nerf_edit.models.full_size import build_full_size_ip2p_pipeline
    from nerf_edit.models.ip2p import InstructPix2Pix
    from nerf_edit.wys.editor import RelevanceGuidedEditor

    gpu = torch.cuda.get_device_name()
    for name, speed in VARIANTS:
        dtype = torch.float16 if name.startswith("fp16") else torch.bfloat16
        ip2p = InstructPix2Pix(build_full_size_ip2p_pipeline(dtype=dtype).to("cuda"))
        ip2p.speed_up(**speed)
        editor = RelevanceGuidedEditor(EditorConfig(model="full-size random", device="cuda", steps=options.steps), ip2p=ip2p)
        for batch in BATCHES:
            images = torch.rand(batch, 3, options.size, options.size, device="cuda")
            mask = torch.ones(batch, options.size, options.size, dtype=torch.bool, device="cuda")
            compile_s = timed(lambda: editor.edit(images, "turn the ball blue", mask=mask), "cuda")  # warm-up
            if speed.get("compile") and batch == BATCHES[0]:
                rows.append(("GPU torch.compile time of the UNet (first edit, incl. compiling)", f"{compile_s:.1f} s"))
            seconds = median_seconds(lambda: editor.edit(images, "turn the ball blue", mask=mask), options.repeats,
                                     "cuda") / batch
            rows.append((f"GPU full-size IP2P {name}, batch {batch}: s per {options.size}² edit ({options.steps} "
                         f"steps, {gpu}) vs {FLOOR_MS:.0f} ms floor",
                         f"{seconds:.3f} s ({seconds * 1000 / FLOOR_MS:.1f}× floor)"))
        if not speed:
            latents = torch.randn(1, 4, options.size // 8, options.size // 8, device="cuda", dtype=dtype)
            flops = unet_call_flops(ip2p, latents, latents)
            rate = matmul_tflops(dtype)
            rows.append((f"GPU {name} UNet call (batch 3) FLOPs; matmul rate",
                         f"{flops / 1e12:.2f} TFLOP; {rate:.0f} TFLOP/s"))
        rows.append((f"GPU {name} peak memory (batch {BATCHES[-1]})", f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"))
        editor = ip2p = None  # free the GPU memory before the next variant
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    return rows


if __name__ == "__main__":
    main()
