"""The editor interface and the IP2P editors behind it.

An editor answers two questions for a batch of images [B, 3, H, W] in [0, 1]:
  relevance(images, instruction, conditioning=None) -> [B, H, W] in [0, 1]   (where the instruction acts)
  edit(images, instruction, conditioning=None, mask=None, ..., background=None) -> [B, 3, H, W]  (the edited images)
`conditioning` is the image IP2P is conditioned on (default: `images`); `background` is what stays outside the
mask (default: `images`). The 3D method computes relevance of the original view conditioned on the render, and
edits the render conditioned on the original view with the original view as background (official WYS: outside
the mask the training view is the photo, never the render).

Editors are picked by name (`relevance`/`wys`, `global`, `zone`) or by import path `package.module:Class`; any
class constructed as `Class(EditorConfig)` that has the two methods plugs in.

Where an edit may act comes from a *localizer*: `relevance` (WYS: relevance >= tau) or `zone` (ZONE: IP2P's
cross-attention gives a rough mask, the automatic segment with the best Region-IoU refines it). How the edit is
applied comes from the editor: `relevance` denoises only inside the mask, `zone` edits globally (IP2P fused with
MagicBrush) and blends the edited layer back with ZONE's FFT edge smoother.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Literal, Optional, Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from nerf_edit import zone
from nerf_edit.attention import CrossAttentionRecorder, record_cross_attention
from nerf_edit.guided import composite, feathered_weights, guided_denoise, latent_mask_from_pixels
from nerf_edit.ip2p import InstructPix2Pix
from nerf_edit.loading import IP2P_MODEL_ID, MAGICBRUSH_MODEL_ID, MODEL_INDEX, ModelUnavailableError
from nerf_edit.plugins import import_object
from nerf_edit.relevance import relevance_map, relevance_mask
from nerf_edit.segment import SAM_MODEL_ID, make_segmenter
from nerf_edit import validate
from nerf_edit.validate import UsageError

LOCALIZERS = ("auto", "relevance", "zone")


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
    localizer: Literal["auto", "relevance", "zone"] = "auto"
    """Where edits may act: `relevance` (WYS maps), `zone` (IP2P attention + SAM), `auto` (the editor's own)."""
    zone: ZoneConfig = field(default_factory=ZoneConfig)
    """ZONE settings (used by the zone editor and the zone localizer)."""


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
        background: Optional[torch.Tensor] = None,
    ) -> EditResult: ...


class EditorError(UsageError):
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


@dataclass
class ZoneLocalization:
    """What ZONE's localisation found for a batch (masks [B, H, W] bool)."""

    canvas: torch.Tensor  # [B, 3, H, W] the globally edited image I_sty (fused IP2P)
    rough_mask: torch.Tensor  # M_b, from the cross-attention (or WYS relevance with the relevance localizer)
    refined_mask: torch.Tensor  # M_f, the segment with the best Region-IoU (M_b when there is none)
    actions: list  # the add/remove/change decision per image
    attention: Optional[torch.Tensor] = None  # [B, h, w, L] the averaged cross-attention maps


