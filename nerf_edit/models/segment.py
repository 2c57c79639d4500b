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

from nerf_edit.errors import ModelUnavailableError
from nerf_edit.model_ids import SAM_MODEL_ID  # noqa: F401  (re-exported: the segmenter's default)
from nerf_edit.models.loading import resolve_dtype, unavailable_message
from nerf_edit.models.tiny import build_tiny_sam
from nerf_edit.plugins import build_plugin

TINY_SAM = "tiny"
Segmenter = Callable[[torch.Tensor], torch.Tensor]


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
