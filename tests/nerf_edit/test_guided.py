import pytest
import torch
from diffusers import DDIMScheduler, StableDiffusionInstructPix2PixPipeline

from nerf_edit.config.editor import EditorConfig
from nerf_edit.core.guided import denoise, keep_outside, latent_mask_from_pixels, observe
from nerf_edit.editing.global_editor import GlobalEditor
from nerf_edit.models.ip2p import InstructPix2Pix
from nerf_edit.wys.editor import RelevanceGuidedEditor

INSTRUCTION = "turn the ball blue"


def guided_denoise(predict, scheduler, initial, clean, noise, timesteps, latent_mask, on_step):
    """The relevance-guided loop as IP2PEditor.denoise builds it: `keep_outside`, then `observe`."""
    hooks = [keep_outside(scheduler, clean, noise, timesteps, latent_mask), observe(on_step)]
    return denoise(predict, scheduler, initial, timesteps, hooks)


def test_outside_mask_latents_are_the_renoised_input_at_every_step():
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1)
    scheduler.set_timesteps(6)
    generator = torch.Generator().manual_seed(0)
    clean = torch.randn(2, 4, 8, 8, generator=generator)
    noise = torch.randn(2, 4, 8, 8, generator=generator)
    mask = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    mask[:, :, 2:5, 3:7] = True
    seen = []

    def on_step(i, t, latents):
        seen.append(latents.clone())

    def predict(latents, t):  # an arbitrary "model" that pushes latents around
        return torch.tanh(latents) + 0.3

    out = guided_denoise(predict, scheduler, noise.clone(), clean, noise, scheduler.timesteps, mask, on_step)
    timesteps = scheduler.timesteps
    for i, latents in enumerate(seen[:-1]):
        expected = scheduler.add_noise(clean, noise, timesteps[i + 1 : i + 2])
        assert torch.equal(latents[~mask.expand_as(latents)], expected[~mask.expand_as(latents)]), f"step {i}"
        assert not torch.equal(latents[mask.expand_as(latents)], expected[mask.expand_as(latents)])
    assert torch.equal(out[~mask.expand_as(out)], clean[~mask.expand_as(out)])  # exactly z0 after the last step


def test_latent_mask_marks_cells_touched_by_any_pixel():
    pixels = torch.zeros(1, 16, 24, dtype=torch.bool)
    pixels[0, 9, 17] = True
    cells = latent_mask_from_pixels(pixels, 8)
    assert cells.shape == (1, 1, 2, 3) and cells.sum() == 1 and cells[0, 0, 1, 2]


def test_pixels_outside_the_dilated_mask_equal_the_input(tiny_ip2p):
    config = EditorConfig(model="tiny", steps=3, dilate_px=2, feather_px=1)
    editor = RelevanceGuidedEditor(config, ip2p=tiny_ip2p)
    images = torch.rand(2, 3, 37, 51)  # not multiples of 8
    mask = torch.zeros(2, 37, 51, dtype=torch.bool)
    mask[0, 5:15, 10:30] = True
    mask[1, 20:30, 2:12] = True
    result = editor.edit(images, INSTRUCTION, mask=mask, generator=torch.Generator().manual_seed(0))
    assert result.images.shape == images.shape
    dilated = torch.nn.functional.max_pool2d(mask[:, None].float(), 5, stride=1, padding=2)[:, 0] > 0
    assert torch.equal(result.mask, dilated)
    outside = ~dilated[:, None].expand_as(images)
    assert torch.equal(result.images[outside], images[outside])
    assert (result.images - images).abs()[~outside].mean() > 0.01  # and something did change inside


def test_relevance_mask_is_used_when_no_mask_is_given(tiny_ip2p):
    editor = RelevanceGuidedEditor(EditorConfig(model="tiny", steps=2, tau=0.5), ip2p=tiny_ip2p)
    images = torch.rand(1, 3, 32, 40)
    result = editor.edit(images, INSTRUCTION, generator=torch.Generator().manual_seed(0))
    assert torch.equal(result.mask, result.relevance >= 0.5)
    outside = ~result.mask[:, None].expand_as(images)
    assert outside.any() and torch.equal(result.images[outside], images[outside])


