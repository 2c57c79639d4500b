"""The full-size random-weight IP2P the GPU benchmark uses, in fp16 at 512²: real architecture, runs on CUDA (skipped
without). The fp32 runs of every system at 512² are the `cuda-512` cases of tests/nerf_edit/test_full_size*.py."""

import pytest
import torch

from nerf_edit.config.editor import EditorConfig
from nerf_edit.models.full_size import build_full_size_ip2p_pipeline
from nerf_edit.models.ip2p import InstructPix2Pix
from nerf_edit.wys.editor import RelevanceGuidedEditor


@pytest.mark.gpu
def test_full_size_guided_edit_on_gpu_keeps_pixels_outside_the_mask():
    ip2p = InstructPix2Pix(build_full_size_ip2p_pipeline(dtype=torch.float16).to("cuda"))
    assert sum(p.numel() for p in ip2p.unet.parameters()) > 850e6  # SD 1.5's UNet size
    editor = RelevanceGuidedEditor(EditorConfig(device="cuda", steps=2), ip2p=ip2p)
    images = torch.rand(2, 3, 512, 512, device="cuda")  # the benchmark's size
    mask = torch.zeros(2, 512, 512, dtype=torch.bool, device="cuda")
    mask[:, 128:384, 128:384] = True
    result = editor.edit(images, "turn the ball blue", mask=mask)
    outside = ~mask[:, None].expand_as(images)
    assert torch.equal(result.images[outside], images[outside])
    assert torch.isfinite(result.images).all()


@pytest.mark.gpu
def test_full_size_zone_edit_on_gpu_keeps_pixels_outside_its_mask():
    from nerf_edit.config.zone import ZoneConfig
    from nerf_edit.models.full_size import build_full_size_sam
    from nerf_edit.models.segment import SamSegmenter
    from nerf_edit.zone.editor import ZoneEditor

    sam = SamSegmenter(build_full_size_sam(dtype=torch.float16), device="cuda", points_per_side=8)
    assert sum(p.numel() for p in sam.generator.model.vision_encoder.parameters()) > 600e6  # ViT-H
    fusion = InstructPix2Pix(build_full_size_ip2p_pipeline(seed=1, dtype=torch.float16).to("cuda"))
    ip2p = InstructPix2Pix(build_full_size_ip2p_pipeline(dtype=torch.float16).to("cuda"))
    editor = ZoneEditor(EditorConfig(device="cuda", steps=2, zone=ZoneConfig(fusion_model="none", segmenter="none")),
                        ip2p=ip2p, fusion=fusion, segmenter=sam)
    images = torch.rand(1, 3, 512, 512, device="cuda")
    result = editor.edit(images, "remove the ball")
    outside = ~result.mask[:, None].expand_as(images)
    assert torch.equal(result.images[outside], images[outside])
    assert torch.isfinite(result.images).all() and result.localization.actions == ["remove"]
