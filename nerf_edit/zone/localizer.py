"""ZONE's localiser: the fused IP2P edit with IP2P's cross-attention recorded gives the rough mask M_b; the
automatic segment with the best Region-IoU refines it to M_f."""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field
from typing import Optional

import torch

from nerf_edit.config.editor import EditorConfig
from nerf_edit.config.zone import ATTENTION_BRANCHES
from nerf_edit.core.guided import StepCallback, denoise, observe
from nerf_edit.core.stages import StageTimer
from nerf_edit.editing.ip2p_editor import step_hook_plugins
from nerf_edit.editing.localizer import IP2PLocalizer, Localization
from nerf_edit.models.attention import CrossAttentionRecorder, record_cross_attention
from nerf_edit.models.ip2p import EncodedInputs, InstructPix2Pix, sd1_dpm_solver_scheduler
from nerf_edit.zone import ops as zone
from nerf_edit.zone.checks import check_zone_config
from nerf_edit.zone.parts import FusionHook, ZoneParts, load_zone_parts, next_attention_step


@dataclass
class ZoneLocalization(Localization):
    """ZONE's localisation of a batch; `mask` is the refined mask M_f."""

    canvas: Optional[torch.Tensor] = None  # [B, 3, H, W] the globally edited image I_sty (fused IP2P)
    rough_mask: Optional[torch.Tensor] = None  # [B, H, W] bool M_b less small regions (None: the caller gave M_f)
    refined_mask: Optional[torch.Tensor] = None  # [B, H, W] bool M_f, the best Region-IoU segment less small regions
    actions: list = field(default_factory=list)  # the add/remove/change decision per image
    action_classifier: str = ""  # which classifier decided (ZONE's checkpoint, the keyword rules, ...)
    attention: Optional[torch.Tensor] = None  # [B, h, w, L] the averaged cross-attention maps


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
        """`parts` (MagicBrush, SAM, the classifier) are loaded from `config.zone` unless given (benchmarks pass
        random-weight full-size models); `stages` times the steps (an editor passes its own timer)."""
        super().__init__(config, ip2p)
        self.parts = parts if parts is not None else load_zone_parts(config, ip2p)
        self.stages = stages if stages is not None else StageTimer(str(ip2p.device))

    @classmethod
    def check_settings(cls, config: EditorConfig, prefix: str = "--", check_models: bool = True) -> None:
        """ZONE's settings (`config.zone`, flags `prefix` + `zone.`), and with `check_models` that its models
        (fusion model, segmenter, action classifier) can be had: checked before any loads."""
        check_zone_config(config.zone, f"{prefix}zone.", main_model=config.model, check_models=check_models)

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
            scheduler = self.sampler()
            timesteps, latents, noise = ip2p.start_latents(encoded.clean, noise, config.steps, strength,
                                                           self.start_from == "noise", scheduler)
            recorder = (CrossAttentionRecorder(branches=3, branch=ATTENTION_BRANCHES[config.zone.attention_branch])
                        if record else None)
            hooks = step_hook_plugins(config, ip2p)
            if recorder is not None:
                hooks.append(next_attention_step(recorder))
            if self.parts.fusion is not None:
                # its own chain, its own sampler instance (a multistep solver keeps state), with the same timesteps
                hooks.append(FusionHook(self.parts.fusion, copy.deepcopy(scheduler), latents, encoded.conditioning,
                                        instruction, config.guidance_scale, config.image_guidance_scale,
                                        zone.FUSION_BETA[action]))
            if on_step is not None:
                hooks.append(observe(on_step))
            predict = ip2p.guided_predictor(encoded.condition, instruction, config.guidance_scale,
                                            config.image_guidance_scale)
            recording = record_cross_attention(ip2p.unet, recorder) if recorder is not None else contextlib.nullcontext()
            with recording:
                latents = denoise(predict, scheduler, latents, timesteps, hooks)
        with stage("decode"):
            canvas = ip2p.decode_cropped(latents, encoded.images)
        return FusedEdit(action, latents, canvas, recorder)

    def sampler(self):
        """The fused edit's sampler: the model's DDIM (stateless: shared), or a fresh DPM-Solver++ for this edit."""
        if self.config.zone.sampler == "dpm-solver++":
            return sd1_dpm_solver_scheduler(self.ip2p.model_scheduler_config, self.config.zone.final_sigmas)
        return self.ip2p.scheduler

    def refine(self, images: torch.Tensor, canvas: torch.Tensor, rough: torch.Tensor,
               action: str) -> tuple[torch.Tensor, torch.Tensor]:
        """M_b and M_f: `rough` [B, H, W] less its small regions, then per image the segment with the best
        Region-IoU against it (segments of the edit, or of `images` for "remove"; M_b itself without a segmenter
        or segments) less its small regions, the official code's order (utils/mask_utils.py ~161-163).
        -> ([B, H, W] bool, [B, H, W] bool)"""
        area = self.config.zone.small_regions_px
        rough = zone.remove_small_regions(rough, area)
        refined = rough.clone()
        segmenter = self.parts.segmenter
        if segmenter is None:
            return rough, refined
        source = images if action == "remove" else canvas
        for i in range(images.shape[0]):
            with self.stages.stage("segment (SAM)"):
                segments = segmenter(source[i])
            with self.stages.stage("Region-IoU"):
                refined[i] = zone.refine_mask(segments, rough[i])[0].to(images.device)
        return rough, zone.remove_small_regions(refined, area)

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
        rough, refined = self.refine(images, fused.canvas, rough, fused.action)
        return ZoneLocalization(mask=refined, canvas=fused.canvas, rough_mask=rough, refined_mask=refined,
                                actions=[fused.action] * images.shape[0], attention=attention,
                                action_classifier=self.parts.classifier_name)