def test_tau_zero_equals_the_global_editor(tiny_ip2p):
    config = EditorConfig(model="tiny", steps=4, tau=0.0, start_from="noise")
    images = torch.rand(2, 3, 32, 32)
    guided = RelevanceGuidedEditor(config, ip2p=tiny_ip2p).edit(images, INSTRUCTION, generator=torch.Generator().manual_seed(3))
    plain = GlobalEditor(config, ip2p=tiny_ip2p).edit(images, INSTRUCTION, generator=torch.Generator().manual_seed(3))
    assert guided.mask.all()
    assert torch.equal(guided.images, plain.images)


def sd_v1_4_ddim() -> DDIMScheduler:
    """DDIM as instruct-nerf2nerf and WYS load it (`CompVis/stable-diffusion-v1-4`, scheduler/scheduler_config.json:
    beta 0.00085-0.012 scaled_linear, 1000 steps, steps_offset 1, clip_sample false, set_alpha_to_one false),
    written out here independently of our code, with trailing spacing."""
    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                         steps_offset=1, clip_sample=False, set_alpha_to_one=False, timestep_spacing="trailing")


def diffusers_ip2p(tiny_pipe, scheduler) -> StableDiffusionInstructPix2PixPipeline:
    pipe = StableDiffusionInstructPix2PixPipeline(**{**tiny_pipe.components, "scheduler": scheduler})
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_global_editor_matches_diffusers_pipeline(tiny_pipe):
    """Ours is handed a pipeline carrying the hub IP2P's EulerAncestral scheduler config; diffusers' own IP2P
    pipeline runs with an independently built SD-1.x DDIM. Same noise and steps: the outputs agree."""
    assert tiny_pipe.scheduler.__class__.__name__ == "EulerAncestralDiscreteScheduler"
    image = torch.rand(1, 3, 32, 48)
    expected = diffusers_ip2p(tiny_pipe, sd_v1_4_ddim())(
        INSTRUCTION, image=image, num_inference_steps=5, guidance_scale=7.5, image_guidance_scale=1.5,
        generator=torch.Generator().manual_seed(7), output_type="pt",
    ).images
    editor = GlobalEditor(EditorConfig(model="tiny", steps=5, image_guidance_scale=1.5), ip2p=InstructPix2Pix(tiny_pipe))
    ours = editor.edit(image, INSTRUCTION, generator=torch.Generator().manual_seed(7)).images
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-4)


def test_clip_sample_would_change_the_edit(tiny_pipe):
    """The reference above can fail: DDIM built `from_config` of the EulerAncestral config (clip_sample and
    set_alpha_to_one default to True) gives a visibly different edit from the same noise."""
    image = torch.rand(1, 3, 32, 48)
    kwargs = dict(image=image, num_inference_steps=5, guidance_scale=7.5, image_guidance_scale=1.5, output_type="pt")
    right = diffusers_ip2p(tiny_pipe, sd_v1_4_ddim())(INSTRUCTION, generator=torch.Generator().manual_seed(7), **kwargs)
    clipped_ddim = DDIMScheduler.from_config(tiny_pipe.scheduler.config, timestep_spacing="trailing")
    assert clipped_ddim.config.clip_sample and clipped_ddim.config.set_alpha_to_one
    wrong = diffusers_ip2p(tiny_pipe, clipped_ddim)(INSTRUCTION, generator=torch.Generator().manual_seed(7), **kwargs)
    assert (right.images - wrong.images).abs().max() > 0.05


@pytest.mark.parametrize("carried", ["euler_ancestral", "ddim_clipped"])
def test_scheduler_is_sd1_ddim_whatever_the_pipeline_carries(tiny_pipe, carried):
    scheduler = tiny_pipe.scheduler
    if carried == "ddim_clipped":  # a local model saved with DDIM's defaults
        scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
                                  clip_sample=True, set_alpha_to_one=True, timestep_spacing="leading")
    ours = InstructPix2Pix(StableDiffusionInstructPix2PixPipeline(**{**tiny_pipe.components, "scheduler": scheduler}))
    reference = sd_v1_4_ddim()
    for key in ("clip_sample", "set_alpha_to_one", "timestep_spacing", "steps_offset", "prediction_type",
                "thresholding", "num_train_timesteps"):
        assert ours.scheduler.config[key] == reference.config[key], key
    torch.testing.assert_close(ours.scheduler.alphas_cumprod, reference.alphas_cumprod)
    torch.testing.assert_close(ours.scheduler.final_alpha_cumprod, reference.final_alpha_cumprod)


