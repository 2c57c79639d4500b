"""Automatic segments of an image, for ZONE's Region-IoU refinement.

A segmenter maps an image [3, H, W] in [0, 1] to segments [N, H, W] bool. The default is SAM's automatic mask
generation through transformers (`SamModel` + the `mask-generation` pipeline); `tiny` is a random-weight SAM built
in code (offline tests: its segments are arbitrary but real SAM outputs); any `package.module:Name` constructed
without arguments (or a function) plugs in.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch

from nerf_edit.loading import ModelUnavailableError, resolve_dtype, unavailable_message
from nerf_edit.plugins import build_plugin

SAM_MODEL_ID = "facebook/sam-vit-huge"
TINY_SAM = "tiny"
Segmenter = Callable[[torch.Tensor], torch.Tensor]


def build_tiny_sam(seed: int = 0):
    """SAM's architecture (ViT image encoder, prompt encoder, two-way mask decoder) at 64² with random weights."""
    from transformers import SamConfig, SamImageProcessor, SamMaskDecoderConfig, SamModel, SamPromptEncoderConfig
    from transformers import SamVisionConfig

    image_size, patch_size, hidden = 64, 8, 32
    config = SamConfig(
        vision_config=SamVisionConfig(
            hidden_size=hidden, output_channels=hidden, num_hidden_layers=2, num_attention_heads=2,
            image_size=image_size, patch_size=patch_size, window_size=4, global_attn_indexes=(1,),
            num_pos_feats=hidden // 2, mlp_dim=2 * hidden,
        ),
        prompt_encoder_config=SamPromptEncoderConfig(
            hidden_size=hidden, image_size=image_size, patch_size=patch_size, mask_input_channels=4
        ),
        mask_decoder_config=SamMaskDecoderConfig(
            hidden_size=hidden, mlp_dim=2 * hidden, num_attention_heads=2, iou_head_hidden_dim=hidden
        ),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SamModel(config).eval()
    processor = SamImageProcessor(
        size={"longest_edge": image_size}, pad_size={"height": image_size, "width": image_size},
        mask_size={"longest_edge": image_size // 4}, mask_pad_size={"height": image_size // 4, "width": image_size // 4},
    )
    return model, processor


def build_full_size_sam(seed: int = 0, dtype: torch.dtype = torch.float32):
    """`facebook/sam-vit-huge`'s architecture (ViT-H/16 at 1024², 32 layers) with random weights: its FLOPs without
    a download, for GPU benchmarks."""
    from transformers import SamConfig, SamImageProcessor, SamModel, SamVisionConfig

    config = SamConfig(vision_config=SamVisionConfig(
        hidden_size=1280, num_hidden_layers=32, num_attention_heads=16, global_attn_indexes=(7, 15, 23, 31)
    ))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SamModel(config).eval().to(dtype)
    return model, SamImageProcessor()


class SamSegmenter:
    """All of SAM's automatic segments of an image (every level: whole, part, sub-part), as ZONE uses them.
    `model`: hub id, local folder, `tiny`, or a (SamModel, SamImageProcessor) pair built in code."""

    def __init__(
        self,
        model: str | tuple = SAM_MODEL_ID,
        device: str = "cpu",
        dtype: Optional[str] = None,
        points_per_side: int = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
    ):
        from transformers import SamImageProcessor, SamModel, pipeline

        if isinstance(model, tuple):  # (SamModel, SamImageProcessor) built in code
            sam, processor = model
        elif model == TINY_SAM:
            sam, processor = build_tiny_sam()
        else:
            try:
                sam = SamModel.from_pretrained(model, dtype=resolve_dtype(device, dtype))
                processor = SamImageProcessor.from_pretrained(model)
            except (OSError, ValueError) as error:
                raise ModelUnavailableError(unavailable_message(model, error)) from error
        self.generator = pipeline("mask-generation", model=sam.to(device), image_processor=processor, device=device)
        self.options = dict(
            points_per_crop=points_per_side, points_per_batch=points_per_batch, pred_iou_thresh=pred_iou_thresh,
            stability_score_thresh=stability_score_thresh,
        )

    @torch.no_grad()
    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """image [3, H, W] in [0, 1] -> segments [N, H, W] bool (N may be 0)."""
        from PIL import Image

        pixels = (image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
        masks = self.generator(Image.fromarray(pixels), **self.options)["masks"]
        if len(masks) == 0:
            return torch.zeros((0, *image.shape[-2:]), dtype=torch.bool)
        return torch.stack([torch.as_tensor(np.asarray(m)).bool() for m in masks])


def make_segmenter(spec: str, device: str = "cpu", dtype: Optional[str] = None, **options) -> Optional[Segmenter]:
    """`none` (no refinement), a SAM hub id / local folder / `tiny`, or an import path `package.module:Name`."""
    if spec == "none":
        return None
    if ":" in spec and not spec.startswith((".", "/", "~")):
        return build_plugin(spec, "segmenter")
    return SamSegmenter(spec, device=device, dtype=dtype, **options)
