"""ViMAEdit's maths (nerf_edit/vimaedit.py) against direct evaluations of the formulas and diffusers' DDIM."""

import numpy as np
import torch
from diffusers import DDIMScheduler

from nerf_edit.models.tiny import build_tiny_sd_pipeline, build_tiny_tokenizer
from nerf_edit.vimaedit import ops as vimaedit
from nerf_edit.vimaedit.models import vimaedit_ddim_scheduler


def row_stochastic(rng, *shape):
    values = rng.random(shape)
    return values / values.sum(-1, keepdims=True)


def test_iterative_grounding_equals_direct_numpy_evaluation():
    rng = np.random.default_rng(0)
    attention = row_stochastic(rng, 2, 16, 16)  # A [R, N, N]
    initial = rng.random((2, 16))  # M0 [R, N]
    expected = initial.copy()
    for _ in range(5):  # M <- γM + (1-γ)·A·M, γ = 0.5, K = 5
        expected = 0.5 * expected + 0.5 * np.einsum("rij,rj->ri", attention, expected)
    got = vimaedit.iterative_grounding(torch.tensor(initial), torch.tensor(attention), gamma=0.5, iterations=5)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)
    # K = 0 is cross-attention-only grounding; γ = 1 keeps M0
    np.testing.assert_allclose(vimaedit.iterative_grounding(torch.tensor(initial), torch.tensor(attention), 0.5, 0).numpy(),
                               initial, rtol=1e-6)
    np.testing.assert_allclose(vimaedit.iterative_grounding(torch.tensor(initial), torch.tensor(attention), 1.0, 3).numpy(),
                               initial, rtol=1e-6)


def test_blend_token_map_sums_tokens_and_averages_layers_then_resizes_nearest():
    rng = np.random.default_rng(1)
    layers = [row_stochastic(rng, 2, 4, 6) for _ in range(3)]  # [R, N = 2x2, L]
    tokens = np.zeros((2, 6))
    tokens[0, 2] = 1
    tokens[1, [3, 4]] = 1
    expected = np.mean([(layer * tokens[:, None, :]).sum(-1) for layer in layers], axis=0)  # [R, 4]
    got = vimaedit.blend_token_map([torch.tensor(layer) for layer in layers], torch.tensor(tokens))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)
    resized = vimaedit.resize_map(got, (2, 2), (4, 4)).numpy().reshape(2, 4, 4)
    np.testing.assert_allclose(resized, np.kron(expected.reshape(2, 2, 2), np.ones((1, 2, 2))), rtol=1e-6)


def test_masks_are_min_max_normalised_per_branch_and_united():
    maps = torch.tensor([[0.0, 1.0, 2.0, 10.0], [5.0, 5.2, 9.0, 5.0]])  # source, target of one image
    normalised = vimaedit.normalize_maps(maps)
    np.testing.assert_allclose(normalised.numpy(), [[0, 0.1, 0.2, 1.0], [0, 0.05, 1.0, 0]], atol=1e-6)
    assert vimaedit.branch_union_mask(maps, 0.5).tolist() == [[False, False, True, True]]
    assert vimaedit.critical_region(maps * 1.0, 0.8).tolist() == [[False, False, True, True]]
    assert vimaedit.branch_union_mask(torch.ones(2, 3), 0.5).tolist() == [[False, False, False]]  # constant: nothing


def test_target_image_embedding_on_planted_vectors():
    source_image = torch.tensor([[3.0, 4.0]])  # ‖e_s‖ = 5
    source_text, target_text = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 7.0]])
    # ê_t = e_s + ‖e_s‖·(t_t/‖t_t‖ − t_s/‖t_s‖) = (3, 4) + 5·((0, 1) − (1, 0)) = (−2, 9)
    np.testing.assert_allclose(vimaedit.target_image_embedding(source_image, source_text, target_text).numpy(), [[-2.0, 9.0]])
    same = vimaedit.target_image_embedding(source_image, source_text, source_text * 3)
    np.testing.assert_allclose(same.numpy(), source_image.numpy())  # same prompt direction: ê_t = e_s


