"""Metrics of instruction-guided editing, as in the instruct-nerf2nerf and Watch Your Steps papers.

CLIP metrics take embeddings (unit vectors, [N, D]) so they can be computed once per frame and reused; pixel
metrics measure how well the background (outside the edit mask) was preserved.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F

from nerf_edit.errors import ModelUnavailableError, UsageError
from nerf_edit.models.clip import projected_features
from nerf_edit.models.loading import unavailable_message
from nerf_edit.models.tiny import build_tiny_clip

CLIP_MODEL_ID = "openai/clip-vit-base-patch32"
TINY_CLIP = "tiny"


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine similarity. [N, D] x2 -> [N] in [-1, 1]"""
    return F.cosine_similarity(a.float(), b.float(), dim=-1).clamp(-1, 1)


def text_image_similarity(image_embeddings: torch.Tensor, text_embedding: torch.Tensor) -> torch.Tensor:
    """CLIP score of each frame against one caption or instruction. [N, D], [D] -> [N]"""
    return cosine(image_embeddings, text_embedding.expand_as(image_embeddings))


def directional_similarity(
    edited: torch.Tensor, original: torch.Tensor, source_text: torch.Tensor, target_text: torch.Tensor
) -> torch.Tensor:
    """Agreement of the edit's direction in image space with the caption change in text space. [N, D] x2, [D] x2 -> [N]"""
    return cosine(edited - original, (target_text - source_text).expand_as(edited))


def direction_consistency(edited: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Frame-to-frame CLIP directional consistency: does the edited video move like the original? [N, D] x2 -> [N-1]"""
    return cosine(edited[1:] - edited[:-1], original[1:] - original[:-1])


def background_metrics(edited: torch.Tensor, original: torch.Tensor, edit_mask: torch.Tensor) -> Dict[str, float]:
    """PSNR, L1 and L2 (mean squared error) over pixels outside the edit mask.

    edited, original [N, 3, H, W] in [0, 1]; edit_mask [N, H, W] bool, True where the edit was meant to act."""
    keep = (~edit_mask.bool())[:, None].expand_as(edited)
    if not keep.any():
        raise UsageError("the masks cover every pixel: there is no background to measure")
    difference = (edited.float() - original.float())[keep]
    l2 = float((difference**2).mean())
    return {"psnr": 10 * math.log10(1.0 / max(l2, 1e-12)), "l1": float(difference.abs().mean()), "l2": l2}


class ClipEmbedder:
    """CLIP image and text embeddings through transformers (`openai/clip-vit-base-patch32` by default)."""

    def __init__(self, model: str = CLIP_MODEL_ID, device: str = "cpu"):
        from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

        if model == TINY_CLIP:
            self.model, self.tokenizer, self.processor = build_tiny_clip()
        else:
            try:
                self.model = CLIPModel.from_pretrained(model)
                self.tokenizer = CLIPTokenizer.from_pretrained(model)
                self.processor = CLIPImageProcessor.from_pretrained(model)
            except (OSError, ValueError) as error:
                raise ModelUnavailableError(unavailable_message(model, error)) from error
        self.device = device
        self.model = self.model.to(device).eval()

    @torch.no_grad()
    def images(self, images: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
        """[N, 3, H, W] in [0, 1] -> unit embeddings [N, D]"""
        embeddings = []
        for start in range(0, len(images), batch_size):
            pixels = self.processor(images=list(images[start : start + batch_size].float().clamp(0, 1)),
                                    return_tensors="pt", do_rescale=False).pixel_values
            embeddings.append(projected_features(self.model.get_image_features(pixel_values=pixels.to(self.device))))
        return F.normalize(torch.cat(embeddings).float(), dim=-1)

    @torch.no_grad()
    def texts(self, texts: Sequence[str]) -> torch.Tensor:
        """captions -> unit embeddings [N, D]"""
        tokens = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt").to(self.device)
        return F.normalize(projected_features(self.model.get_text_features(**tokens)).float(), dim=-1)


def edit_metrics(
    embedder: ClipEmbedder,
    edited: torch.Tensor,
    original: torch.Tensor,
    instruction: str,
    source_caption: Optional[str] = None,
    target_caption: Optional[str] = None,
    edit_masks: Optional[torch.Tensor] = None,
) -> Dict[str, object]:
    """All metrics for two aligned frame sequences [N, 3, H, W]: means, plus per-frame values for plots."""
    if edited.shape != original.shape:
        raise UsageError(f"edited {tuple(edited.shape)} and original {tuple(original.shape)} frames differ in shape: "
                         "render both along the same camera path at the same size")
    edited_emb, original_emb = embedder.images(edited), embedder.images(original)
    per_frame: Dict[str, list] = {
        "clip_text_image": text_image_similarity(edited_emb, embedder.texts([instruction])[0]).tolist(),
        "clip_image_to_original": cosine(edited_emb, original_emb).tolist(),
    }
    if len(edited) > 1:
        per_frame["clip_direction_consistency"] = direction_consistency(edited_emb, original_emb).tolist()
    if source_caption and target_caption:
        source, target = embedder.texts([source_caption, target_caption])
        per_frame["clip_directional"] = directional_similarity(edited_emb, original_emb, source, target).tolist()
        per_frame["clip_text_image_target"] = text_image_similarity(edited_emb, target).tolist()
    results: Dict[str, object] = {name: sum(values) / len(values) for name, values in per_frame.items()}
    if edit_masks is not None:
        results.update({f"background_{k}": v for k, v in background_metrics(edited, original, edit_masks).items()})
    results["frames"] = len(edited)
    results["per_frame"] = per_frame
    return results
