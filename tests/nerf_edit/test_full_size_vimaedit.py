"""Conformance tier: ViMAEdit's editor on the real architectures (SD-1.5's UNet with IP-Adapter SD-1.5 loaded by
diffusers, CLIP ViT-H/14; random weights) on the CPU at 64², 2 steps: the same properties as its tiny test.
Its own file, so that the full-size IP2P of test_full_size.py is freed first (the conformance tests share one
pytest worker: tests/conftest.py)."""

import pytest
import torch

from nerf_edit.config.editor import EditorConfig
from nerf_edit.config.vimaedit import ViMAEditConfig
from nerf_edit.models import full_size
from nerf_edit.vimaedit.editor import ViMAEditEditor
from nerf_edit.vimaedit.models import ViMAEditModels, vimaedit_ddim_scheduler

pytestmark = pytest.mark.conformance
# On the CPU at 64² here; on a CUDA GPU at 512² (marker `gpu`: skipped without one).
SETUPS = [pytest.param(("cpu", 64), id="cpu-64"), pytest.param(("cuda", 512), id="cuda-512", marks=pytest.mark.gpu)]


def parameters(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("setup", SETUPS)
@torch.no_grad()
def test_vimaedit_on_sd15_with_ip_adapter_and_clip_h_keeps_everything_outside_the_mask(setup):
    device, size = setup
    pipe = full_size.build_full_size_sd15_pipeline()
    assert 859e6 < parameters(pipe.unet) < 860e6  # SD-1.5's UNet: 859.52M
    pipe.load_ip_adapter(full_size.build_full_size_ip_adapter_weights(pipe.unet), subfolder="", weight_name="",
                         image_encoder_folder=None)
    projection = pipe.unet.encoder_hid_proj.image_projection_layers[0]
    assert parameters(projection) == 3_150_336  # ip-adapter_sd15.bin's image_proj: 1024 -> 4 × 768, LayerNorm
    clip, clip_tokenizer, clip_processor = full_size.build_full_size_clip_h14()
    pipe = pipe.to(device)
    settings = ViMAEditConfig(source_prompt="a red ball", blend_words="red blue", steps=2)
    models = ViMAEditModels(unet=pipe.unet, vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer,
                            scheduler=vimaedit_ddim_scheduler(pipe.scheduler.config), clip=clip.to(device).eval(),
                            clip_tokenizer=clip_tokenizer, clip_processor=clip_processor, device=torch.device(device))
    config = EditorConfig(device=device)
    config.vimaedit = settings
    editor = ViMAEditEditor(config, models=models)

    generator = torch.Generator().manual_seed(0)
    images = torch.rand(1, 3, size, size, generator=generator).to(device)
    background = torch.rand(1, 3, size, size, generator=generator).to(device)
    grounded = editor.edit(images, "a blue ball", generator=torch.Generator().manual_seed(0), background=background)
    assert grounded.mask.shape == (1, size, size) and grounded.relevance.shape == (1, size, size)
    outside = (~grounded.mask)[:, None].expand_as(images)
    assert torch.equal(grounded.images[outside], background[outside]) and torch.isfinite(grounded.images).all()

    given = torch.zeros(1, size, size, dtype=torch.bool, device=device)
    given[:, size // 8 : size * 5 // 8, size // 4 : size * 3 // 4] = True  # a caller's mask replaces the grounding
    result = editor.edit(images, "a blue ball", mask=given, generator=torch.Generator().manual_seed(0))
    assert torch.equal(result.mask, given)
    assert torch.equal(result.images[:, :, ~given[0]], images[:, :, ~given[0]])
    assert (result.images[:, :, given[0]] != images[:, :, given[0]]).any()  # and it edited inside