def test_ip_adapter_batch_orderings():
    source, target = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 4.0]])
    paper = vimaedit.ip_adapter_batch_embeddings(source, target, "paper")[:, 0]
    official = vimaedit.ip_adapter_batch_embeddings(source, target, "official")[:, 0]
    # batch [uncond src, uncond tar, cond src, cond tar]
    assert paper.tolist() == [[0, 0], [0, 0], [1, 2], [3, 4]]
    assert official.tolist() == [[0, 0], [1, 2], [0, 0], [3, 4]]


def test_timesteps_are_the_ones_the_official_run_gets_from_diffusers():
    """Null-0000/ViMAEdit run_editing_vima.py ~77-82 builds EDDIMScheduler(eta=1.0, betas) on DDIM's defaults (offset
    0, clip_sample True) and models/p2p_editor.py ~21 hands it to DiffusionPipeline.from_pretrained, i.e. to
    StableDiffusionPipeline.__init__, which rewrites both (diffusers pipeline_stable_diffusion.py ~214-241). Our
    DDIM gives the timesteps and settings that pipeline's scheduler ends up with."""
    from diffusers import StableDiffusionPipeline

    official = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    pipe = StableDiffusionPipeline(**{**build_tiny_sd_pipeline().components, "scheduler": official})
    pipe.scheduler.set_timesteps(50)
    ours = vimaedit_ddim_scheduler(DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear").config)
    ours.set_timesteps(50)
    assert torch.equal(ours.timesteps, pipe.scheduler.timesteps) and int(ours.timesteps[0]) == 981
    for key in ("steps_offset", "clip_sample", "set_alpha_to_one", "timestep_spacing", "prediction_type"):
        assert ours.config[key] == pipe.scheduler.config[key], key
    assert (pipe.scheduler.config.steps_offset, pipe.scheduler.config.clip_sample) == (1, False)


def scheduler_and_alphas(step_index=10):
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=True, steps_offset=0, timestep_spacing="leading")
    scheduler.set_timesteps(50)
    t = scheduler.timesteps[step_index]
    previous = int(t) - 20
    alpha_prev = scheduler.alphas_cumprod[previous] if previous >= 0 else scheduler.final_alpha_cumprod
    return scheduler, t, scheduler.alphas_cumprod[int(t)], alpha_prev


def test_ddim_step_matches_diffusers_without_correction():
    scheduler, t, alpha_t, alpha_prev = scheduler_and_alphas()
    assert scheduler.timesteps[0] == 980
    torch.manual_seed(0)
    eps, latents, z = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8), torch.randn(1, 4, 8, 8)
    deterministic, _ = vimaedit.dual_branch_ddim_step(eps, latents, alpha_t, alpha_prev, None)
    reference = scheduler.step(eps, t, latents, eta=0.0).prev_sample
    torch.testing.assert_close(deterministic, reference, rtol=1e-5, atol=1e-5)
    sigma = vimaedit.ddim_sigma(alpha_t, alpha_prev)
    torch.testing.assert_close(sigma, scheduler._get_variance(t, t - 20).sqrt(), rtol=1e-6, atol=1e-7)
    stochastic, _ = vimaedit.dual_branch_ddim_step(eps, latents, alpha_t, alpha_prev, None,
                                                   sigma * torch.ones(1, 1, 8, 8), z)
    reference = scheduler.step(eps, t, latents, eta=1.0, variance_noise=z.repeat(2, 1, 1, 1)).prev_sample
    torch.testing.assert_close(stochastic, reference, rtol=1e-5, atol=1e-5)


