"""The editor interface and the IP2P editors behind it.

An editor answers two questions for a batch of images [B, 3, H, W] in [0, 1]:
  relevance(images, instruction, conditioning=None) -> [B, H, W] in [0, 1]   (where the instruction acts)
  edit(images, instruction, conditioning=None, mask=None, ...) -> [B, 3, H, W]  (the edited images)
`conditioning` is the image IP2P is conditioned on (default: `images`). The 3D method computes relevance of the
original view conditioned on the render, and edits the render conditioned on the original view.

Editors are picked by name (`relevance`/`wys`, `global`) or by import path `package.module:Class`; any class
constructed as `Class(EditorConfig)` that has the two methods plugs in.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Optional, Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from nerf_edit.guided import composite, feathered_weights, guided_denoise, latent_mask_from_pixels
from nerf_edit.ip2p import InstructPix2Pix
from nerf_edit.loading import IP2P_MODEL_ID
from nerf_edit.relevance import relevance_map, relevance_mask


@dataclass
class EditorConfig:
    """Settings shared by all editors; defaults are WYS's (official code)."""

    model: str = IP2P_MODEL_ID
    """IP2P-architecture weights: hub id, local directory, or `tiny` (random weights, offline tests)."""
    device: str = "auto"
    """Device the diffusion model runs on (`auto`: cuda when available, else cpu)."""
    dtype: str = "auto"
    """fp32/fp16/bf16; `auto` is fp16 on CUDA, fp32 on CPU."""
    steps: int = 20
    """Denoising steps per edit."""
    guidance_scale: float = 7.5
    """Text guidance s_T."""
    image_guidance_scale: float = 1.5
    """Image guidance s_I."""
    tau: float = 0.5
    """Relevance threshold of the edit mask (relevance >= tau is edited; 0 edits everywhere)."""
    dilate_px: int = 0
    """Grow the edit mask by this many pixels before editing and compositing."""
    feather_px: int = 0
    """Soften the composite edge over this many pixels inside the (dilated) mask."""
    relevance_timestep: float = 0.8
    """Relevance is measured at this fraction of the training timesteps."""
    relevance_samples: int = 1
    """Noise draws averaged per relevance map."""
    iqr_k: float = 1.5
    """Relevance outliers above Q3 + k·IQR are clipped (1.5 in 2D, 2 in 3D)."""


@dataclass
class EditResult:
    images: torch.Tensor  # [B, 3, H, W] edited and composited
    relevance: Optional[torch.Tensor] = None  # [B, H, W] in [0, 1], None for editors that don't compute it
    mask: Optional[torch.Tensor] = None  # [B, H, W] bool, the pixels allowed to change
    extras: dict = field(default_factory=dict)


@runtime_checkable
class Editor(Protocol):
    def relevance(
        self, images: torch.Tensor, instruction: str, conditioning: Optional[torch.Tensor] = None
    ) -> torch.Tensor: ...

    def edit(
        self,
        images: torch.Tensor,
        instruction: str,
        conditioning: Optional[torch.Tensor] = None,
        mask: Optional[torch.Tensor] = None,
        strength: float = 1.0,
        generator: Optional[torch.Generator] = None,
    ) -> EditResult: ...


class EditorError(ValueError):
    """Bad editor input or spec; the message is one line saying what is wrong and how to fix it."""


def check_images(images: torch.Tensor, name: str = "images") -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise EditorError(f"{name} must be a [B, 3, H, W] tensor in [0, 1], got {shape}")
    if images.shape[-1] < 8 or images.shape[-2] < 8:
        raise EditorError(f"{name} are {images.shape[-2]}x{images.shape[-1]}: at least 8x8 pixels are needed")


def check_instruction(instruction: str) -> None:
    if not isinstance(instruction, str) or not instruction.strip():
        raise EditorError("the instruction is empty: say what to change, e.g. 'turn the ball blue'")


