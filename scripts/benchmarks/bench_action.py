"""EditAction training-step benchmark, measured side by side in one run:

  * CPU, tiny IP2P: one optimizer step (L_static + L_action + L_reg, one UNet call on 3B + the frozen reference
    on B, backward, AdamW) with cross-attention frozen vs. trained                       (ms per step)
  * GPU, full-size random-weight IP2P at 256²: step time and peak memory, frozen vs. trained cross-attention
    (the paper reports up to 45% less memory); "not measured: no GPU" without one.

    python scripts/benchmarks/bench_action.py [--size 64] [--batch 8] [--repeats 10]

Runs alternate between the two settings so that machine load hits both alike; medians are reported.
"""

from __future__ import annotations

import copy
import statistics

import torch

from nerf_edit_scripts.benchmarks.bench_common import median_seconds, run_cli, timed


def build_step(pipe, freeze: bool, batch: int, size: int, device: str, dtype=torch.float32):
    """A closure running one EditAction optimizer step on random latents/embeddings of the given shapes."""
    from nerf_edit.action.losses import draw_noise, editaction_losses, freeze_cross_attention, training_noise_scheduler

    unet = copy.deepcopy(pipe.unet).to(device).train()
    reference = copy.deepcopy(pipe.unet).requires_grad_(False).to(device, dtype)
    if freeze:
        freeze_cross_attention(unet)
    optimizer = torch.optim.AdamW([p for p in unet.parameters() if p.requires_grad], lr=1e-5)
    scheduler = training_noise_scheduler(pipe.scheduler.config)
    generator = torch.Generator().manual_seed(0)
    hidden = pipe.text_encoder.config.hidden_size
    shape = (batch, 4, size // 8, size // 8)
    latents, image_latents = torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)
    text, negative = torch.randn(batch, 77, hidden, generator=generator), torch.randn(batch, 77, hidden, generator=generator)
    null = torch.randn(1, 77, hidden, generator=generator)
    tensors = [t.to(device) for t in (latents, image_latents, text, negative, null)]

    def step():
        draw = draw_noise(shape, 1000, generator)
        with torch.autocast(device_type=device.split(":")[0], dtype=dtype, enabled=dtype != torch.float32):
            losses = editaction_losses(unet, reference, scheduler, *tensors[:4], tensors[4], draw, 0.05, 1.0, 1.0)
        losses["total"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    return step


def main() -> None:
    run_cli(__doc__, measure, size=64, batch=8, repeats=10, threads=2)


def measure(options) -> list[tuple[str, str]]:
    """(row name, value) pairs."""
    from nerf_edit.models.loading import load_ip2p_pipeline

    torch.set_num_threads(options.threads)
    pipe = load_ip2p_pipeline("tiny")
    frozen = build_step(pipe, True, options.batch, options.size, "cpu")
    trained = build_step(pipe, False, options.batch, options.size, "cpu")
    frozen(), trained()  # warm-up
    frozen_times, trained_times = [], []
    for _ in range(options.repeats):
        frozen_times.append(timed(frozen))
        trained_times.append(timed(trained))
    frozen_s, trained_s = statistics.median(frozen_times), statistics.median(trained_times)
    setting = f"tiny IP2P {options.size}², batch {options.batch}, CPU {options.threads} thread(s)"
    rows = [
        (f"EditAction step, attn2 frozen ({setting})", f"{frozen_s * 1000:.1f} ms"),
        ("EditAction step, attn2 trained", f"{trained_s * 1000:.1f} ms"),
        ("EditAction step frozen ÷ trained", f"{frozen_s / trained_s:.3f}"),
    ]
    return rows + measure_gpu(options)


def measure_gpu(options, size: int = 256, batch: int = 4, repeats: int = 5) -> list[tuple[str, str]]:
    names = [f"GPU EditAction step full-size IP2P {size}², batch {batch}, attn2 {kind}" for kind in ("frozen", "trained")]
    names.append("GPU EditAction peak memory frozen ÷ trained")
    if not torch.cuda.is_available():
        return [(name, "not measured: no GPU") for name in names]
    from nerf_edit.models.full_size import build_full_size_ip2p_pipeline

    pipe = build_full_size_ip2p_pipeline()
    results = []
    for freeze in (True, False):
        step = build_step(pipe, freeze, batch, size, "cuda", torch.float16)
        step()
        torch.cuda.reset_peak_memory_stats()
        seconds = median_seconds(step, repeats, "cuda")
        results.append((seconds, torch.cuda.max_memory_allocated() / 2**30))
        del step
        torch.cuda.empty_cache()
    return [(names[0], f"{results[0][0] * 1000:.0f} ms, peak {results[0][1]:.1f} GiB"),
            (names[1], f"{results[1][0] * 1000:.0f} ms, peak {results[1][1]:.1f} GiB"),
            (names[2], f"{results[0][1] / results[1][1]:.3f}")]


if __name__ == "__main__":
    main()