def test_variance_noise_is_exactly_zero_outside_the_critical_region():
    _, _, alpha_t, alpha_prev = scheduler_and_alphas()
    torch.manual_seed(1)
    eps, latents, x0 = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8), torch.randn(1, 4, 8, 8)
    critical = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    critical[..., 2:5, 3:7] = True
    sigma = vimaedit.adaptive_sigma(critical, vimaedit.ddim_sigma(alpha_t, alpha_prev), eta=1.0)
    assert bool((sigma[~critical] == 0).all()) and bool((sigma[critical] > 0).all())
    first, _ = vimaedit.dual_branch_ddim_step(eps, latents, alpha_t, alpha_prev, x0, sigma, torch.randn(1, 4, 8, 8))
    second, _ = vimaedit.dual_branch_ddim_step(eps, latents, alpha_t, alpha_prev, x0, sigma, torch.randn(1, 4, 8, 8))
    deterministic, _ = vimaedit.dual_branch_ddim_step(eps, latents, alpha_t, alpha_prev, x0, None)
    outside = (~critical).expand(2, 4, 8, 8)
    assert torch.equal(first[outside], second[outside])  # the noise contributes exactly nothing there
    torch.testing.assert_close(first[outside], deterministic[outside], rtol=0, atol=1e-6)
    assert (first[~outside] - second[~outside]).abs().min() > 0  # and does inside, the same z in both branches
    source_change, target_change = (first - second).chunk(2)
    torch.testing.assert_close(source_change, target_change, rtol=1e-5, atol=1e-6)


def test_x0_correction_makes_the_source_branch_reproduce_its_input():
    scheduler, _, _, _ = scheduler_and_alphas()
    torch.manual_seed(2)
    x0, noise = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    latents = scheduler.add_noise(x0, noise, scheduler.timesteps[:1]).repeat(2, 1, 1, 1)
    for t in scheduler.timesteps:
        previous = int(t) - 20
        alpha_prev = scheduler.alphas_cumprod[previous] if previous >= 0 else scheduler.final_alpha_cumprod
        eps = torch.randn(2, 4, 8, 8)  # any prediction: the source branch's x̂0 is corrected to x0 regardless
        latents, predicted = vimaedit.dual_branch_ddim_step(eps, latents, scheduler.alphas_cumprod[int(t)], alpha_prev, x0)
        torch.testing.assert_close(predicted[:1], x0, rtol=1e-5, atol=1e-5)
        # corrected x̂0: x0 + (x̂0_tar − x̂0_src)
    torch.testing.assert_close(latents[:1], x0, rtol=1e-4, atol=1e-4)


def test_blend_keeps_source_outside_mask_and_target_inside():
    latents = torch.randn(2, 4, 4, 4)
    mask = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    mask[..., :2, :] = True
    blended = vimaedit.blend_branches(latents, mask)
    assert torch.equal(blended[0], latents[0])
    assert torch.equal(blended[1][:, 2:], latents[0][:, 2:])  # outside: the source, exactly
    torch.testing.assert_close(blended[1][:, :2], latents[1][:, :2], rtol=1e-6, atol=1e-6)


def test_word_tokens_and_refinement_alignment():
    tokenizer = build_tiny_tokenizer()
    assert vimaedit.word_token_indices("a red ball", ["red"], tokenizer) == [2]
    assert vimaedit.word_token_indices("a red ball.", ["BALL"], tokenizer) == [3, 4]  # "ball" + "." tokens
    source = tokenizer("a ball").input_ids  # [S, a, ball, E]
    target = tokenizer("a red ball").input_ids  # [S, a, red, ball, E]
    mapper, alphas = vimaedit.refinement_mapper(source, target, 8)
    assert alphas.tolist() == [1, 1, 0, 1, 1, 1, 1, 1]  # "red" has no source token
    assert mapper[[0, 1, 3, 4]].tolist() == [0, 1, 2, 3] and mapper[5:].tolist() == [5, 6, 7]
    same, ones = vimaedit.refinement_mapper(source, source, 8)
    assert same.tolist() == list(range(8)) and ones.tolist() == [1] * 8
