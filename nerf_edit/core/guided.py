"""The denoising loop every editor runs, and the per-step hooks that make it relevance-guided, fused or observed.

`denoise` takes a guided ε predictor, a scheduler and a list of hooks. After every scheduler step each hook gets a
`Step` (index, timestep, latents, the ε the step used, the scheduler's predicted z0) and returns the latents the
next step starts from. What makes an edit local is a hook:
  - `keep_outside(...)`: outside the mask the latents are replaced with the input re-noised to the next timestep
    with the same fixed noise (z0 itself after the last step), so only the mask changes (WYS);
  - ZONE's fusion with a second model is a hook (`nerf_edit.zone.editor.FusionHook`);
  - `adaptive_variance_hook(...)`: DDIM's η-variance inside a critical region only (ViMAEdit's sampling rule);
  - `observe(callback)` only watches (progress bars, tests, attention recorders).
The decoded edit is then composited so pixels outside the (dilated) mask are exactly the input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F

# (noisy latents, already scaled for the scheduler [B, C, h, w], timestep) -> guided ε [B, C, h, w]
NoisePredictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# (step index, timestep, latents after the step and the hooks before it [B, C, h, w]) -> None
StepCallback = Callable[[int, torch.Tensor, torch.Tensor], None]


@dataclass
class Step:
    """One finished scheduler step, as hooks see it (tensors [B, C, h, w])."""

    index: int
    timestep: torch.Tensor
    latents: torch.Tensor  # after the scheduler step and the hooks before this one
    noise_pred: torch.Tensor  # the guided ε the step used
    predicted_original: torch.Tensor  # the scheduler's z0 estimate at this step
    previous: torch.Tensor  # the latents the step started from


# Step -> the latents the next step starts from [B, C, h, w]
StepHook = Callable[[Step], torch.Tensor]


def denoise(
    predict: NoisePredictor,
    scheduler,
    latents: torch.Tensor,
    timesteps: torch.Tensor,
    hooks: Sequence[StepHook] = (),
) -> torch.Tensor:
    """Denoise `latents` [B, C, h, w] over `timesteps`; after every step the `hooks` run in order. -> [B, C, h, w]"""
    for i, t in enumerate(timesteps):
        noise_pred = predict(scheduler.scale_model_input(latents, t), t)
        output = scheduler.step(noise_pred, t, latents)
        # DDIM/DDPM give x̂0; multistep solvers (DPM-Solver) do not
        step = Step(i, t, output.prev_sample, noise_pred, getattr(output, "pred_original_sample", None), latents)
        for hook in hooks:
            step.latents = hook(step)
        latents = step.latents
    return latents


def keep_outside(
    scheduler, clean_latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor, latent_mask: torch.Tensor
) -> StepHook:
    """Hook: only cells of `latent_mask` [B, 1, h, w] change; the others are `clean_latents` (z0 [B, C, h, w])
    re-noised with the fixed `noise` to the next timestep, and z0 itself after the last step. The scheduler must
    add noise at arbitrary timesteps (DDIM, DDPM)."""

    def hook(step: Step) -> torch.Tensor:
        if step.index + 1 < len(timesteps):
            known = scheduler.add_noise(clean_latents, noise, timesteps[step.index + 1 : step.index + 2])
        else:
            known = clean_latents
        return torch.where(latent_mask, step.latents, known.to(step.latents.dtype))

    return hook


def observe(callback: StepCallback) -> StepHook:
    """Hook that calls `callback(i, t, latents)` and changes nothing (progress, tests, recorders)."""

    def hook(step: Step) -> torch.Tensor:
        callback(step.index, step.timestep, step.latents)
        return step.latents

    return hook


def latent_mask_from_pixels(pixel_mask: torch.Tensor, factor: int, mode: str = "any") -> torch.Tensor:
    """The latent cells an edit may change. [B, H, W] bool (H, W multiples of `factor`) -> [B, 1, H/f, W/f] bool

    `any`: a cell is editable if any of its `factor`² pixels is (nothing in the mask is left unedited).
    `nearest`: nearest-neighbour downsampling, i.e. each cell's top-left pixel, as the official WYS 3D code
    (SamsungLabs/WatchYourSteps in2n/in2n_pipeline.py ~175: F.interpolate(..., size=(H//8, W//8), mode="nearest")).
    """
    if mode == "any":
        return F.max_pool2d(pixel_mask[:, None].float(), factor) > 0
    if mode == "nearest":
        return pixel_mask[:, None, ::factor, ::factor].bool()
    raise ValueError(f"unknown latent mask mode {mode!r}: use 'any' or 'nearest'")


def feathered_weights(pixel_mask: torch.Tensor, feather_px: int = 0) -> torch.Tensor:
    """Composite weights: the mask box-blurred by `feather_px`, zero wherever the mask is. [B, H, W] -> [B, 1, H, W]"""
    weights = pixel_mask[:, None].float()
    if feather_px > 0:
        kernel = 2 * feather_px + 1
        weights = F.avg_pool2d(weights, kernel, stride=1, padding=feather_px, count_include_pad=False) * weights
    return weights


def composite(edited: torch.Tensor, original: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """edit·M + input·(1 − M), exact where M is 0 or 1. [B, 3, H, W] x2, [B, 1, H, W] -> [B, 3, H, W]"""
    blended = edited * weights + original * (1 - weights)
    blended = torch.where(weights >= 1, edited, blended)
    return torch.where(weights <= 0, original, blended)


# ---------------------------------------------------------------- spatially adaptive variance (ViMAEdit)
def ddim_sigma(alpha_prod_t: torch.Tensor, alpha_prod_prev: torch.Tensor) -> torch.Tensor:
    """DDIM's σ_t(η = 1) = sqrt((1 − ᾱ_prev)/(1 − ᾱ_t) · (1 − ᾱ_t/ᾱ_prev)) (DDIM eq. 16; diffusers' _get_variance)."""
    return ((1 - alpha_prod_prev) / (1 - alpha_prod_t) * (1 - alpha_prod_t / alpha_prod_prev)).sqrt()


def adaptive_sigma(critical: torch.Tensor, sigma_ddim: torch.Tensor, eta: float = 1.0) -> torch.Tensor:
    """σ_t = η·1[critical]·σ_DDIM(t): DDIM's η-variance inside the critical region, exactly zero elsewhere.
    critical [B, 1, h, w] bool -> [B, 1, h, w]"""
    return eta * critical.float() * sigma_ddim


def adaptive_variance_hook(scheduler, critical: torch.Tensor, eta: float = 1.0,
                           generator: Optional[torch.Generator] = None):
    """ViMAEdit's spatially adaptive variance as a step hook for `guided.denoise` with a DDIM scheduler: inside
    `critical` [B, 1, h, w] bool the step is redone as DDIM with σ_t = η·σ_DDIM(t),
        x_{t-1} = √ᾱ_prev·x̂0 + √(1 − ᾱ_prev − σ_t²)·ε + σ_t·z,
    with the step's own ε and x̂0 and fresh z; outside it the deterministic step is kept, bit for bit."""
    def hook(step: Step) -> torch.Tensor:
        t = int(step.timestep)
        previous = t - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
        alpha_t = scheduler.alphas_cumprod[t]
        alpha_prev = scheduler.alphas_cumprod[previous] if previous >= 0 else scheduler.final_alpha_cumprod
        sigma = adaptive_sigma(critical, ddim_sigma(alpha_t, alpha_prev), eta).to(step.latents)  # [B, 1, h, w]
        device = generator.device if generator is not None else step.latents.device
        z = torch.randn(step.latents.shape, generator=generator, device=device).to(step.latents)
        varied = (alpha_prev.sqrt() * step.predicted_original + (1 - alpha_prev - sigma**2).sqrt() * step.noise_pred
                  + sigma * z)
        return torch.where(critical.to(step.latents.device), varied.to(step.latents.dtype), step.latents)

    return hook
