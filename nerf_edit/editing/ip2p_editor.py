"""The base every InstructPix2Pix editor derives from: the model, the localiser part, encoding, and the denoising
loop with step hooks. It knows no editing system: the localiser `auto` means is the subclass's
(`default_localizer`, a class), none here.

Two separate parts make an IP2P edit:
  - *where* it may act is a localiser (`nerf_edit.editing.localizer`; `relevance`, `zone`, `vimaedit` or a
    plug-in), handed to the editor, not inherited;
  - *how* it is made is the editor's denoising loop (`nerf_edit.core.guided.denoise`) with per-step hooks.
"""

from __future__ import annotations

from typing import ClassVar, List, Optional, Sequence

import torch
import torch.nn.functional as F

from nerf_edit.config.editor import EditorConfig
from nerf_edit.core.checks import check_conditioning, check_images, check_instruction
from nerf_edit.core.guided import StepCallback, StepHook, denoise, keep_outside, latent_mask_from_pixels, observe
from nerf_edit.core.stages import StageTimer
from nerf_edit.editing.editor import Editor
from nerf_edit.editing.localizer import Localizer, localize, localizer_class
from nerf_edit.errors import as_editor_error
from nerf_edit.models.ip2p import EncodedInputs, InstructPix2Pix, pad_to_multiple
from nerf_edit.models.loading import MODEL_INDEX, check_model
from nerf_edit.plugins import import_object
from nerf_edit.registry import STEP_HOOKS, resolve