class IP2PEditor:
    """Shared IP2P machinery: padding, encoding, relevance, the (optionally masked) denoising loop, and ZONE's
    localisation (fused denoising with attention capture, Region-IoU against automatic segments)."""

    default_localizer = "relevance"
    default_start = "input"  # official WYS 2D: the input noised to the first timestep
    uses_zone = False  # editors that always need MagicBrush and SAM (ZONE's blending)

    def __init__(
        self,
        config: EditorConfig,
        ip2p: Optional[InstructPix2Pix] = None,
        fusion: Optional[InstructPix2Pix] = None,
        segmenter=None,
    ):
        """`ip2p`, `fusion` and `segmenter` are built from `config` unless given (benchmarks pass random-weight
        full-size models)."""
        self.config = config
        # Every setting is checked before any model loads (validate.py; one line each, as EditorError or
        # ModelUnavailableError).
        try:
            validate.check_editor_config(config, check_models=False)
            if ip2p is None:
                validate.check_model(config.model, "--model", MODEL_INDEX)
            if (self.localizer == "zone" or self.uses_zone) and fusion is None and segmenter is None:
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
        self.ip2p = ip2p
        self._given = (fusion, segmenter)
        self._zone_parts: Optional[tuple] = None
        self.stage_seconds: Optional[dict] = None  # set to {} to time ZONE's stages
        if self.localizer == "zone" or self.uses_zone:
            self.zone_parts()  # load MagicBrush and SAM now: a missing model fails before any work

    @property
    def localizer(self) -> str:
        return self.default_localizer if self.config.localizer == "auto" else self.config.localizer

    @property
    def start_from(self) -> str:
        return self.default_start if self.config.start_from == "auto" else self.config.start_from

    def relevance(
        self,
        images: torch.Tensor,
        instruction: str,
        conditioning: Optional[torch.Tensor] = None,
        generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        """Where `instruction` acts on `images` (conditioned on `conditioning`). -> [B, H, W] in [0, 1]

        The relevance localizer gives WYS relevance of `images`' latents; the zone localizer gives ZONE's
        refined mask (0/1) from editing `conditioning`."""
        images, conditioning = self._check(images, instruction, conditioning)
        if self.localizer == "zone":
            return self.localize_zone(images, instruction, conditioning, generator).refined_mask.float()
        return self._relevance(*self._encode(images, conditioning), instruction, generator, images)

    # ------------------------------------------------------------------------------------------ ZONE
    def zone_parts(self) -> tuple:
        """(fusion model or None, segmenter or None, action classifier), loaded once."""
        if self._zone_parts is None:
            settings = self.config.zone
            fusion, segmenter = self._given
            if fusion is None and settings.fusion_model not in ("none", self.config.model):
                fusion = InstructPix2Pix.from_pretrained(settings.fusion_model, self.device, self.config.dtype)
                if fusion.vae.config.latent_channels != self.ip2p.vae.config.latent_channels:
                    raise EditorError(f"fusion model {settings.fusion_model!r} has a different latent space than "
                                      f"{self.config.model!r}: use an IP2P-architecture model or --zone.fusion-model none")
            try:
                classify = zone.action_classifier(settings.action)
                if segmenter is None:
                    segmenter = make_segmenter(
                        settings.segmenter, device=self.device, dtype=self.config.dtype,
                        points_per_side=settings.sam_points_per_side, points_per_batch=settings.sam_points_per_batch,
                    )
            except UsageError as error:
                raise EditorError(str(error)) from error
            self._zone_parts = (fusion, segmenter, classify)
        return self._zone_parts

    def classify(self, instruction: str) -> str:
        action = self.zone_parts()[2](instruction)
        if action not in zone.ACTIONS:
            raise EditorError(f"the action classifier returned {action!r}: it must return one of {list(zone.ACTIONS)}")
        return action

    def _fused_denoise(
        self,
        clean: torch.Tensor,
        conditioning: torch.Tensor,
        image_latents: torch.Tensor,
        instruction: str,
        beta: float,
        strength: float,
        noise: torch.Tensor,
        recorder: Optional[CrossAttentionRecorder] = None,
        on_step=None,
    ) -> torch.Tensor:
        """ZONE's fused IP2P: IP2P and the fusion model each take a guided DDIM step from their own latents, and
        IP2P's are replaced by (z_ip2p + β·z_fusion)/(1 + β) (as ZONE's code, the fusion model keeps its own
        chain). IP2P's cross-attention goes to `recorder`. Returns the final latents [B, 4, h, w]."""
        fusion = self.zone_parts()[0]
        config = self.config
        timesteps, latents, noise = self._start(clean, noise, strength)
        scheduler = self.ip2p.scheduler  # DDIM's step is stateless once the timesteps are set: one serves both
        auxiliary = latents
        fusion_image_latents = None
        if fusion is not None:
            fusion_image_latents = fusion.encode_condition(pad_to_multiple(conditioning, fusion.vae_scale_factor))
        recording = record_cross_attention(self.ip2p.unet, recorder) if recorder is not None else contextlib.nullcontext()
        with recording:
            for i, t in enumerate(timesteps):
                eps = self.ip2p.predict_guided(scheduler.scale_model_input(latents, t), t, image_latents, instruction,
                                               config.guidance_scale, config.image_guidance_scale)
                latents = scheduler.step(eps.to(latents.dtype), t, latents).prev_sample
                if recorder is not None:
                    recorder.next_step()
                if fusion is not None:
                    eps = fusion.predict_guided(scheduler.scale_model_input(auxiliary, t), t, fusion_image_latents,
                                                instruction, config.guidance_scale, config.image_guidance_scale)
                    auxiliary = scheduler.step(eps.to(auxiliary.dtype), t, auxiliary).prev_sample
                    latents = zone.fuse_latents(latents, auxiliary, beta)
                if on_step is not None:
                    on_step(i, t, latents)
        return latents

    def localize_zone(
        self,
        images: torch.Tensor,
        instruction: str,
        conditioning: torch.Tensor,
        generator: Optional[torch.Generator] = None,
        strength: float = 1.0,
        noise: Optional[torch.Tensor] = None,
        on_step=None,
        encoded: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
    ) -> ZoneLocalization:
        """ZONE §4.2-4.3 on a batch: fused edit of `conditioning` with IP2P's cross-attention recorded, rough
        mask from the attention (or WYS relevance), refined by the automatic segment with the best Region-IoU
        (segments of the edit, or of `images` for "remove")."""
        settings = self.config.zone
        _, segmenter, _ = self.zone_parts()
        if noise is None:
            noise = self.draw_noise(images, generator)
        recorder = CrossAttentionRecorder(branches=3, branch=0)
        action, canvas, latents, (clean, image_latents) = self._fused_edit(
            images, instruction, conditioning, strength, noise, recorder, on_step, encoded)
        actions = [action] * images.shape[0]
        height, width = images.shape[-2:]
        attention = None
        with self.stage("rough mask"):
            if self.localizer == "relevance":
                relevance = self._relevance(clean, image_latents, instruction, generator, images)
                rough = relevance_mask(relevance, self.config.tau)
            else:
                factor = self.ip2p.vae_scale_factor
                padded_size = (latents.shape[-2] * factor, latents.shape[-1] * factor)
                attention = recorder.average(padded_size, settings.attention_layers)
                last = zone.last_token_index(self.ip2p.tokenizer, instruction)
                rough = zone.rough_mask(attention, last, padded_size, settings.attention_threshold,
                                        settings.attention_contrast)[:, :height, :width].to(images.device)
        refined = rough.clone()
        if segmenter is not None:
            source = images if action == "remove" else canvas
            for i in range(images.shape[0]):
                with self.stage("segment (SAM)"):
                    segments = segmenter(source[i])
                with self.stage("Region-IoU"):
                    refined[i] = zone.refine_mask(segments, rough[i])[0].to(images.device)
        return ZoneLocalization(canvas, rough, refined, actions, attention)

    def _fused_edit(self, images, instruction, conditioning, strength, noise, recorder=None, on_step=None, encoded=None):
        """Classify the instruction, then ZONE's fused edit of `conditioning` (an `_encode` result may be passed in).
        -> (action, canvas [B, 3, H, W], final latents, (z0, condition latents))"""
        with self.stage("classify"):
            action = self.classify(instruction)
        with self.stage("encode"):
            clean, image_latents = self._encode(images, conditioning) if encoded is None else encoded
        with self.stage("fused denoise + attention capture" if recorder is not None else "fused denoise"):
            latents = self._fused_denoise(clean, conditioning, image_latents, instruction, zone.FUSION_BETA[action],
                                          strength, noise, recorder, on_step)
        with self.stage("decode"):
            canvas = self._decode(latents, images)
        return action, canvas, latents, (clean, image_latents)

    def _decode(self, latents: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Decoded latents cropped to `images`' size (undoing `pad_to_multiple`), on its device."""
        height, width = images.shape[-2:]
        return self.ip2p.decode(latents)[..., :height, :width].to(images.device)

    def _check_mask(self, mask: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """A caller's mask as [B, H, W] bool on `images`' device, or a one-line error."""
        if mask.shape != (images.shape[0], *images.shape[-2:]):
            raise EditorError(f"mask must be [B, H, W] = {(images.shape[0], *images.shape[-2:])}, got {tuple(mask.shape)}")
        return mask.to(images.device).bool()

    @contextlib.contextmanager
    def stage(self, name: str):
        """Adds the block's wall time to `stage_seconds[name]` when profiling (stage_seconds set to a dict)."""
        if self.stage_seconds is None:
            yield
            return
        synchronize = torch.cuda.synchronize if torch.device(self.device).type == "cuda" else (lambda: None)
        synchronize()
        begin = time.perf_counter()
        yield
        synchronize()
        self.stage_seconds[name] = self.stage_seconds.get(name, 0.0) + time.perf_counter() - begin

    def _check(self, images, instruction, conditioning):
        check_images(images)
        check_instruction(instruction)
        conditioning = images if conditioning is None else conditioning
        check_images(conditioning, "conditioning")
        return images, conditioning

    @staticmethod
    def _check_background(background: Optional[torch.Tensor], images: torch.Tensor) -> torch.Tensor:
        """The image kept outside the mask: `images` unless given; same shape as `images`."""
        if background is None:
            return images
        check_images(background, "background")
        if background.shape != images.shape:
            raise EditorError(f"background must have the images' shape {tuple(images.shape)}, got {tuple(background.shape)}")
        return background

    def _background_latents(self, background, images, conditioning, encoded) -> torch.Tensor:
        """z0 of `background` [B, 4, h, w], re-using an `_encode` result where it is the same image (no VAE pass)."""
        if background is images:
            return encoded[0]
        if background is conditioning:
            return encoded[1] * self.ip2p.vae.config.scaling_factor
        return self.ip2p.encode(pad_to_multiple(background, self.ip2p.vae_scale_factor))

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

    def _start(self, clean: torch.Tensor, noise: torch.Tensor, strength: float):
        """An edit's DDIM timesteps and first latents: z0 noised to the first step (official WYS, img2img), or
        pure noise at strength 1 with `start_from="noise"` (diffusers' IP2P pipeline).
        -> (timesteps, initial latents [B, 4, h, w], noise on z0's device and dtype)"""
        timesteps = self.ip2p.edit_timesteps(self.config.steps, strength)
        noise = noise.to(clean.device, clean.dtype)
        if strength >= 1 and self.start_from == "noise":
            return timesteps, noise * self.ip2p.scheduler.init_noise_sigma, noise
        return timesteps, self.ip2p.scheduler.add_noise(clean, noise, timesteps[:1]), noise

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
        known: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Edit from z0 `clean` with fixed `noise` (from `draw_noise`); only latent cells of `pixel_mask` [B, H, W]
        (`config.latent_mask` says which) may change, the others follow `known` (z0 of the background, default
        `clean`) re-noised. Returns decoded images cropped to `images`' size, on its device."""
        factor = self.ip2p.vae_scale_factor
        latent_mask = None
        if pixel_mask is not None:
            padded_mask = pad_to_multiple(pixel_mask[:, None].float(), factor)[:, 0] > 0
            latent_mask = latent_mask_from_pixels(padded_mask.to(clean.device), factor, self.config.latent_mask)
        timesteps, initial, noise = self._start(clean, noise, strength)

        def predict(noisy, t):
            return self.ip2p.predict_guided(
                noisy, t, image_latents, instruction, self.config.guidance_scale, self.config.image_guidance_scale
            ).to(noisy.dtype)

        known = clean if known is None else known
        latents = guided_denoise(
            predict, self.ip2p.scheduler, initial, known, noise, timesteps, latent_mask, on_step=on_step
        )
        return self._decode(latents, images)


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
        background: Optional[torch.Tensor] = None,
    ) -> EditResult:
        """Edit `images`; `mask` [B, H, W] bool overrides the relevance mask (3D passes the rendered relevance's).
        Outside the mask the latents follow `background`'s (default `images`) re-noised at every step, and the
        result is `background` there, bit for bit."""
        images, conditioning = self._check(images, instruction, conditioning)
        background = self._check_background(background, images)
        noise = self.draw_noise(images, generator)
        encoded = self._encode(images, conditioning)
        relevance = None
        extras = {}
        if mask is None and self.localizer == "zone":
            found = self.localize_zone(images, instruction, conditioning, generator, encoded=encoded)
            relevance, mask = found.refined_mask.float(), found.refined_mask
            extras = {"rough_mask": found.rough_mask, "refined_mask": found.refined_mask, "actions": found.actions}
        elif mask is None:
            relevance = self._relevance(*encoded, instruction, generator, images)
            mask = relevance_mask(relevance, self.config.tau)
        mask = self._check_mask(mask, images)
        if self.config.dilate_px > 0:
            mask = relevance_mask(mask.float(), 0.5, self.config.dilate_px)
        known = self._background_latents(background, images, conditioning, encoded)
        edited = self._denoise(*encoded, instruction, mask, strength, noise, images, on_step, known)
        result = composite(edited, background.float(), feathered_weights(mask, self.config.feather_px))
        return EditResult(images=result, relevance=relevance, mask=mask, extras=extras)


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
        on_step=None,
        background: Optional[torch.Tensor] = None,
    ) -> EditResult:
        images, conditioning = self._check(images, instruction, conditioning)
        noise = self.draw_noise(images, generator)
        edited = self._denoise(*self._encode(images, conditioning), instruction, None, strength, noise, images, on_step)
        return EditResult(images=edited)


class ZoneEditor(IP2PEditor):
    """ZONE: a global edit by IP2P fused with MagicBrush, cut out by the localised mask and blended back with the
    FFT edge smoother. Pixels outside the smoothed mask M_f* are exactly the input's.

    With `mask` given (the 3D method passes its rendered relevance), that mask is M_f: no attention or SAM.
    The edited layer is blended over `background` (default `images`)."""

    default_localizer = "zone"
    default_start = "noise"  # ZONE's code runs diffusers' IP2P sampling
    uses_zone = True

    def edit(
        self,
        images: torch.Tensor,
        instruction: str,
        conditioning: Optional[torch.Tensor] = None,
        mask: Optional[torch.Tensor] = None,
        strength: float = 1.0,
        generator: Optional[torch.Generator] = None,
        on_step=None,
        background: Optional[torch.Tensor] = None,
    ) -> EditResult:
        images, conditioning = self._check(images, instruction, conditioning)
        background = self._check_background(background, images)
        noise = self.draw_noise(images, generator)
        settings = self.config.zone
        if mask is None:
            found = self.localize_zone(images, instruction, conditioning, generator, strength, noise, on_step)
            canvas, refined = found.canvas, found.refined_mask
            extras = {"rough_mask": found.rough_mask, "refined_mask": refined, "actions": found.actions,
                      "canvas": canvas}
        else:
            refined = self._check_mask(mask, images)
            action, canvas, _, _ = self._fused_edit(images, instruction, conditioning, strength, noise, on_step=on_step)
            extras = {"refined_mask": refined, "actions": [action] * images.shape[0], "canvas": canvas}
        with self.stage("edge smoother + blend"):
            final = zone.fft_edge_mask(canvas, background.float(), refined, settings.edge_dilate_px,
                                       settings.edge_radius_px, settings.edge_threshold, settings.edge_close_px)
            result = zone.blend_layers(canvas, background.float(), final, refined, settings.edge_alpha)
        return EditResult(images=result, relevance=refined.float(), mask=final, extras=extras)


# Imported here, after the classes it uses from this module exist (it imports them back).
from nerf_edit.colorkey import ColorKeyEditor  # noqa: E402

EDITORS = {"relevance": RelevanceGuidedEditor, "wys": RelevanceGuidedEditor, "global": GlobalEditor, "zone": ZoneEditor,
           "colorkey": ColorKeyEditor}  # colorkey: rule-based demonstration editor, not IP2P (nerf_edit/colorkey.py)


def editor_class(spec: str) -> type:
    """An editor class from a registered name or an import path `package.module:Class`."""
    if spec in EDITORS:
        return EDITORS[spec]
    if ":" not in spec:
        raise EditorError(f"unknown editor {spec!r}: use one of {sorted(EDITORS)} or an import path 'package.module:Class'")
    try:
        cls = import_object(spec, "editor")
    except UsageError as error:
        raise EditorError(str(error)) from error
    if not all(callable(getattr(cls, name, None)) for name in ("relevance", "edit")):
        raise EditorError(f"editor {spec!r} lacks relevance()/edit(): see nerf_edit.editors.Editor")
    return cls


def make_editor(spec: str, config: Optional[EditorConfig] = None) -> Editor:
    return editor_class(spec)(config if config is not None else EditorConfig())
