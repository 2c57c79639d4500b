"""With the real InstructPix2Pix weights (skipped unless they are in the Hugging Face cache or a local folder:
`huggingface-cli download timbrooks/instruct-pix2pix`; NERF_EDIT_IP2P names another hub id or saved folder).

The tiny random-weight model proves the same properties everywhere else; these catch what only the real model's
files carry: its scheduler config (EulerAncestral on the hub, replaced by SD-1.x DDIM), its VAE scaling, its
tokenizer length. Small images and few steps keep them to about a minute on CPU."""

import os

import pytest
import torch
from diffusers import DDIMScheduler, StableDiffusionInstructPix2PixPipeline

from nerf_edit.config.editor import EditorConfig
from nerf_edit.editing.global_editor import GlobalEditor
from nerf_edit.models.ip2p import InstructPix2Pix
from nerf_edit.models.loading import IP2P_MODEL_ID, load_ip2p_pipeline
from nerf_edit.wys.editor import RelevanceGuidedEditor

MODEL = os.environ.get("NERF_EDIT_IP2P", IP2P_MODEL_ID)
INSTRUCTION = "turn the ball blue"
STEPS = 3


@pytest.fixture(scope="module")
def real_pipe():
    return load_ip2p_pipeline(MODEL)


def sd1_ddim() -> DDIMScheduler:
    """SD-1.x's DDIM, built from its published settings (CompVis/stable-diffusion-v1-4 scheduler config)."""
    return DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         steps_offset=1, clip_sample=False, set_alpha_to_one=False, timestep_spacing="trailing")


@pytest.mark.weights(MODEL)
def test_real_global_edit_matches_diffusers_pipeline(real_pipe):
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    reference = StableDiffusionInstructPix2PixPipeline(**{**real_pipe.components, "scheduler": sd1_ddim()})
    reference.set_progress_bar_config(disable=True)
    expected = reference(INSTRUCTION, image=image, num_inference_steps=STEPS, guidance_scale=7.5,
                         image_guidance_scale=1.5, generator=torch.Generator().manual_seed(7), output_type="pt").images
    editor = GlobalEditor(EditorConfig(model=MODEL, steps=STEPS, image_guidance_scale=1.5),
                          ip2p=InstructPix2Pix(real_pipe))
    ours = editor.edit(image, INSTRUCTION, generator=torch.Generator().manual_seed(7)).images
    torch.testing.assert_close(ours, expected, atol=1e-3, rtol=1e-3)


@pytest.mark.weights(MODEL)
def test_real_guided_edit_keeps_every_pixel_outside_the_mask(real_pipe):
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(2, 64, 64, dtype=torch.bool)
    mask[:, 16:48, 16:48] = True
    editor = RelevanceGuidedEditor(EditorConfig(model=MODEL, steps=STEPS), ip2p=InstructPix2Pix(real_pipe))
    result = editor.edit(images, INSTRUCTION, mask=mask, generator=torch.Generator().manual_seed(7))
    outside = ~mask[:, None].expand_as(images)
    assert torch.equal(result.images[outside], images[outside])
    assert (result.images[~outside] - images[~outside]).abs().mean() > 0.01  # and inside, it edited
