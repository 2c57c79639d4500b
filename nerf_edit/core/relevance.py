"""WYS relevance maps: where an instruction acts, from |ε(z_t, I, T) − ε(z_t, I, ∅)|.

The functions take any noise predictor, so the math is testable with a planted predictor whose answer is known.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from nerf_edit.core.masks import dilate

# (noisy latents [B, C, h, w], timestep) -> (ε with text [B, C, h, w], ε without text [B, C, h, w])
TextNullPredictor = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def relevance_from_predictions(eps_text: torch.Tensor, eps_null: torch.Tensor) -> torch.Tensor:
    """Raw relevance: absolute prediction difference summed over latent channels. [B, C, h, w] x2 -> [B, h, w]"""
    return (eps_text.float() - eps_null.float()).abs().sum(dim=1)


def clip_and_normalize(relevance: torch.Tensor, iqr_k: float = 1.5) -> torch.Tensor:
    """Clip each map to [0, Q3 + k·IQR] (outlier suppression) and min-max normalise to [0, 1]. [B, h, w]"""
    flat = relevance.float().flatten(1)  # [B, h*w]
    q1, q3 = torch.quantile(flat, torch.tensor([0.25, 0.75], device=flat.device), dim=1)  # [B] each
    upper = q3 + iqr_k * (q3 - q1)
    # A sparse map (relevant region under a quarter of the image, zero elsewhere) has Q3 = IQR = 0: clipping
    # there would erase it, so such maps are only normalised.
    upper = torch.where(upper > flat.amin(dim=1), upper, flat.amax(dim=1))[:, None, None]
    clipped = torch.minimum(relevance.float().clamp(min=0), upper)
    low = clipped.amin(dim=(1, 2), keepdim=True)
    high = clipped.amax(dim=(1, 2), keepdim=True)
    return (clipped - low) / (high - low).clamp_min(1e-12)


def relevance_map(
    predict: TextNullPredictor,
    latents: torch.Tensor,
    add_noise: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    timestep: int,
    num_samples: int = 1,
    iqr_k: float = 1.5,
    output_size: tuple[int, int] | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Relevance of an instruction for images with latents z0 [B, C, h, w]; returns [B, H, W] in [0, 1].

    z0 is noised to `timestep` (WYS: 0.8·T) with `add_noise(z0, noise, t)` (a scheduler's), the raw relevance is
    averaged over `num_samples` noise draws, then clipped, normalised and bilinearly resized to `output_size`.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    t = torch.tensor([timestep], device=latents.device)
    total = torch.zeros(latents.shape[0], *latents.shape[2:], device=latents.device)
    for _ in range(num_samples):
        noise = torch.randn(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
        eps_text, eps_null = predict(add_noise(latents, noise, t), t)
        total += relevance_from_predictions(eps_text, eps_null)
    relevance = clip_and_normalize(total / num_samples, iqr_k)
    if output_size is not None and tuple(output_size) != tuple(relevance.shape[1:]):
        relevance = F.interpolate(relevance[:, None], size=output_size, mode="bilinear", align_corners=False)[:, 0]
    return relevance.clamp(0, 1)


def relevance_mask(relevance: torch.Tensor, tau: float = 0.5, dilate_px: int = 0) -> torch.Tensor:
    """Edit mask: relevance >= τ (τ = 0 edits everywhere), optionally dilated by `dilate_px`. [B, H, W] -> bool"""
    return dilate(relevance >= tau, dilate_px)
