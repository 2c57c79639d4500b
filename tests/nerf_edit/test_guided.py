import torch
from diffusers import DDIMScheduler, StableDiffusionInstructPix2PixPipeline

from nerf_edit.editors import EditorConfig, GlobalEditor, RelevanceGuidedEditor
from nerf_edit.guided import composite, feathered_weights, guided_denoise, latent_mask_from_pixels

INSTRUCTION = "turn the ball blue"


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


def test_composite_is_exact_outside_and_inside():
    edited, original = torch.rand(1, 3, 10, 10), torch.rand(1, 3, 10, 10)
    mask = torch.zeros(1, 10, 10, dtype=torch.bool)
    mask[0, 2:8, 2:8] = True
    out = composite(edited, original, feathered_weights(mask, feather_px=2))
    outside = ~mask[:, None].expand_as(out)
    assert torch.equal(out[outside], original[outside])
    assert torch.equal(out[:, :, 4:6, 4:6], edited[:, :, 4:6, 4:6])  # the mask's core is all edit
    soft = out[:, :, 2, 2]  # the edge blends
    assert not torch.equal(soft, edited[:, :, 2, 2]) and not torch.equal(soft, original[:, :, 2, 2])


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
    config = EditorConfig(model="tiny", steps=4, tau=0.0)
    images = torch.rand(2, 3, 32, 32)
    guided = RelevanceGuidedEditor(config, ip2p=tiny_ip2p).edit(images, INSTRUCTION, generator=torch.Generator().manual_seed(3))
    plain = GlobalEditor(config, ip2p=tiny_ip2p).edit(images, INSTRUCTION, generator=torch.Generator().manual_seed(3))
    assert guided.mask.all()
    assert torch.equal(guided.images, plain.images)


def test_global_editor_matches_diffusers_pipeline(tiny_pipe, tiny_ip2p):
    """Same noise, scheduler and steps: our 3-way guidance loop reproduces diffusers' IP2P pipeline."""
    pipe = StableDiffusionInstructPix2PixPipeline(**tiny_pipe.components)
    pipe.scheduler = DDIMScheduler.from_config(tiny_ip2p.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    image = torch.rand(1, 3, 32, 48)
    expected = pipe(
        INSTRUCTION, image=image, num_inference_steps=5, guidance_scale=7.5, image_guidance_scale=1.5,
        generator=torch.Generator().manual_seed(7), output_type="pt",
    ).images
    editor = GlobalEditor(EditorConfig(model="tiny", steps=5), ip2p=tiny_ip2p)
    ours = editor.edit(image, INSTRUCTION, generator=torch.Generator().manual_seed(7)).images
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-4)


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
        return editor._denoise(*editor._encode(images, images), INSTRUCTION, mask, 1.0, noise, images)

    batched = denoise(images, mask, noise)
    single = torch.cat([denoise(images[i : i + 1], mask[i : i + 1], noise[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, single, atol=1e-4, rtol=1e-4)
