"""ZONE (Li et al., CVPR 2024) as parts: its models, its localiser and its editor.

- `ZoneParts`: the fusion model (MagicBrush), the segmenter (SAM) and the add/remove/change classifier.
- `ZoneLocalizer`: IP2P fused with MagicBrush edits globally while IP2P's cross-attention is recorded; the
  attention gives the rough mask M_b, the automatic segment with the best Region-IoU refines it to M_f.
- `ZoneEditor`: the fused global edit cut out by a mask (ZONE's, another localiser's refined by the segments, or
  the caller's) and blended back with the FFT edge smoother. Pixels outside the smoothed mask are the input's.
The maths are plain functions in `nerf_edit.zone`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from nerf_edit import zone
from nerf_edit.attention import CrossAttentionRecorder, record_cross_attention
from nerf_edit.checks import EditorError, check_background, check_mask
from nerf_edit.editors import EditorConfig, EditResult, IP2PEditor
from nerf_edit.guided import Step, StepCallback, StepHook, denoise, observe
from nerf_edit.ip2p import EncodedInputs, InstructPix2Pix, pad_to_multiple
from nerf_edit.localizers import IP2PLocalizer, Localization, Localizer, localize
from nerf_edit.segment import make_segmenter
from nerf_edit.stages import StageTimer
from nerf_edit.validate import UsageError


@dataclass
class ZoneParts:
    """ZONE's models besides IP2P, loaded once and shared by its localiser and editor."""

    fusion: Optional[InstructPix2Pix]  # MagicBrush (None: no fusion)
    segmenter: Optional[Callable]  # image [3, H, W] -> segments [N, H, W] bool (None: keep the rough mask)
    classify: Callable[[str], str]  # instruction -> "add" | "remove" | "change"

    def action(self, instruction: str) -> str:
        action = self.classify(instruction)
        if action not in zone.ACTIONS:
            raise EditorError(f"the action classifier returned {action!r}: it must return one of {list(zone.ACTIONS)}")
        return action


def load_zone_parts(config: EditorConfig, ip2p: InstructPix2Pix, fusion: Optional[InstructPix2Pix] = None,
                    segmenter=None) -> ZoneParts:
    """ZONE's parts from `config.zone`, unless given (benchmarks pass random-weight full-size models)."""
    settings = config.zone
    device = str(ip2p.device)
    try:
        if fusion is None and settings.fusion_model not in ("none", config.model):
            fusion = InstructPix2Pix.from_pretrained(settings.fusion_model, device, config.dtype)
            if fusion.vae.config.latent_channels != ip2p.vae.config.latent_channels:
                raise EditorError(f"fusion model {settings.fusion_model!r} has a different latent space than "
                                  f"{config.model!r}: use an IP2P-architecture model or --zone.fusion-model none")
        classify = zone.action_classifier(settings.action)
        if segmenter is None:
            segmenter = make_segmenter(settings.segmenter, device=device, dtype=config.dtype,
                                       points_per_side=settings.sam_points_per_side,
                                       points_per_batch=settings.sam_points_per_batch)
    except EditorError:
        raise
    except UsageError as error:
        raise EditorError(str(error)) from error
    return ZoneParts(fusion, segmenter, classify)


@dataclass
class ZoneLocalization(Localization):
    """ZONE's localisation of a batch; `mask` is the refined mask M_f."""

    canvas: Optional[torch.Tensor] = None  # [B, 3, H, W] the globally edited image I_sty (fused IP2P)
    rough_mask: Optional[torch.Tensor] = None  # [B, H, W] bool M_b (None when the caller gave the mask)
    refined_mask: Optional[torch.Tensor] = None  # [B, H, W] bool M_f, the segment with the best Region-IoU
    actions: list = field(default_factory=list)  # the add/remove/change decision per image
    attention: Optional[torch.Tensor] = None  # [B, h, w, L] the averaged cross-attention maps


