"""The editor interface and the IP2P editors behind it.

An editor answers two questions for a batch of images [B, 3, H, W] in [0, 1]:
  relevance(images, instruction, conditioning=None) -> [B, H, W] in [0, 1]   (where the instruction acts)
  edit(images, instruction, conditioning=None, mask=None, ..., background=None) -> EditResult  (the edited images)
`conditioning` is the image IP2P is conditioned on (default: `images`); `background` is what stays outside the
mask (default: `images`). The 3D method computes relevance of the original view conditioned on the render, and
edits the render conditioned on the original view with the original view as background (official WYS: outside
the mask the training view is the photo, never the render).

Editors are picked by name (`relevance`/`wys`, `global`, `zone`, `colorkey`) or by import path
`package.module:Class`; any class constructed as `Class(EditorConfig)` that has the two methods plugs in.

Two separate parts make an IP2P edit:
  - *where* it may act is a localiser (`nerf_edit.localizers`: `relevance` = WYS relevance >= τ, `zone` = ZONE's
    attention + segments, or a plug-in), handed to the editor, not inherited;
  - *how* it is made is the editor's denoising loop (`nerf_edit.guided.denoise`) with per-step hooks: the
    relevance editor keeps latents outside the mask (`keep_outside`), ZONE's editor fuses a second model
    (`nerf_edit.zone_editor`).
See docs/architecture.md for the whole data flow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Protocol, Sequence, runtime_checkable

import torch

from nerf_edit import validate
from nerf_edit.checks import (  # noqa: F401  (EditorError and the checks are part of this module's interface)
    EditorError,
    check_background,
    check_conditioning,
    check_images,
    check_instruction,
    check_mask,
)
from nerf_edit.guided import (StepCallback, StepHook, composite, denoise, feathered_weights, keep_outside,
                              latent_mask_from_pixels, observe)
from nerf_edit.ip2p import EncodedInputs, InstructPix2Pix, pad_to_multiple
from nerf_edit.loading import IP2P_MODEL_ID, MAGICBRUSH_MODEL_ID, MODEL_INDEX, ModelUnavailableError
from nerf_edit.localizers import Localization, Localizer, localize, localizer_class
from nerf_edit.plugins import import_object
from nerf_edit.relevance import relevance_mask
from nerf_edit.segment import SAM_MODEL_ID
from nerf_edit.stages import StageTimer
from nerf_edit.validate import UsageError
from nerf_edit.vimaedit import adaptive_variance_hook
from nerf_edit.vimaedit_config import ViMAEditConfig

CRITICAL_THRESHOLD = 0.8  # ViMAEdit: the critical region is where the normalised map exceeds 0.8

@dataclass
class ZoneConfig:
    """ZONE's localisation and blending settings; defaults are the paper's and its code's (pixels at 512²)."""

    attention_threshold: float = 128.0
    """Rough mask: where the contrast-stretched first-minus-last-token attention (0-255 scale) is below this."""
    attention_contrast: float = 2.0
    """Contrast stretch of the token difference before thresholding (saturates at 255)."""
    attention_layers: Literal["coarsest", "all"] = "coarsest"
    """Cross-attention layers averaged: `coarsest` (1/32 of the image in SD, as ZONE) or `all` (resized)."""
    fusion_model: str = MAGICBRUSH_MODEL_ID
    """Second IP2P-architecture model fused into every step (MagicBrush); `none` turns fusion off."""
    action: str = "rules"
    """add/remove/change classifier (sets the fusion weight): `rules`, a fixed action, or `package.module:Name`."""
    segmenter: str = SAM_MODEL_ID
    """Segments for Region-IoU refinement: SAM hub id or folder, `tiny`, `none` (keep the rough mask), or
    `package.module:Name`."""
    sam_points_per_side: int = 32
    """SAM automatic mask generation: grid points per image side."""
    sam_points_per_batch: int = 64
    """SAM prompts decoded at once (memory vs speed)."""
    edge_dilate_px: float = 4.0
    """Edge smoother: the refined mask is dilated by this much before the layers are compared."""
    edge_radius_px: float = 200.0
    """Edge smoother: radius D0 of the ideal low-pass filter."""
    edge_threshold: float = 30.0
    """Edge smoother: low-passed difference (0-255) above this counts as edited."""
    edge_close_px: float = 10.0
    """Edge smoother: radius of the morphological closing."""
    edge_alpha: float = 0.6
    """Weight of the edit on the band the smoother adds around the refined mask."""


