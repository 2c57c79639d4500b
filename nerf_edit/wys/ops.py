"""Watch Your Steps' mathematics as plain functions (Mirzaei et al., ECCV 2024; official code
SamsungLabs/WatchYourSteps, read only).

- relevance maps: where an instruction acts, from |ε(z_t, I, T) − ε(z_t, I, ∅)|, clipped at Q3 + k·IQR and
  normalised (`relevance_map`; any noise predictor, so a planted predictor's known answer tests it);
- the 2D edit's mask and composite: `relevance_mask`, `feathered_weights`, `composite`;
- the 3D method's: the edit mask from the rendered relevance (`rendered_relevance_mask`), with the view's own target
  (`edit_region`), and the relevance field's loss (`masked_relevance_loss`, one rule for both backends).
"""

from __future__ import annotations

from typing import Callable, Optional

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
    The noise is drawn image by image from `generator` (see `per_image_noise`), so a batch's maps equal its images'
    maps computed one by one with the same generator.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    t = torch.tensor([timestep], device=latents.device)
    total = torch.zeros(latents.shape[0], *latents.shape[2:], device=latents.device)
    noises = per_image_noise(latents, num_samples, generator)  # [S, B, C, h, w]
    for noise in noises:
        eps_text, eps_null = predict(add_noise(latents, noise, t), t)
        total += relevance_from_predictions(eps_text, eps_null)
    relevance = clip_and_normalize(total / num_samples, iqr_k)
    if output_size is not None and tuple(output_size) != tuple(relevance.shape[1:]):
        relevance = F.interpolate(relevance[:, None], size=output_size, mode="bilinear", align_corners=False)[:, 0]
    return relevance.clamp(0, 1)


def per_image_noise(latents: torch.Tensor, num_samples: int, generator: Optional[torch.Generator] = None
                    ) -> torch.Tensor:
    """`num_samples` standard normal draws shaped like `latents` [B, C, h, w] -> [S, B, C, h, w], drawn image by
    image (all of one image's samples, then the next image's) on the generator's device: the same generator then
    gives an image the same noise whether it comes alone or in a batch."""
    device = generator.device if generator is not None else latents.device
    shape = (num_samples, *latents.shape[1:])
    noise = torch.stack([torch.randn(shape, generator=generator, device=device) for _ in range(latents.shape[0])], 1)
    return noise.to(device=latents.device, dtype=latents.dtype)


def relevance_mask(relevance: torch.Tensor, tau: float = 0.5, dilate_px: int = 0) -> torch.Tensor:
    """Edit mask: relevance >= τ (τ = 0 edits everywhere), optionally dilated by `dilate_px`. [B, H, W] -> bool"""
    return dilate(relevance >= tau, dilate_px)


def feathered_weights(pixel_mask: torch.Tensor, feather_px: int = 0) -> torch.Tensor:
    """Composite weights: the mask box-blurred by `feather_px`, zero wherever the mask is. [B, H, W] -> [B, 1, H, W]"""
    weights = pixel_mask[:, None].float()
    if feather_px > 0:
        kernel = 2 * feather_px + 1
        weights = F.avg_pool2d(weights, kernel, stride=1, padding=feather_px, count_include_pad=False) * weights
    return weights


def composite(edited: torch.Tensor, original: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """edit·M + input·(1 − M), exact where M is 0 or 1 (in2n_pipeline.py ~213). [B, 3, H, W] x2, [B, 1, H, W]
    -> [B, 3, H, W]"""
    blended = edited * weights + original * (1 - weights)
    blended = torch.where(weights >= 1, edited, blended)
    return torch.where(weights <= 0, original, blended)


# ------------------------------------------------------------------------------------------ the 3D method
def rendered_relevance_mask(rendered: torch.Tensor, tau: float, normalize: bool = True) -> torch.Tensor:
    """Pixels a view's edit may change: its rendered relevance [H, W], min-max normalised per view unless
    `normalize` is off (official WYS, in2n_pipeline.py ~172-174), at or above τ. -> [H, W] bool"""
    relevance = rendered.float()
    if normalize:
        low, high = relevance.min(), relevance.max()
        relevance = (relevance - low) / (high - low).clamp_min(1e-12)
    return relevance >= tau


def edit_region(rendered: torch.Tensor, tau: float, normalize: bool = True,
                target: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Pixels a view's edit may change: its rendered relevance's mask (`rendered_relevance_mask`), and with `target`
    [H, W] (the view's own relevance target: the editor's 2D relevance of it) also the target at or above τ. The
    rendered relevance can only sit on surfaces the scene has; the target also marks where an instruction adds
    something (a hat above a head: floor and sky in every other view). -> [H, W] bool"""
    mask = rendered_relevance_mask(rendered, tau, normalize)
    return mask if target is None else mask | (target.to(mask.device) >= tau)


def masked_relevance_loss(predicted: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The relevance field's loss: the mean squared error over the pixels (or rays) that have a target.
    predicted, target [..., 1], valid [..., 1] bool or 0/1 -> scalar. With no valid pixel it is 0, still part of the
    graph (so both backends log it and a step without targets moves nothing)."""
    valid = valid.to(predicted)
    squared = (predicted - target.to(predicted)).square() * valid
    return squared.sum() / valid.sum().clamp_min(1)
