"""The editor interface, and the base every IP2P editor derives from.

An editor answers two questions for a batch of images [B, 3, H, W] in [0, 1]:
  relevance(images, instruction, conditioning=None) -> [B, H, W] in [0, 1]   (where the instruction acts)
  edit(images, instruction, conditioning=None, mask=None, ..., background=None) -> EditResult  (the edited images)
`conditioning` is the image IP2P is conditioned on (default: `images`); `background` is what stays outside the
mask (default: `images`). The 3D method computes relevance of the original view conditioned on the render, and
edits the render conditioned on the original view with the original view as background (official WYS: outside
the mask the training view is the photo, never the render).

Editors are picked by name (`nerf_edit.registry.EDITORS`) or by import path `package.module:Class`; any class
constructed as `Class(EditorConfig)` that has the two methods plugs in. Optional: `check_prompt(instruction)`
(below), and `relevance_reads_conditioning = False` for an editor whose relevance ignores `conditioning`: the 3D
method then renders no view for its relevance targets (rendering a view is most of a CPU dataset update).

Two separate parts make an IP2P edit:
  - *where* it may act is a localiser (`nerf_edit.editing.localizer`; `relevance`, `zone`, `vimaedit` or a
    plug-in), handed to the editor, not inherited;
  - *how* it is made is the editor's denoising loop (`nerf_edit.core.guided.denoise`) with per-step hooks.
`IP2PEditor` knows no editing system: WYS's editor is `nerf_edit.wys`, ZONE's `nerf_edit.zone`.
See docs/architecture.md for the whole data flow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol, Sequence, runtime_checkable

import torch

from nerf_edit.config.checks import check_editor_config
from nerf_edit.config.editor import EditorConfig
from nerf_edit.core.checks import check_images, check_instruction
from nerf_edit.core.guided import StepCallback, StepHook, denoise, keep_outside, latent_mask_from_pixels, observe
from nerf_edit.core.stages import StageTimer
from nerf_edit.editing.localizer import Localization, Localizer, localize
from nerf_edit.errors import as_editor_error
from nerf_edit.models.ip2p import EncodedInputs, InstructPix2Pix, pad_to_multiple
from nerf_edit.models.loading import MODEL_INDEX, check_model
from nerf_edit.plugins import import_object
from nerf_edit.registry import editor_class, localizer_class


@dataclass
class EditResult:
    images: torch.Tensor  # [B, 3, H, W] edited and composited
    relevance: Optional[torch.Tensor] = None  # [B, H, W] in [0, 1], None for editors that don't compute it
    mask: Optional[torch.Tensor] = None  # [B, H, W] bool, the pixels allowed to change
    localization: Optional[Localization] = None  # what the localiser found (None when a mask was given)


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
        background: Optional[torch.Tensor] = None,
    ) -> EditResult: ...


def check_prompt(editor, instruction: str) -> None:
    """One EditorError line when `editor` (an editor or its class) can't act on `instruction`, before any work is
    done with it: the editor's own static `check_prompt(instruction)` where it has one (colorkey needs two colour
    words), else a non-empty string. Optional in the `Editor` protocol: a plug-in without it gets the non-empty
    check."""
    getattr(editor, "check_prompt", check_instruction)(instruction)


class IP2PEditor:
    """What every IP2P editor shares: checks, the model, the localiser part, encoding, and the denoising loop.

    Random draws, in order: the edit's noise (`draw_noise`) first, then whatever the localiser draws, so a seed
    gives the same edit whatever the localiser."""

    default_localizer = "relevance"
    default_start = "input"  # official WYS 2D: the input noised to the first timestep
    uses_zone = False  # editors that always need ZONE's models (MagicBrush, SAM) whatever the localiser

    def __init__(
        self,
        config: EditorConfig,
        ip2p: Optional[InstructPix2Pix] = None,
        localizer: Optional[Localizer] = None,
    ):
        """`ip2p` is built from `config` unless given (benchmarks pass random-weight full-size models); `localizer`
        replaces the one `config.localizer` names."""
        self.config = config
        # Every setting is checked before any model loads (one line each, as EditorError or ModelUnavailableError).
        with as_editor_error():
            check_editor_config(config, check_models=False)
            if ip2p is None:
                check_model(config.model, "--model", MODEL_INDEX)
            self.check_part_models(localizer)
        self.device = config.device
        if self.device == "auto":
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if ip2p is None:
            ip2p = InstructPix2Pix.from_pretrained(config.model, self.device, config.dtype)
            ip2p.speed_up(channels_last=config.channels_last, compile=config.compile, vae_tiling=config.vae_tiling)
        self.ip2p = ip2p
        self.stages = StageTimer(self.device)
        self.localizer = localizer if localizer is not None else self.make_localizer()

    def check_part_models(self, localizer: Optional[Localizer]) -> None:
        """Before IP2P loads: the models the named localiser loads besides IP2P are there (its class's
        `check_models(config)`, when it has one). Editors with parts of their own extend this."""
        if localizer is None:
            check_models = getattr(localizer_class(self.localizer_name), "check_models", None)
            if check_models is not None:
                check_models(self.config)

    @property
    def localizer_name(self) -> str:
        return self.default_localizer if self.config.localizer == "auto" else self.config.localizer

    @property
    def start_from(self) -> str:
        return self.default_start if self.config.start_from == "auto" else self.config.start_from

    def make_localizer(self) -> Localizer:
        """The localiser `config.localizer` names, sharing this editor's model (it loads any models of its own
        now, so a missing one fails before any work)."""
        with as_editor_error():
            cls = localizer_class(self.localizer_name)
        return cls(self.config, self.ip2p)

    def relevance(
        self,
        images: torch.Tensor,
        instruction: str,
        conditioning: Optional[torch.Tensor] = None,
        generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        """Where `instruction` acts on `images` (conditioned on `conditioning`): the localiser's soft map, or its
        mask as 0/1 (ZONE). -> [B, H, W] in [0, 1]"""
        images, conditioning = self._check(images, instruction, conditioning)
        return localize(self.localizer, images, instruction, conditioning, generator).as_map()

    def draw_noise(self, images: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """The edit's fixed noise [B, 4, h, w], drawn first so a seed gives the same edit whatever else draws."""
        return self.ip2p.draw_noise(images, generator)

    def denoise(
        self,
        encoded: EncodedInputs,
        instruction: str,
        strength: float,
        noise: torch.Tensor,
        mask: Optional[torch.Tensor] = None,
        known: Optional[torch.Tensor] = None,
        hooks: Sequence[StepHook] = (),
        on_step: Optional[StepCallback] = None,
    ) -> torch.Tensor:
        """Edit `encoded` from its z0 with the fixed `noise` (from `draw_noise`). With a pixel `mask` [B, H, W] only
        its latent cells (`config.latent_mask` says which) change and the others follow `known` (z0 of the
        background, default the images') re-noised. `config.step_hooks` (plug-ins), then `hooks` (samplers),
        run before the mask's; `on_step(i, t, latents)` last.
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
        return denoise(predict, ip2p.scheduler, latents, timesteps, all_hooks)

    def latent_cells(self, pixel_mask: torch.Tensor, mode: str = "any") -> torch.Tensor:
        """The latent cells of a pixel mask [B, H, W] (padded as the images are). -> [B, 1, h, w] bool"""
        factor = self.ip2p.vae_scale_factor
        padded = pad_to_multiple(pixel_mask[:, None].float(), factor)[:, 0] > 0
        return latent_mask_from_pixels(padded, factor, mode)

    def _check(self, images, instruction, conditioning):
        check_images(images)
        check_instruction(instruction)
        conditioning = images if conditioning is None else conditioning
        check_images(conditioning, "conditioning")
        return images, conditioning

    def background_latents(self, background: torch.Tensor, encoded: EncodedInputs) -> torch.Tensor:
        """z0 of `background` [B, 4, h, w], re-using `encoded` where it is the same image (no VAE pass)."""
        if background is encoded.images:
            return encoded.clean
        if background is encoded.conditioning:
            return encoded.condition * self.ip2p.vae.config.scaling_factor
        return self.ip2p.encode(pad_to_multiple(background, self.ip2p.vae_scale_factor))


def step_hook_plugins(config: EditorConfig, ip2p: InstructPix2Pix) -> list[StepHook]:
    """The step hooks `config.step_hooks` names, built for one edit: a class as `Class(config, ip2p)`, anything
    else as it is."""
    hooks = []
    for spec in config.step_hooks:
        target = import_object(spec, "step hook")
        hooks.append(target(config, ip2p) if isinstance(target, type) else target)
    return hooks


def make_editor(spec: str, config: Optional[EditorConfig] = None) -> Editor:
    """The editor a registered name or import path names, built from `config` (default: EditorConfig())."""
    return editor_class(spec)(config if config is not None else EditorConfig())