class IP2PEditor(Editor):
    """What every IP2P editor shares: checks, the model, the localiser part, encoding, and the denoising loop.

    Random draws, in order: the edit's noise (`draw_noise`) first, then whatever the localiser draws, so a seed
    gives the same edit whatever the localiser."""

    takes_localizer: ClassVar[bool] = True
    default_localizer: ClassVar[Optional[type]] = None  # what `localizer auto` means; None: no localiser
    default_start: ClassVar[str] = "input"  # official WYS 2D: the input noised to the first timestep

    def __init__(self, config: EditorConfig, ip2p: Optional[InstructPix2Pix] = None,
                 localizer: Optional[Localizer] = None):
        """`ip2p` is built from `config` unless given (benchmarks pass random-weight full-size models); `localizer`
        replaces the one `config.localizer` names."""
        super().__init__(config)
        # Every setting is checked before any model loads (one line each, as EditorError or ModelUnavailableError).
        with as_editor_error():
            self.check_own_settings(check_models=ip2p is None, check_localizer=localizer is None)
        self.device = config.device
        if self.device == "auto":
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if ip2p is None:
            ip2p = InstructPix2Pix.from_pretrained(config.model, self.device, config.dtype)
            ip2p.speed_up(channels_last=config.channels_last, compile=config.compile, vae_tiling=config.vae_tiling)
        self.ip2p = ip2p
        self.stages = StageTimer(self.device)
        self.localizer = localizer if localizer is not None else self.make_localizer()

    # ---------------------------------------------------------------------------------------------- settings
    @classmethod
    def check_settings(cls, config: EditorConfig, prefix: str = "--", check_models: bool = True,
                       model_flag: Optional[str] = None) -> None:
        """The shared settings, the model (with `check_models`), and what the localiser and step hooks check of
        their own (their classmethod `check_settings(config, prefix, check_models)`, where they have one)."""
        super().check_settings(config, prefix, check_models, model_flag)
        if check_models:
            check_model(config.model, model_flag or f"{prefix}model", MODEL_INDEX)
        parts = [cls.localizer_type(config, f"{prefix}localizer"), *step_hook_types(config, prefix)]
        for part in parts:
            check = getattr(part, "check_settings", None)
            if check is not None:
                check(config, prefix, check_models)

    def check_own_settings(self, check_models: bool, check_localizer: bool) -> None:
        """At construction: the settings, and the models only of what this editor will load itself."""
        type(self).check_settings(self.config, check_models=False)
        if check_models:
            check_model(self.config.model, "--model", MODEL_INDEX)
        check = getattr(self.localizer_type(self.config), "check_settings", None) if check_localizer else None
        if check is not None:
            check(self.config, "--", True)

    @classmethod
    def localizer_type(cls, config: EditorConfig, flag: str = "--localizer") -> Optional[type]:
        """The localiser class `config.localizer` names (`auto`: this editor's own, maybe none)."""
        return cls.default_localizer if config.localizer == "auto" else localizer_class(config.localizer, flag)

    @property
    def start_from(self) -> str:
        return self.default_start if self.config.start_from == "auto" else self.config.start_from

    def make_localizer(self) -> Optional[Localizer]:
        """The localiser `config.localizer` names, sharing this editor's model (it loads any models of its own
        now, so a missing one fails before any work); None for an editor without one."""
        with as_editor_error():
            cls = self.localizer_type(self.config)
        return None if cls is None else cls(self.config, self.ip2p)

    # ---------------------------------------------------------------------------------------------- the edit
    def relevance(self, images: torch.Tensor, instruction: str, conditioning: Optional[torch.Tensor] = None,
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Where `instruction` acts on `images` (conditioned on `conditioning`): the localiser's soft map, or its
        mask as 0/1 (ZONE); everywhere (1) for an editor without a localiser. -> [B, H, W] in [0, 1]"""
        check_images(images)
        check_instruction(instruction)
        conditioning = check_conditioning(conditioning, images)
        if self.localizer is None:
            return torch.ones(images.shape[0], *images.shape[-2:], device=images.device)
        return localize(self.localizer, images, instruction, conditioning, generator).as_map()

    def draw_noise(self, images: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """The edit's fixed noise [B, 4, h, w], drawn first so a seed gives the same edit whatever else draws."""
        return self.ip2p.draw_noise(images, generator)

    def denoise(self, encoded: EncodedInputs, instruction: str, strength: float, noise: torch.Tensor,
                mask: Optional[torch.Tensor] = None, known: Optional[torch.Tensor] = None,
                hooks: Sequence[StepHook] = (), on_step: Optional[StepCallback] = None,
                region: Optional[torch.Tensor] = None, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Edit `encoded` from its z0 with the fixed `noise` (from `draw_noise`). With a pixel `mask` [B, H, W] only
        its latent cells (`config.latent_mask` says which) change and the others follow `known` (z0 of the
        background, default the images') re-noised. The step hooks of `config` (plug-ins, `adaptive_variance`),
        then `hooks` (samplers), run before the mask's; `on_step(i, t, latents)` last. Hooks see the edit's soft map
        `region` [B, H, W] per latent cell and its `generator`.
        -> the final latents [B, 4, h, w]"""
        ip2p, config = self.ip2p, self.config
        timesteps, latents, noise = ip2p.start_latents(encoded.clean, noise, config.steps, strength,
                                                       self.start_from == "noise")
        all_hooks = [*step_hook_plugins(config, ip2p), *hooks]
        if mask is not None:
            latent_mask = self.latent_cells(mask, config.latent_mask).to(latents.device)
            known = encoded.clean if known is None else known
            all_hooks.append(keep_outside(ip2p.scheduler, known, noise, timesteps, latent_mask))
        if on_step is not None:
            all_hooks.append(observe(on_step))
        predict = ip2p.guided_predictor(encoded.condition, instruction, config.guidance_scale,
                                        config.image_guidance_scale)
        cells = None if region is None else self.latent_values(region).to(latents.device)
        return denoise(predict, ip2p.scheduler, latents, timesteps, all_hooks, cells, generator)

    def latent_cells(self, pixel_mask: torch.Tensor, mode: str = "any") -> torch.Tensor:
        """The latent cells of a pixel mask [B, H, W] (padded as the images are). -> [B, 1, h, w] bool"""
        factor = self.ip2p.vae_scale_factor
        padded = pad_to_multiple(pixel_mask[:, None].float(), factor)[:, 0] > 0
        return latent_mask_from_pixels(padded, factor, mode)

    def latent_values(self, pixel_map: torch.Tensor) -> torch.Tensor:
        """A pixel map [B, H, W] per latent cell, each the largest of its pixels (padded as the images are).
        -> [B, 1, h, w]"""
        factor = self.ip2p.vae_scale_factor
        return F.max_pool2d(pad_to_multiple(pixel_map[:, None].float(), factor), factor)

    def background_latents(self, background: torch.Tensor, encoded: EncodedInputs) -> torch.Tensor:
        """z0 of `background` [B, 4, h, w], re-using `encoded` where it is the same image (no VAE pass)."""
        if background is encoded.images:
            return encoded.clean
        if background is encoded.conditioning:
            return encoded.condition * self.ip2p.vae.config.scaling_factor
        return self.ip2p.encode(pad_to_multiple(background, self.ip2p.vae_scale_factor))


def step_hook_types(config: EditorConfig, prefix: str = "--") -> List[object]:
    """What `config` asks for as step hooks, unbuilt: the plug-ins of `step_hooks` (import paths), then
    `adaptive_variance` (ViMAEdit's hook, by its registered name)."""
    with as_editor_error():
        plugins = [import_object(spec, f"{prefix}step-hooks") for spec in config.step_hooks]
    named = [resolve(STEP_HOOKS, "adaptive-variance", "step hook", f"{prefix}adaptive-variance")] \
        if config.adaptive_variance else []
    return plugins + named


def step_hook_plugins(config: EditorConfig, ip2p: InstructPix2Pix) -> List[StepHook]:
    """The step hooks `config` asks for, built for one edit: a class as `Class(config, ip2p)`, anything else as
    it is."""
    return [target(config, ip2p) if isinstance(target, type) else target for target in step_hook_types(config)]