def pad_to_multiple(images: torch.Tensor, multiple: int) -> torch.Tensor:
    """Replicate-pad the bottom/right so H and W are multiples of `multiple` (the VAE's downsampling)."""
    height, width = images.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h == 0 and pad_w == 0:
        return images
    return F.pad(images, (0, pad_w, 0, pad_h), mode="replicate")


class IP2PEditor:
    """Shared IP2P machinery: padding, encoding, relevance, and the (optionally masked) denoising loop."""

    def __init__(self, config: EditorConfig, ip2p: Optional[InstructPix2Pix] = None):
        self.config = config
        if ip2p is None:
            device = config.device
            if device == "auto":
                device = "cuda" if torch.cuda.is_available() else "cpu"
            ip2p = InstructPix2Pix.from_pretrained(config.model, device, config.dtype)
        self.ip2p = ip2p

    def relevance(
        self,
        images: torch.Tensor,
        instruction: str,
        conditioning: Optional[torch.Tensor] = None,
        generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        """WYS relevance of `instruction` for `images`' latents, conditioned on `conditioning`. -> [B, H, W]"""
        images, conditioning = self._check(images, instruction, conditioning)
        return self._relevance(*self._encode(images, conditioning), instruction, generator, images)

    def _check(self, images, instruction, conditioning):
        check_images(images)
        check_instruction(instruction)
        conditioning = images if conditioning is None else conditioning
        check_images(conditioning, "conditioning")
        return images, conditioning

    def _encode(self, images: torch.Tensor, conditioning: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z0 of `images` [B, 4, h, w], IP2P condition latents of `conditioning`), padded to the VAE's factor.
        One VAE pass when the two are the same images (z0 is the scaled condition latent)."""
        factor = self.ip2p.vae_scale_factor
        image_latents = self.ip2p.encode_condition(pad_to_multiple(conditioning, factor))
        if conditioning is images:
            return image_latents * self.ip2p.vae.config.scaling_factor, image_latents
        return self.ip2p.encode(pad_to_multiple(images, factor)), image_latents

    def _relevance(self, clean, image_latents, instruction, generator, images) -> torch.Tensor:
        factor = self.ip2p.vae_scale_factor

        def predict(noisy, t):
            return self.ip2p.predict_text_and_null(noisy, t, image_latents, instruction)

        relevance = relevance_map(
            predict,
            clean,
            self.ip2p.scheduler.add_noise,
            timestep=int(self.config.relevance_timestep * self.ip2p.num_train_timesteps),
            num_samples=self.config.relevance_samples,
            iqr_k=self.config.iqr_k,
            output_size=(clean.shape[-2] * factor, clean.shape[-1] * factor),
            generator=generator,
        )
        height, width = images.shape[-2:]
        return relevance[:, :height, :width].to(images.device)

    def draw_noise(self, images: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
        """The edit's fixed noise [B, 4, h, w], drawn first so a seed gives the same edit whatever else draws."""
        factor = self.ip2p.vae_scale_factor
        height, width = (-(-size // factor) for size in images.shape[-2:])
        channels = self.ip2p.vae.config.latent_channels
        device = generator.device if generator is not None else images.device
        return torch.randn((images.shape[0], channels, height, width), generator=generator, device=device)

    def _denoise(
        self,
        clean: torch.Tensor,
        image_latents: torch.Tensor,
        instruction: str,
        pixel_mask: Optional[torch.Tensor],
        strength: float,
        noise: torch.Tensor,
        images: torch.Tensor,
        on_step=None,
    ) -> torch.Tensor:
        """Edit from z0 `clean` with fixed `noise` (from `draw_noise`); only latent cells touched by `pixel_mask`
        [B, H, W] may change. Returns decoded images cropped to `images`' size, on its device."""
        factor = self.ip2p.vae_scale_factor
        height, width = images.shape[-2:]
        latent_mask = None
        if pixel_mask is not None:
            padded_mask = pad_to_multiple(pixel_mask[:, None].float(), factor)[:, 0] > 0
            latent_mask = latent_mask_from_pixels(padded_mask.to(clean.device), factor)
        timesteps = self.ip2p.edit_timesteps(self.config.steps, strength)
        noise = noise.to(clean.device, clean.dtype)
        if strength >= 1:
            initial = noise * self.ip2p.scheduler.init_noise_sigma
        else:
            initial = self.ip2p.scheduler.add_noise(clean, noise, timesteps[:1])

        def predict(noisy, t):
            return self.ip2p.predict_guided(
                noisy, t, image_latents, instruction, self.config.guidance_scale, self.config.image_guidance_scale
            ).to(noisy.dtype)

        latents = guided_denoise(
            predict, self.ip2p.scheduler, initial, clean, noise, timesteps, latent_mask, on_step=on_step
        )
        return self.ip2p.decode(latents)[..., :height, :width].to(images.device)


class RelevanceGuidedEditor(IP2PEditor):
    """Watch Your Steps: IP2P edits only where the instruction's relevance is at least τ."""

    def edit(
        self,
        images: torch.Tensor,
        instruction: str,
        conditioning: Optional[torch.Tensor] = None,
        mask: Optional[torch.Tensor] = None,
        strength: float = 1.0,
        generator: Optional[torch.Generator] = None,
        on_step=None,
    ) -> EditResult:
        """Edit `images`; `mask` [B, H, W] bool overrides the relevance mask (3D passes the rendered relevance's)."""
        images, conditioning = self._check(images, instruction, conditioning)
        noise = self.draw_noise(images, generator)
        encoded = self._encode(images, conditioning)
        relevance = None
        if mask is None:
            relevance = self._relevance(*encoded, instruction, generator, images)
            mask = relevance_mask(relevance, self.config.tau)
        if mask.shape != (images.shape[0], *images.shape[-2:]):
            raise EditorError(f"mask must be [B, H, W] = {(images.shape[0], *images.shape[-2:])}, got {tuple(mask.shape)}")
        mask = mask.to(images.device).bool()
        if self.config.dilate_px > 0:
            mask = relevance_mask(mask.float(), 0.5, self.config.dilate_px)
        edited = self._denoise(*encoded, instruction, mask, strength, noise, images, on_step)
        result = composite(edited, images.float(), feathered_weights(mask, self.config.feather_px))
        return EditResult(images=result, relevance=relevance, mask=mask)


class GlobalEditor(IP2PEditor):
    """Plain InstructPix2Pix (instruct-nerf2nerf's behaviour): every pixel may change; `mask` is ignored."""

    def edit(
        self,
        images: torch.Tensor,
        instruction: str,
        conditioning: Optional[torch.Tensor] = None,
        mask: Optional[torch.Tensor] = None,
        strength: float = 1.0,
        generator: Optional[torch.Generator] = None,
        on_step=None,
    ) -> EditResult:
        images, conditioning = self._check(images, instruction, conditioning)
        noise = self.draw_noise(images, generator)
        edited = self._denoise(*self._encode(images, conditioning), instruction, None, strength, noise, images, on_step)
        return EditResult(images=edited)


EDITORS = {"relevance": RelevanceGuidedEditor, "wys": RelevanceGuidedEditor, "global": GlobalEditor}


def editor_class(spec: str) -> type:
    """An editor class from a registered name or an import path `package.module:Class`."""
    if spec in EDITORS:
        return EDITORS[spec]
    if ":" not in spec:
        raise EditorError(f"unknown editor {spec!r}: use one of {sorted(EDITORS)} or an import path 'package.module:Class'")
    module_name, _, class_name = spec.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise EditorError(f"cannot import editor {spec!r} ({error}): check the module is importable and names the class") from error
    if not all(callable(getattr(cls, name, None)) for name in ("relevance", "edit")):
        raise EditorError(f"editor {spec!r} lacks relevance()/edit(): see nerf_edit.editors.Editor")
    return cls


def make_editor(spec: str, config: Optional[EditorConfig] = None) -> Editor:
    return editor_class(spec)(config if config is not None else EditorConfig())