@dataclass
class EditorConfig:
    """Settings shared by all editors; defaults are WYS's (official code)."""

    model: str = IP2P_MODEL_ID
    """IP2P-architecture weights: hub id, local directory, or `tiny` (random weights, offline tests)."""
    device: str = "auto"
    """Device the diffusion model runs on (`auto`: cuda when available, else cpu)."""
    dtype: str = "auto"
    """fp32/fp16/bf16; `auto` is fp16 on CUDA, fp32 on CPU."""
    channels_last: bool = False
    """UNet and VAE in channels-last memory layout (faster convolutions on CUDA tensor cores)."""
    compile: bool = False
    """torch.compile the UNet: the first edits compile (minutes), later ones run faster; worth it for long runs."""
    vae_tiling: bool = False
    """diffusers' VAE tiling and slicing: views larger than the VAE's tile (512² in SD) are encoded and decoded in
    overlapping tiles, a batch one image at a time (less GPU memory on large views; faint tile seams possible)."""
    steps: int = 100
    """Denoising steps per edit (official WYS 2D: 100; the 3D method uses 20)."""
    guidance_scale: float = 7.5
    """Text guidance s_T."""
    image_guidance_scale: float = 1.0
    """Image guidance s_I (official WYS 2D: 1.0; the 3D method uses 1.5)."""
    start_from: Literal["auto", "input", "noise"] = "auto"
    """A full-strength edit starts from `input`: the input's latents noised to the first timestep (official WYS
    2D, t ≈ 0.99 T), or from pure `noise` (diffusers' IP2P pipeline, ZONE); `auto` is the editor's own (input for
    relevance, noise for global and zone). Edits with strength < 1 always start from the noised input."""
    latent_mask: Literal["any", "nearest"] = "any"
    """How the pixel mask becomes the latent mask: `any` (a latent cell is edited if any of its pixels is) or
    `nearest` (nearest-neighbour downsampling, as the official WYS 3D code)."""
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
    adaptive_variance: bool = False
    """ViMAEdit's spatially adaptive variance in IP2P editors: DDIM noise (η = 1) where the localiser's soft map is
    above 0.8 (its critical region), deterministic DDIM elsewhere. Needs a localiser with a soft map."""
    localizer: str = "auto"
    """Where edits may act: `relevance` (WYS maps), `zone` (IP2P attention + SAM), `auto` (the editor's own), or
    an import path `package.module:Class` (see nerf_edit.localizers)."""
    zone: ZoneConfig = field(default_factory=ZoneConfig)
    """ZONE settings (used by the zone editor and the zone localizer)."""
    vimaedit: ViMAEditConfig = field(default_factory=ViMAEditConfig)
    """ViMAEdit settings (used by the vimaedit editor and the vimaedit localizer)."""


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


