"""EditAction's losses against independent formulas, and the frozen cross-attention."""

import copy
import math

import pytest
import torch

from nerf_edit.action.losses import (
    action_loss,
    conditioning_dropout,
    draw_noise,
    editaction_losses,
    freeze_cross_attention,
    training_noise_scheduler,
)


def test_action_loss_is_the_two_way_bayes_negative_log_posterior():
    # Eq. 4-5 with uniform priors: -log p(c_T | x) = -log softmax([-e+, -e-])[0].
    error_positive = torch.tensor([0.3, 1.2, 0.7])
    error_negative = torch.tensor([0.9, 0.4, 0.7])
    reference = -torch.log_softmax(torch.stack([-error_positive, -error_negative], 1), 1)[:, 0].mean()
    torch.testing.assert_close(action_loss(error_positive, error_negative), reference)


def test_conditioning_dropout_follows_diffusers_ip2p_rule():
    # diffusers examples/instruct_pix2pix/train_instruct_pix2pix.py: text dropped for p < 2q, image zeroed for
    # q <= p < 3q (so both for q <= p < 2q), nothing for p >= 3q.
    q = 0.1
    random_p = torch.tensor([0.05, 0.15, 0.25, 0.5])
    text, null = torch.ones(4, 3, 2), torch.zeros(1, 3, 2)
    image = torch.ones(4, 4, 2, 2)
    dropped_text, dropped_image = conditioning_dropout(text, null, image, random_p, q)
    assert dropped_text.flatten(1).amax(1).tolist() == [0, 0, 1, 1]
    assert dropped_image.flatten(1).amax(1).tolist() == [1, 0, 0, 1]


def test_freeze_cross_attention_freezes_exactly_attn2(tiny_pipe):
    unet = copy.deepcopy(tiny_pipe.unet)
    frozen = freeze_cross_attention(unet)
    assert frozen and all(".attn2." in name for name in frozen)
    for name, parameter in unet.named_parameters():
        assert parameter.requires_grad == (".attn2." not in name), name
    with pytest.raises(ValueError, match="attn2"):
        freeze_cross_attention(torch.nn.Linear(2, 2))


def test_regularisation_is_zero_before_the_first_step_and_terms_add_up(tiny_pipe):
    unet = copy.deepcopy(tiny_pipe.unet)
    reference = copy.deepcopy(unet).requires_grad_(False)
    generator = torch.Generator().manual_seed(0)
    latents, image_latents = torch.randn(3, 4, 8, 8, generator=generator), torch.randn(3, 4, 8, 8, generator=generator)
    text, negative = torch.randn(3, 77, 32, generator=generator), torch.randn(3, 77, 32, generator=generator)
    null = torch.randn(1, 77, 32, generator=generator)
    draw = draw_noise(latents.shape, 1000, generator)
    losses = editaction_losses(unet, reference, training_noise_scheduler(tiny_pipe.scheduler.config), latents,
                               image_latents, text, negative, null, draw, 0.05, lambda_action=0.7, lambda_reg=2.0)
    assert losses["reg"].item() < 1e-10  # same weights, same inputs: only float round-off (batch 3B vs B)
    assert losses["static"].item() > 0.1 and 0 < losses["action"].item()
    torch.testing.assert_close(losses["total"], losses["static"] + 0.7 * losses["action"] + 2.0 * losses["reg"])
    # With λ_action = 0 and no reference, only L_static is left.
    plain = editaction_losses(unet, None, training_noise_scheduler(tiny_pipe.scheduler.config), latents,
                              image_latents, text, negative, null, draw, 0.05, lambda_action=0.0, lambda_reg=0.0)
    torch.testing.assert_close(plain["total"], plain["static"])


def test_action_term_is_the_posterior_of_squared_norms_at_shared_t_and_noise_never_text_dropped(tiny_pipe):
    """L_action recomputed here with direct UNet calls: e± = ‖ε − ε_θ(z_t, t, E(c_I), c)‖² (sum over the latent,
    Eq. 5) at the draw's action (t, ε), for the true and the negative text as given, even when the static term's
    conditioning dropout drops every text (random_p = 0): with the text dropped e⁺ = e⁻ and L_action = log 2."""
    unet = copy.deepcopy(tiny_pipe.unet).eval()
    scheduler = training_noise_scheduler(tiny_pipe.scheduler.config)
    generator = torch.Generator().manual_seed(1)
    latents, image_latents = torch.randn(2, 4, 8, 8, generator=generator), torch.randn(2, 4, 8, 8, generator=generator)
    text, negative = torch.randn(2, 77, 32, generator=generator), torch.randn(2, 77, 32, generator=generator)
    null = torch.randn(1, 77, 32, generator=generator)
    draw = draw_noise(latents.shape, 1000, generator, action_timestep_fraction=0.3)
    draw.random_p = torch.zeros(2)  # the static term drops text and image for every sample
    with torch.no_grad():
        noisy = scheduler.add_noise(latents, draw.action_noise, draw.action_timesteps)
        model_input = torch.cat([noisy, image_latents], 1)
        errors = [(unet(model_input, draw.action_timesteps, c).sample - draw.action_noise).pow(2).sum(dim=(1, 2, 3))
                  for c in (text, negative)]
        expected = torch.nn.functional.softplus(errors[0] - errors[1]).mean()
        for reduction, scale in (("sum", 1.0), ("mean", 1 / 256)):
            losses = editaction_losses(unet, None, scheduler, latents, image_latents, text, negative, null, draw,
                                       0.05, lambda_action=1.0, lambda_reg=0.0, action_error=reduction)
            reference = torch.nn.functional.softplus(scale * (errors[0] - errors[1])).mean()
            torch.testing.assert_close(losses["action"], reference, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(editaction_losses(unet, None, scheduler, latents, image_latents, text, negative, null,
                                                 draw, 0.05, lambda_reg=0.0)["action"], expected, rtol=1e-4, atol=1e-5)
    assert abs(expected.item() - math.log(2)) > 1e-3  # the texts differ, so the errors do
    same = editaction_losses(unet, None, scheduler, latents, image_latents, text, text, null, draw, 0.05,
                             lambda_reg=0.0)["action"]
    assert same.item() == pytest.approx(math.log(2), abs=1e-6)
