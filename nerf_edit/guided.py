"""Relevance-guided denoising: the sampler changes latents only inside the mask.

After every scheduler step, outside the mask the latents are replaced with the input re-noised to the next
timestep with the same fixed noise, and with the input's z0 itself after the last step; the decoded edit is then
composited so pixels outside the (dilated) mask are exactly the input.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

# (noisy latents, already scaled for the scheduler [B, C, h, w], timestep) -> guided ε [B, C, h, w]
NoisePredictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# (step index, timestep, latents after the step and blend [B, C, h, w]) -> None
StepCallback = Callable[[int, torch.Tensor, torch.Tensor], None]


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


def guided_denoise(
    predict: NoisePredictor,
    scheduler,
    initial_latents: torch.Tensor,
    clean_latents: torch.Tensor,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
    latent_mask: Optional[torch.Tensor] = None,
    on_step: Optional[StepCallback] = None,
) -> torch.Tensor:
    """Denoise `initial_latents` [B, C, h, w] over `timesteps`, editing only where `latent_mask` [B, 1, h, w] is True.

    `clean_latents` (z0) and `noise` are the input's latents and the fixed noise that re-noises them; with no mask
    this is plain sampling. The scheduler must add noise at arbitrary timesteps (DDIM, DDPM).
    """
    latents = initial_latents
    for i, t in enumerate(timesteps):
        eps = predict(scheduler.scale_model_input(latents, t), t)
        latents = scheduler.step(eps, t, latents).prev_sample
        if latent_mask is not None:
            if i + 1 < len(timesteps):
                known = scheduler.add_noise(clean_latents, noise, timesteps[i + 1 : i + 2])
            else:
                known = clean_latents
            latents = torch.where(latent_mask, latents, known.to(latents.dtype))
        if on_step is not None:
            on_step(i, t, latents)
    return latents


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
