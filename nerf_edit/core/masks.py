"""Boolean mask maths shared by the editors, the metrics and the tests: dilation and intersection over union.

Masks are torch bool tensors `[B, H, W]` (or anything `torch.as_tensor` takes: numpy arrays work for `mask_iou`).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Square dilation by `radius` pixels (a (2·radius + 1)² max filter; outside the image counts as unset).
    [B, H, W] bool -> [B, H, W] bool"""
    if radius <= 0:
        return mask.bool()
    return F.max_pool2d(mask[:, None].float(), 2 * radius + 1, stride=1, padding=radius)[:, 0] > 0


def mask_iou(a, b, dims: Optional[Sequence[int]] = None) -> torch.Tensor:
    """Intersection over union of boolean masks (torch tensors or numpy arrays, broadcast against each other),
    taken over `dims` (default: all of them, pooling every pixel of a batch). 0 where both masks are empty.
    [..., H, W] x2 -> float tensor of the dims left, e.g. `dims=(-2, -1)`: [N, H, W], [H, W] -> [N]"""
    a, b = torch.as_tensor(a).bool(), torch.as_tensor(b).bool()
    b = b.to(a.device)
    dims = tuple(range(len(torch.broadcast_shapes(a.shape, b.shape)))) if dims is None else tuple(dims)
    intersection = (a & b).sum(dim=dims)
    union = (a | b).sum(dim=dims)
    return intersection.float() / union.clamp_min(1).float()
