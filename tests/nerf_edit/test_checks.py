"""What an editor is handed: each bad input is one EditorError line naming the problem; good input passes through."""

import pytest
import torch

from nerf_edit.core.checks import check_background, check_conditioning, check_images, check_instruction, check_mask
from nerf_edit.errors import EditorError, UsageError

IMAGES = torch.rand(2, 3, 16, 24)


@pytest.mark.parametrize("call, message", [
    (lambda: check_images(torch.rand(3, 16, 24)), r"images must be a \[B, 3, H, W\] tensor in \[0, 1\], got \(3, 16, 24\)"),
    (lambda: check_images([1, 2]), r"got list"),
    (lambda: check_images(torch.rand(1, 3, 4, 24)), "images are 4x24: at least 8x8 pixels are needed"),
    (lambda: check_instruction("  "), "the instruction is empty"),
    (lambda: check_conditioning(torch.rand(1, 3, 16, 24), IMAGES), r"conditioning is \(1, 3, 16, 24\) but images are"),
    (lambda: check_mask(torch.ones(2, 16, 23, dtype=torch.bool), IMAGES), r"mask must be \[B, H, W\] = \(2, 16, 24\)"),
    (lambda: check_background(torch.rand(2, 3, 16, 16), IMAGES), "background must have the images' shape"),
])
def test_bad_input_is_one_editor_error_line(call, message):
    with pytest.raises(EditorError, match=message) as info:
        call()
    assert isinstance(info.value, UsageError) and "\n" not in str(info.value)


def test_good_input_passes_through():
    check_images(IMAGES)
    check_instruction("turn the ball blue")
    assert check_conditioning(None, IMAGES) is IMAGES and check_background(None, IMAGES) is IMAGES
    mask = check_mask(torch.ones(2, 16, 24), IMAGES)
    assert mask.dtype == torch.bool and mask.all()
