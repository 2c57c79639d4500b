"""The denoising loop every editor runs, and the per-step hooks that make it relevance-guided, fused or observed.

`denoise` takes a guided ε predictor, a scheduler and a list of hooks. After every scheduler step each hook gets a
`Step` (index, timestep, latents, the ε the step used, the scheduler's predicted z0) and returns the latents the
next step starts from. What makes an edit local is a hook:
  - `keep_outside(...)`: outside the mask the latents are replaced with the input re-noised to the next timestep
    with the same fixed noise (z0 itself after the last step), so only the mask changes (WYS);
  - ZONE's fusion with a second model is a hook (`nerf_edit.zone.editor.FusionHook`);
  - ViMAEdit's adaptive variance is a hook of its own (`nerf_edit.vimaedit.hooks.AdaptiveVariance`), reading the
    edit's `region` (the localiser's soft map) and drawing from the edit's `generator`;
  - `observe(callback)` only watches (progress bars, tests, attention recorders).
Each editor then composites the decoded edit so pixels outside its mask are exactly the background (WYS:
`nerf_edit.wys.ops.composite`).
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
    region: Optional[torch.Tensor] = None  # [B, 1, h, w] the edit's soft map per latent cell (max of its pixels)
    generator: Optional[torch.Generator] = None  # the edit's generator, for hooks that draw noise


# Step -> the latents the next step starts from [B, C, h, w]
StepHook = Callable[[Step], torch.Tensor]


def denoise(
    predict: NoisePredictor,
    scheduler,
    latents: torch.Tensor,
    timesteps: torch.Tensor,
    hooks: Sequence[StepHook] = (),
    region: Optional[torch.Tensor] = None,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Denoise `latents` [B, C, h, w] over `timesteps`; after every step the `hooks` run in order, each seeing the
    edit's `region` [B, 1, h, w] (None: the edit has no soft map) and `generator`. -> [B, C, h, w]"""
    for i, t in enumerate(timesteps):
        noise_pred = predict(scheduler.scale_model_input(latents, t), t)
        output = scheduler.step(noise_pred, t, latents)
        # DDIM/DDPM give x̂0; multistep solvers (DPM-Solver) do not
        step = Step(i, t, output.prev_sample, noise_pred, getattr(output, "pred_original_sample", None), latents,
                    region, generator)
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