class FusionHook:
    """Step hook of ZONE's fused IP2P: the fusion model takes its own guided DDIM step from its own latents (as
    ZONE's code, it keeps its own chain), and IP2P's latents become (z_ip2p + β·z_fusion)/(1 + β)."""

    def __init__(self, fusion: InstructPix2Pix, scheduler, start: torch.Tensor, conditioning: torch.Tensor,
                 instruction: str, guidance_scale: float, image_guidance_scale: float, beta: float):
        self.predict = fusion.guided_predictor(
            fusion.encode_condition(pad_to_multiple(conditioning, fusion.vae_scale_factor)), instruction,
            guidance_scale, image_guidance_scale)
        self.scheduler = scheduler  # DDIM's step is stateless once the timesteps are set: one serves both chains
        self.latents = start  # [B, 4, h, w]
        self.beta = beta

    def __call__(self, step: Step) -> torch.Tensor:
        t = step.timestep
        eps = self.predict(self.scheduler.scale_model_input(self.latents, t), t)
        self.latents = self.scheduler.step(eps, t, self.latents).prev_sample
        return zone.fuse_latents(step.latents, self.latents, self.beta)


def next_attention_step(recorder: CrossAttentionRecorder) -> StepHook:
    """Hook: tell the recorder a denoising step ended (it averages maps over steps)."""

    def hook(step: Step) -> torch.Tensor:
        recorder.next_step()
        return step.latents

    return hook


@dataclass
class FusedEdit:
    action: str
    latents: torch.Tensor  # [B, 4, h, w] the final latents
    canvas: torch.Tensor  # [B, 3, H, W] decoded, cropped to the images
    recorder: Optional[CrossAttentionRecorder] = None  # IP2P's cross-attention, when recorded


class ZoneLocalizer(IP2PLocalizer):
    """ZONE §4.2-4.3: fused edit of the conditioning with IP2P's cross-attention recorded, rough mask from the
    attention, refined by the automatic segment with the best Region-IoU (segments of the edit, or of the images
    for "remove"). Starts from noise, as ZONE's code (diffusers' IP2P sampling), unless `config.start_from` says."""

    def __init__(self, config: EditorConfig, ip2p: InstructPix2Pix, parts: Optional[ZoneParts] = None,
                 stages: Optional[StageTimer] = None):
        super().__init__(config, ip2p)
        self.parts = parts if parts is not None else load_zone_parts(config, ip2p)
        self.stages = stages if stages is not None else StageTimer(str(ip2p.device))

    @property
    def start_from(self) -> str:
        return "noise" if self.config.start_from == "auto" else self.config.start_from

    def fused_edit(self, encoded: EncodedInputs, instruction: str, strength: float, noise: torch.Tensor,
                   record: bool = False, on_step: Optional[StepCallback] = None) -> FusedEdit:
        """Classify the instruction, then IP2P fused with the fusion model edits `encoded` globally; IP2P's
        cross-attention is recorded only when `record`."""
        ip2p, config, stage = self.ip2p, self.config, self.stages.stage
        with stage("classify"):
            action = self.parts.action(instruction)
        with stage("fused denoise + attention capture" if record else "fused denoise"):
            timesteps, latents, noise = ip2p.start_latents(encoded.clean, noise, config.steps, strength,
                                                           self.start_from == "noise")
            recorder = CrossAttentionRecorder(branches=3, branch=0) if record else None
            hooks = [next_attention_step(recorder)] if recorder is not None else []
            if self.parts.fusion is not None:
                hooks.append(FusionHook(self.parts.fusion, ip2p.scheduler, latents, encoded.conditioning, instruction,
                                        config.guidance_scale, config.image_guidance_scale, zone.FUSION_BETA[action]))
            if on_step is not None:
                hooks.append(observe(on_step))
            predict = ip2p.guided_predictor(encoded.condition, instruction, config.guidance_scale,
                                            config.image_guidance_scale)
            recording = record_cross_attention(ip2p.unet, recorder) if recorder is not None else contextlib.nullcontext()
            with recording:
                latents = denoise(predict, ip2p.scheduler, latents, timesteps, hooks)
        with stage("decode"):
            canvas = ip2p.decode_cropped(latents, encoded.images)
        return FusedEdit(action, latents, canvas, recorder)

    def refine(self, images: torch.Tensor, canvas: torch.Tensor, rough: torch.Tensor, action: str) -> torch.Tensor:
        """M_f: per image, the segment with the best Region-IoU against `rough` [B, H, W] (segments of the edit,
        or of `images` for "remove"); `rough` itself without a segmenter or segments. -> [B, H, W] bool"""
        refined = rough.clone()
        segmenter = self.parts.segmenter
        if segmenter is None:
            return refined
        source = images if action == "remove" else canvas
        for i in range(images.shape[0]):
            with self.stages.stage("segment (SAM)"):
                segments = segmenter(source[i])
            with self.stages.stage("Region-IoU"):
                refined[i] = zone.refine_mask(segments, rough[i])[0].to(images.device)
        return refined

    def localize_encoded(self, encoded: EncodedInputs, instruction: str, generator: Optional[torch.Generator] = None,
                         strength: float = 1.0, noise: Optional[torch.Tensor] = None,
                         on_step: Optional[StepCallback] = None) -> ZoneLocalization:
        settings = self.config.zone
        images = encoded.images
        if noise is None:
            noise = self.ip2p.draw_noise(images, generator)
        fused = self.fused_edit(encoded, instruction, strength, noise, record=True, on_step=on_step)
        height, width = encoded.size
        with self.stages.stage("rough mask"):
            factor = self.ip2p.vae_scale_factor
            padded_size = (fused.latents.shape[-2] * factor, fused.latents.shape[-1] * factor)
            attention = fused.recorder.average(padded_size, settings.attention_layers)
            last = zone.last_token_index(self.ip2p.tokenizer, instruction)
            rough = zone.rough_mask(attention, last, padded_size, settings.attention_threshold,
                                    settings.attention_contrast)[:, :height, :width].to(images.device)
        refined = self.refine(images, fused.canvas, rough, fused.action)
        return ZoneLocalization(mask=refined, canvas=fused.canvas, rough_mask=rough, refined_mask=refined,
                                actions=[fused.action] * images.shape[0], attention=attention)


