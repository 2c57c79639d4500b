"""ZONE's models besides IP2P (MagicBrush, SAM, the action classifier) and the step hooks of its fused edit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from nerf_edit.config.editor import EditorConfig
from nerf_edit.core.guided import Step, StepHook
from nerf_edit.errors import EditorError, as_editor_error
from nerf_edit.models.attention import CrossAttentionRecorder
from nerf_edit.models.ip2p import InstructPix2Pix, pad_to_multiple
from nerf_edit.models.loading import is_tiny
from nerf_edit.models.segment import make_segmenter
from nerf_edit.zone import ops as zone
from nerf_edit.zone.classifier import INPUT_SIZE, OfficialActionClassifier


@dataclass
class ZoneParts:
    """ZONE's models besides IP2P, loaded once and shared by its localiser and editor."""

    fusion: Optional[InstructPix2Pix]  # MagicBrush (None: no fusion)
    segmenter: Optional[Callable]  # image [3, H, W] -> segments [N, H, W] bool (None: keep the rough mask)
    classify: Callable[[str], str]  # instruction -> "add" | "remove" | "change"
    classifier_name: str = ""  # which classifier that is (said with every decision)

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
    with as_editor_error():
        if fusion is None and settings.fusion_model not in ("none", config.model):
            fusion = InstructPix2Pix.from_pretrained(settings.fusion_model, device, config.dtype)
            if fusion.vae.config.latent_channels != ip2p.vae.config.latent_channels:
                raise EditorError(f"fusion model {settings.fusion_model!r} has a different latent space than "
                                  f"{config.model!r}: use an IP2P-architecture model or --zone.fusion-model none")
        classify = action_classifier(settings.action, config.model, ip2p)
        if segmenter is None:
            segmenter = make_segmenter(settings.segmenter, device=device, dtype=config.dtype,
                                       points_per_side=settings.sam_points_per_side,
                                       points_per_batch=settings.sam_points_per_batch)
    return ZoneParts(fusion, segmenter, classify, classifier_name(classify, settings.action))


def classifier_name(classify: Callable[[str], str], spec: str) -> str:
    """What decides the action, in words: the classifier's own `name`, a fixed action, or the plug-in's path."""
    if getattr(classify, "name", None):
        return classify.name
    return f"fixed action {spec!r}" if spec in zone.ACTIONS else f"classifier {spec}"


def action_classifier(spec: str, model: str, ip2p: InstructPix2Pix) -> Callable[[str], str]:
    """`official`: ZONE's checkpoint on IP2P's own text encoder; `auto`: that when the text encoder is a real one of
    the checkpoint's width (not `tiny`), else the keyword rules; anything else as `zone.action_classifier`."""
    real_width = not is_tiny(model) and int(ip2p.text_encoder.config.hidden_size) == INPUT_SIZE
    if spec == "official" or (spec == "auto" and real_width):
        return OfficialActionClassifier(ip2p.tokenizer, ip2p.text_encoder)
    return zone.action_classifier("rules" if spec == "auto" else spec)


class FusionHook:
    """Step hook of ZONE's fused IP2P: the fusion model takes its own guided DDIM step from its own latents (as
    ZONE's code, it keeps its own chain), and IP2P's latents become (z_ip2p + β·z_fusion)/(1 + β)."""

    def __init__(self, fusion: InstructPix2Pix, scheduler, start: torch.Tensor, conditioning: torch.Tensor,
                 instruction: str, guidance_scale: float, image_guidance_scale: float, beta: float):
        self.predict = fusion.guided_predictor(
            fusion.encode_condition(pad_to_multiple(conditioning, fusion.vae_scale_factor)), instruction,
            guidance_scale, image_guidance_scale)
        self.scheduler = scheduler  # this chain's own (timesteps set): a multistep sampler's state is per chain
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
