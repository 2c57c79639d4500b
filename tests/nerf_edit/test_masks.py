"""Mask maths shared by editors, metrics and tests, on masks whose answer is counted by hand."""

import numpy as np
import torch

from nerf_edit.core.masks import dilate, mask_iou


def test_dilate_grows_a_pixel_into_a_square_clipped_at_the_border():
    mask = torch.zeros(2, 9, 9, dtype=torch.bool)
    mask[0, 4, 4] = True  # centre: a full 5x5 square
    mask[1, 0, 0] = True  # corner: the 3x3 quarter inside the image
    grown = dilate(mask, 2)
    assert grown.dtype == torch.bool and grown.shape == mask.shape
    assert grown[0].sum() == 25 and grown[0, 2:7, 2:7].all()
    assert grown[1].sum() == 9 and grown[1, :3, :3].all()
    assert torch.equal(dilate(mask, 0), mask)


def test_mask_iou_counts_overlap_over_union_for_torch_and_numpy():
    a = torch.zeros(4, 4, dtype=torch.bool)
    b = torch.zeros(4, 4, dtype=torch.bool)
    a[:2] = True  # 8 pixels
    b[1:3] = True  # 8 pixels, 4 shared: IoU 4 / 12
    assert abs(float(mask_iou(a, b)) - 4 / 12) < 1e-6
    assert float(mask_iou(a.numpy(), b.numpy())) == float(mask_iou(a, b))
    assert float(mask_iou(a, a)) == 1.0
    assert float(mask_iou(torch.zeros(4, 4, dtype=torch.bool), torch.zeros(4, 4, dtype=torch.bool))) == 0.0


def test_mask_iou_per_item_and_pooled():
    segments = torch.zeros(3, 4, 4, dtype=torch.bool)
    segments[0] = True  # 16 pixels
    segments[1, :2] = True  # 8
    mask = np.zeros((4, 4), dtype=bool)
    mask[:2] = True
    per_item = mask_iou(segments, mask, dims=(-2, -1))  # the mask broadcasts against each segment
    torch.testing.assert_close(per_item, torch.tensor([0.5, 1.0, 0.0]))
    pooled = mask_iou(segments, np.broadcast_to(mask, (3, 4, 4)))  # 16 shared of 32 set anywhere
    assert abs(float(pooled) - 16 / 32) < 1e-6