class ZoneEditor(IP2PEditor):
    """ZONE: a global edit by IP2P fused with MagicBrush, cut out by the localised mask and blended back with the
    FFT edge smoother. Pixels outside the smoothed mask M_f* are exactly the input's (or `background`'s).

    The mask is ZONE's own (`localizer` auto/zone: one fused edit gives both the canvas and the mask), another
    localiser's refined by the segments (e.g. `relevance`: WYS relevance >= τ as M_b), or the caller's `mask`
    taken as M_f (the 3D method passes its rendered relevance's: no attention, no segments)."""

    default_localizer = "zone"
    default_start = "noise"  # ZONE's code runs diffusers' IP2P sampling
    uses_zone = True

    def __init__(self, config: EditorConfig, ip2p: Optional[InstructPix2Pix] = None,
                 localizer: Optional[Localizer] = None, fusion: Optional[InstructPix2Pix] = None, segmenter=None):
        self.zone: Optional[ZoneLocalizer] = None  # ZONE's machinery (fused edit, segments), whatever the localiser
        super().__init__(config, ip2p, localizer, fusion, segmenter)
        if self.zone is None:
            self.zone = self._zone_localizer()

    def _zone_localizer(self) -> ZoneLocalizer:
        parts = load_zone_parts(self.config, self.ip2p, *self._given_zone_parts)
        return ZoneLocalizer(self.config, self.ip2p, parts, self.stages)

    def make_localizer(self) -> Localizer:
        if self.localizer_name == "zone":
            self.zone = self._zone_localizer()
            return self.zone
        return super().make_localizer()

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
        background = check_background(background, images)
        noise = self.draw_noise(images, generator)
        with self.stages.stage("encode"):
            encoded = self.ip2p.encode_inputs(images, conditioning)
        if mask is None and self.localizer is self.zone:
            found = self.zone.localize_encoded(encoded, instruction, generator, strength, noise, on_step)
        else:
            fused = self.zone.fused_edit(encoded, instruction, strength, noise, record=False, on_step=on_step)
            actions = [fused.action] * images.shape[0]
            if mask is None:  # another localiser's mask is ZONE's rough mask; the segments refine it
                rough = localize(self.localizer, images, instruction, conditioning, generator, encoded).mask
                refined = self.zone.refine(images, fused.canvas, rough, fused.action)
                found = ZoneLocalization(mask=refined, canvas=fused.canvas, rough_mask=rough, refined_mask=refined,
                                         actions=actions)
            else:
                refined = check_mask(mask, images)
                found = ZoneLocalization(mask=refined, canvas=fused.canvas, refined_mask=refined, actions=actions)
        settings = self.config.zone
        with self.stages.stage("edge smoother + blend"):
            final = zone.fft_edge_mask(found.canvas, background.float(), found.refined_mask, settings.edge_dilate_px,
                                       settings.edge_radius_px, settings.edge_threshold, settings.edge_close_px)
            result = zone.blend_layers(found.canvas, background.float(), final, found.refined_mask, settings.edge_alpha)
        return EditResult(images=result, relevance=found.refined_mask.float(), mask=final, localization=found)
