"""CLIP through transformers: loading by hub id, folder or `tiny`, and its projected features."""

from __future__ import annotations

import torch

from nerf_edit.errors import ModelUnavailableError
from nerf_edit.models.loading import is_tiny, unavailable_message
from nerf_edit.models.tiny import build_tiny_clip


def load_clip(model: str):
    """(CLIPModel, tokenizer, image processor) by hub id, folder or `tiny`."""
    if is_tiny(model):
        return build_tiny_clip(int(model.partition(":")[2] or 0))
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

    try:
        return CLIPModel.from_pretrained(model), CLIPTokenizer.from_pretrained(model), CLIPImageProcessor.from_pretrained(model)
    except (OSError, ValueError) as error:
        raise ModelUnavailableError(unavailable_message(model, error)) from error


def projected_features(output) -> torch.Tensor:
    """The projected features of `get_image_features`/`get_text_features`: transformers 5 returns a model output
    where 4.x returned the tensor."""
    if isinstance(output, torch.Tensor):
        return output
    return output.pooler_output if getattr(output, "pooler_output", None) is not None else output[0]