def test_relevance_editor_starts_from_the_noised_input_as_official_2d(tiny_pipe):
    """Official 2D WYS (SamsungLabs/WatchYourSteps images-2d/wys_2d.py ~147-150) starts from the input's latent
    noised to the first timestep: `latents = scheduler.add_noise(latents, noise, scheduler.timesteps[0])`.
    diffusers' pipeline given those latents (z0 = VAE mode · scaling factor) is the reference; τ = 0 edits all."""
    image = torch.rand(1, 3, 32, 48)
    editor = RelevanceGuidedEditor(EditorConfig(model="tiny", steps=5, tau=0.0), ip2p=InstructPix2Pix(tiny_pipe))
    noise = editor.draw_noise(image, torch.Generator().manual_seed(7))
    scheduler = sd_v1_4_ddim()
    scheduler.set_timesteps(5)
    assert int(scheduler.timesteps[0]) == 999
    z0 = tiny_pipe.vae.encode(image * 2 - 1).latent_dist.mode() * tiny_pipe.vae.config.scaling_factor
    start = scheduler.add_noise(z0, noise, scheduler.timesteps[:1])
    expected = diffusers_ip2p(tiny_pipe, sd_v1_4_ddim())(
        INSTRUCTION, image=image, num_inference_steps=5, guidance_scale=7.5, image_guidance_scale=1.0,
        latents=start, output_type="pt",
    ).images
    ours = editor.edit(image, INSTRUCTION, generator=torch.Generator().manual_seed(7)).images
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-4)


def test_2d_defaults_are_the_official_scripts():
    """images-2d/wys_2d.py ~335-338: scale_txt 7.5, scale_img 1.0, steps 100, mask_threshold 0.5; IQR factor 1.5."""
    config = EditorConfig()
    assert (config.guidance_scale, config.image_guidance_scale, config.steps, config.tau, config.iqr_k) == (7.5, 1.0, 100, 0.5, 1.5)
    assert config.relevance_timestep == 0.8


def test_strength_starts_from_the_noised_input(tiny_ip2p):
    timesteps = tiny_ip2p.edit_timesteps(5, strength=0.5)
    assert len(timesteps) == 5
    assert int(timesteps[0]) == 499 and int(timesteps[-1]) == 99
    full = tiny_ip2p.edit_timesteps(5, strength=1.0)
    assert int(full[0]) == 999
    # the first UNet call sees the input's z0 noised to the first timestep with the edit's noise
    editor = GlobalEditor(EditorConfig(model="tiny", steps=5), ip2p=tiny_ip2p)
    image = torch.rand(1, 3, 32, 32)
    first_inputs = []
    original = tiny_ip2p.predict_guided

    def spy(noisy, t, *args):
        first_inputs.append((noisy.clone(), int(t)))
        return original(noisy, t, *args)

    tiny_ip2p.predict_guided = spy
    try:
        editor.edit(image, INSTRUCTION, strength=0.5, generator=torch.Generator().manual_seed(0))
    finally:
        del tiny_ip2p.predict_guided
    noise = editor.draw_noise(image, torch.Generator().manual_seed(0))
    clean = tiny_ip2p.encode(image)
    expected = tiny_ip2p.scheduler.add_noise(clean, noise, torch.tensor([499]))
    assert first_inputs[0][1] == 499 and len(first_inputs) == 5
    torch.testing.assert_close(first_inputs[0][0], expected)


def test_batched_edit_equals_one_by_one(tiny_ip2p):
    editor = RelevanceGuidedEditor(EditorConfig(model="tiny", steps=3), ip2p=tiny_ip2p)
    images = torch.rand(3, 3, 32, 32)
    mask = torch.zeros(3, 32, 32, dtype=torch.bool)
    mask[:, 8:24, 8:24] = True
    noise = editor.draw_noise(images, torch.Generator().manual_seed(0))
    def denoise(images, mask, noise):
        latents = editor.denoise(tiny_ip2p.encode_inputs(images, images), INSTRUCTION, 1.0, noise, mask)
        return tiny_ip2p.decode_cropped(latents, images)

    batched = denoise(images, mask, noise)
    single = torch.cat([denoise(images[i : i + 1], mask[i : i + 1], noise[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, single, atol=1e-4, rtol=1e-4)
