"""The full-size random-weight IP2P the GPU benchmark uses: real architecture, runs on CUDA (skipped without)."""

import pytest
import torch

from nerf_edit.editors import EditorConfig, RelevanceGuidedEditor
from nerf_edit.ip2p import InstructPix2Pix
from nerf_edit.tiny import build_full_size_ip2p_pipeline


@pytest.mark.gpu
def test_full_size_guided_edit_on_gpu_keeps_pixels_outside_the_mask():
    ip2p = InstructPix2Pix(build_full_size_ip2p_pipeline(dtype=torch.float16).to("cuda"))
    assert sum(p.numel() for p in ip2p.unet.parameters()) > 850e6  # SD 1.5's UNet size
    editor = RelevanceGuidedEditor(EditorConfig(device="cuda", steps=2), ip2p=ip2p)
    images = torch.rand(2, 3, 128, 128, device="cuda")
    mask = torch.zeros(2, 128, 128, dtype=torch.bool, device="cuda")
    mask[:, 32:96, 32:96] = True
    result = editor.edit(images, "turn the ball blue", mask=mask)
    outside = ~mask[:, None].expand_as(images)
    assert torch.equal(result.images[outside], images[outside])
    assert torch.isfinite(result.images).all()
