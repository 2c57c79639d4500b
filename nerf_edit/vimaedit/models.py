"""The networks ViMAEdit runs, loaded by hub id, local folder or `tiny`: SD-1.5 (with the IP-Adapter in its UNet)
and CLIP ViT-H/14, and ViMAEdit's DDIM scheduler."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from nerf_edit.config.vimaedit import ViMAEditConfig
from nerf_edit.errors import ModelUnavailableError
from nerf_edit.models.clip import load_clip
from nerf_edit.models.ip2p import sd1_ddim_scheduler
from nerf_edit.models.loading import _DTYPE_KWARG, check_available, is_tiny, resolve_dtype, unavailable_message
from nerf_edit.models.tiny import build_tiny_ip_adapter, build_tiny_sd_pipeline


def vimaedit_ddim_scheduler(config, steps_offset: int = 1):
    """DDIM with SD-1.x's noise schedule and every setting given, as the official ViMAEdit run ends up with:
    `leading` spacing, `steps_offset` 1 (50 steps: 981, 961, ..., 1), no clipping of x̂0, ᾱ_prev = 1 after the last
    step. The official EDDIMScheduler(eta=1.0, betas) has DDIM's defaults (offset 0, clip_sample True), but
    `DiffusionPipeline.from_pretrained(..., scheduler=...)` builds a StableDiffusionPipeline, whose `__init__`
    rewrites them to offset 1 and clip_sample False (Null-0000/ViMAEdit models/p2p_editor.py ~21, run_editing_vima.py
    ~77-82; diffusers pipeline_stable_diffusion.py ~214-241)."""
    return sd1_ddim_scheduler(config, timestep_spacing="leading", steps_offset=steps_offset, set_alpha_to_one=True)


@dataclass
class ViMAEditModels:
    """The networks ViMAEdit runs: SD-1.5 parts (with the IP-Adapter in the UNet when loaded) and CLIP."""

    unet: torch.nn.Module
    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    scheduler: object
    clip: Optional[torch.nn.Module] = None
    clip_tokenizer: object = None
    clip_processor: object = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32


def load_vimaedit_models(settings: ViMAEditConfig, device: str = "cpu", dtype=None) -> ViMAEditModels:
    """SD-1.5 (+ IP-Adapter + CLIP when `image_guidance`), each by hub id, local folder or `tiny`; a model that cannot
    be had is one ModelUnavailableError line, raised before any weights load."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import logging as diffusers_logging

    torch_dtype = resolve_dtype(device, dtype)
    if not is_tiny(settings.model):
        check_available(settings.model, "model_index.json", "--vimaedit.model")
    if settings.image_guidance:
        if not is_tiny(settings.ip_adapter):
            check_available(settings.ip_adapter, f"{settings.ip_adapter_subfolder}/{settings.ip_adapter_weight}".lstrip("/"),
                            "--vimaedit.ip-adapter")
        if not is_tiny(settings.clip_model):
            check_available(settings.clip_model, "config.json", "--vimaedit.clip-model")
    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # our one-line errors replace diffusers' chatter
    try:
        if is_tiny(settings.model):
            pipe = build_tiny_sd_pipeline(int(settings.model.partition(":")[2] or 0))
        else:
            pipe = _from_pretrained(StableDiffusionPipeline, settings.model, **{_DTYPE_KWARG: torch_dtype},
                                    safety_checker=None, requires_safety_checker=False)
        clip = clip_tokenizer = clip_processor = None
        if settings.image_guidance:
            if is_tiny(settings.ip_adapter):
                pipe.load_ip_adapter(build_tiny_ip_adapter(pipe.unet), subfolder="", weight_name="",
                                     image_encoder_folder=None)
            else:
                try:
                    pipe.load_ip_adapter(settings.ip_adapter, subfolder=settings.ip_adapter_subfolder,
                                         weight_name=settings.ip_adapter_weight, image_encoder_folder=None)
                except (OSError, ValueError, KeyError) as error:
                    raise ModelUnavailableError(unavailable_message(settings.ip_adapter, error)) from error
            pipe.set_ip_adapter_scale(settings.ip_adapter_scale)
            clip, clip_tokenizer, clip_processor = load_clip(settings.clip_model)
            clip = clip.to(device, torch_dtype).eval()
    finally:
        diffusers_logging.set_verbosity(verbosity)
    if pipe.unet.dtype != torch_dtype:
        pipe = pipe.to(dtype=torch_dtype)
    pipe = pipe.to(device)
    return ViMAEditModels(
        unet=pipe.unet, vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer,
        scheduler=vimaedit_ddim_scheduler(pipe.scheduler.config, settings.timestep_offset), clip=clip, clip_tokenizer=clip_tokenizer,
        clip_processor=clip_processor, device=torch.device(device), dtype=torch_dtype,
    )


def _from_pretrained(cls, model: str, **kwargs):
    path = Path(model).expanduser()
    try:
        return cls.from_pretrained(str(path) if path.is_dir() else model, **kwargs)
    except (OSError, ValueError, EnvironmentError) as error:
        raise ModelUnavailableError(unavailable_message(model, error)) from error