class IP2PEditor:
    """What every IP2P editor shares: checks, the model, the localiser part, encoding, and the denoising loop.

    Random draws, in order: the edit's noise (`draw_noise`) first, then whatever the localiser draws, so a seed
    gives the same edit whatever the localiser."""

    default_localizer = "relevance"
    default_start = "input"  # official WYS 2D: the input noised to the first timestep
    uses_zone = False  # editors that always need MagicBrush and SAM (ZONE's blending)

    def __init__(
        self,
        config: EditorConfig,
        ip2p: Optional[InstructPix2Pix] = None,
        localizer: Optional[Localizer] = None,
        fusion: Optional[InstructPix2Pix] = None,
        segmenter=None,
    ):
        """`ip2p` (and ZONE's `fusion` model and `segmenter`) are built from `config` unless given (benchmarks pass
        random-weight full-size models); `localizer` replaces the one `config.localizer` names."""
        self.config = config
        # Every setting is checked before any model loads (validate.py; one line each, as EditorError or
        # ModelUnavailableError).
        try:
            uses_zone = self.uses_zone or self.localizer_name == "zone"
            validate.check_editor_config(config, check_models=False)
            if ip2p is None:
                validate.check_model(config.model, "--model", MODEL_INDEX)
            if uses_zone and fusion is None and segmenter is None:
                validate.check_zone_config(config.zone, main_model=config.model)
        except (EditorError, ModelUnavailableError):
            raise
        except UsageError as error:
            raise EditorError(str(error)) from error
        self.device = config.device
        if self.device == "auto":
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if ip2p is None:
            ip2p = InstructPix2Pix.from_pretrained(config.model, self.device, config.dtype)
            ip2p.speed_up(channels_last=config.channels_last, compile=config.compile, vae_tiling=config.vae_tiling)
        self.ip2p = ip2p
        self.stages = StageTimer(self.device)
        self._given_zone_parts = (fusion, segmenter)
        self.localizer = localizer if localizer is not None else self.make_localizer()

    @property
    def localizer_name(self) -> str:
        return self.default_localizer if self.config.localizer == "auto" else self.config.localizer

    @property
    def start_from(self) -> str:
        return self.default_start if self.config.start_from == "auto" else self.config.start_from

    def make_localizer(self) -> Localizer:
        """The localiser `config.localizer` names, sharing this editor's model (ZONE's loads its models now, so a
        missing one fails before any work)."""
        try:
            cls = localizer_class(self.localizer_name)
        except UsageError as error:
            raise EditorError(str(error)) from error
        if self.localizer_name == "zone":
            from nerf_edit.zone_editor import load_zone_parts

            return cls(self.config, self.ip2p, parts=load_zone_parts(self.config, self.ip2p, *self._given_zone_parts),
                       stages=self.stages)
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
        background, default the images') re-noised. `hooks` (samplers) run before the mask's; `on_step(i, t,
        latents)` last.
        -> the final latents [B, 4, h, w]"""
        ip2p, config = self.ip2p, self.config
        timesteps, latents, noise = ip2p.start_latents(encoded.clean, noise, config.steps, strength,
                                                       self.start_from == "noise")
        all_hooks = list(hooks)
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


class RelevanceGuidedEditor(IP2PEditor):
    """Watch Your Steps: IP2P edits only where the localiser (default: relevance >= τ) allows."""

    def edit(
        self,
        images: torch.Tensor,
        instruction: str,
        conditioning: Optional[torch.Tensor] = None,
        mask: Optional[torch.Tensor] = None,
        strength: float = 1.0,
        generator: Optional[torch.Generator] = None,
        on_step: Optional[StepCallback] = None,
        background: Optional[torch.Tensor] = None,
    ) -> EditResult:
        """Edit `images`; `mask` [B, H, W] bool overrides the localiser (3D passes the rendered relevance's).
        Outside the mask the latents follow `background`'s (default `images`) re-noised at every step, and the
        result is `background` there, bit for bit."""
        images, conditioning = self._check(images, instruction, conditioning)
        background = check_background(background, images)
        noise = self.draw_noise(images, generator)
        encoded = self.ip2p.encode_inputs(images, conditioning)
        found = None
        if mask is None:
            found = localize(self.localizer, images, instruction, conditioning, generator, encoded)
            mask = found.mask
        mask = check_mask(mask, images)
        if self.config.dilate_px > 0:
            mask = relevance_mask(mask.float(), 0.5, self.config.dilate_px)
        hooks = []
        if self.config.adaptive_variance and found is not None and found.soft is not None:
            critical = self.latent_cells(found.soft > CRITICAL_THRESHOLD, "any")
            hooks.append(adaptive_variance_hook(self.ip2p.scheduler, critical.to(encoded.clean.device), 1.0, generator))
        latents = self.denoise(encoded, instruction, strength, noise, mask,
                               self.background_latents(background, encoded), hooks, on_step)
        edited = self.ip2p.decode_cropped(latents, images)
        result = composite(edited, background.float(), feathered_weights(mask, self.config.feather_px))
        return EditResult(images=result, relevance=found.as_map() if found is not None else None, mask=mask,
                          localization=found)


class GlobalEditor(IP2PEditor):
    """Plain InstructPix2Pix (instruct-nerf2nerf's behaviour): every pixel may change; `mask` and `background` are
    ignored. Full-strength edits start from pure noise, as diffusers' pipeline."""

    default_start = "noise"

    def edit(
        self,
        images: torch.Tensor,
        instruction: str,
        conditioning: Optional[torch.Tensor] = None,
        mask: Optional[torch.Tensor] = None,
        strength: float = 1.0,
        generator: Optional[torch.Generator] = None,
        on_step: Optional[StepCallback] = None,
        background: Optional[torch.Tensor] = None,
    ) -> EditResult:
        images, conditioning = self._check(images, instruction, conditioning)
        noise = self.draw_noise(images, generator)
        latents = self.denoise(self.ip2p.encode_inputs(images, conditioning), instruction, strength, noise,
                               on_step=on_step)
        return EditResult(images=self.ip2p.decode_cropped(latents, images))


# Name -> import path: a new editor is one class plus one line here.
EDITORS = {
    "relevance": "nerf_edit.editors:RelevanceGuidedEditor",
    "wys": "nerf_edit.editors:RelevanceGuidedEditor",
    "global": "nerf_edit.editors:GlobalEditor",
    "zone": "nerf_edit.zone_editor:ZoneEditor",
    "colorkey": "nerf_edit.colorkey:ColorKeyEditor",  # rule-based demonstration editor, not IP2P
    "vimaedit": "nerf_edit.vimaedit_editor:ViMAEditEditor",  # dual-branch SD-1.5 editing, not IP2P
}


def editor_class(spec: str) -> type:
    """An editor class from a registered name or an import path `package.module:Class`."""
    if ":" not in spec and spec not in EDITORS:
        raise EditorError(f"unknown editor {spec!r}: use one of {sorted(EDITORS)} or an import path 'package.module:Class'")
    try:
        cls = import_object(EDITORS.get(spec, spec), "editor")
    except UsageError as error:
        raise EditorError(str(error)) from error
    if not all(callable(getattr(cls, name, None)) for name in ("relevance", "edit")):
        raise EditorError(f"editor {spec!r} lacks relevance()/edit(): see nerf_edit.editors.Editor")
    return cls


def make_editor(spec: str, config: Optional[EditorConfig] = None) -> Editor:
    return editor_class(spec)(config if config is not None else EditorConfig())
