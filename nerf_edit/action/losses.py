"""The three EditAction losses as plain functions, and the frozen cross-attention.

Reconstructed from the paper's text (its equations were stripped from our copy):

* L_static (Eq. 2-3): InstructPix2Pix's training loss ‖ε − ε_θ(z_t, t, E(c_I), c_T)‖² with IP2P's conditioning
  dropout, written after diffusers' examples/instruct_pix2pix/train_instruct_pix2pix.py (the `random_p` /
  `prompt_mask` / `image_mask` block of its training loop): with p ~ U(0, 1) per sample, the text is dropped for
  p < 2·prob, the image latent is zeroed for prob <= p < 3·prob (both for prob <= p < 2·prob).
* L_action (Eq. 4-5): Bayes over the true instruction c_T and a random one c_T' with uniform priors, each
  likelihood read from the denoising error with the same t and ε (Diffusion Classifier, Li et al. 2023):
  −log softmax(−e⁺, −e⁻)[0] = softplus(e⁺ − e⁻).
* L_reg (Eq. 6, after DPOK, Fan et al. 2023): ‖ε_θ(z_t, t, E(c_I), c_T) − ε_pre(z_t, t, E(c_I), c_T)‖² against
  a frozen copy of the UNet from before fine-tuning.
* L = L_static + λ_action·L_action + λ_reg·L_reg (Eq. 7), with every cross-attention layer (diffusers' `attn2`)
  frozen.

L_static and L_reg are per-element means (IP2P's own `F.mse_loss`). L_action's e± are squared norms, sums over the
latent, by default: that is the log-likelihood scale the Bayes posterior of Eq. 4-5 needs. As per-element means
(`action_error="mean"`, a temperature of 1/elements) softplus stays in its linear range until e⁻ − e⁺ is O(1) per
element, and on the tiny model it got there by ruining the negative instruction's prediction (measured: e⁻ − e⁺ ≈
1.2 per element at t < 150 after 300 steps, against ≈ 0.005 with sums; README "EditAction").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from nerf_edit.errors import UsageError
from nerf_edit.models.ip2p import sd1_noise_schedule


def freeze_cross_attention(unet: torch.nn.Module) -> list[str]:
    """Freeze every `attn2` module (text→image cross-attention) of a diffusers UNet; returns the frozen
    parameter names. Raises ValueError on a UNet without any (nothing to keep, surely a wrong model)."""
    frozen = []
    for name, module in unet.named_modules():
        if name.split(".")[-1] == "attn2":
            for parameter_name, parameter in module.named_parameters():
                parameter.requires_grad_(False)
                frozen.append(f"{name}.{parameter_name}")
    if not frozen:
        raise UsageError("the UNet has no cross-attention (`attn2`) layers: is this an IP2P-architecture model?")
    return frozen


def training_noise_scheduler(pipe_scheduler_config) -> DDPMScheduler:
    """The DDPM forward process IP2P was trained with, every setting explicit (SD: scaled-linear betas
    0.00085..0.012 over 1000 steps, ε-prediction). Betas are taken from the pipeline's own scheduler config."""
    config = dict(pipe_scheduler_config)
    return DDPMScheduler(
        **sd1_noise_schedule(config),
        prediction_type="epsilon",
        clip_sample=False,
        steps_offset=config.get("steps_offset", 1),
    )


def conditioning_dropout(
    text: torch.Tensor, null_text: torch.Tensor, image_latents: torch.Tensor, random_p: torch.Tensor, prob: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """IP2P's conditioning dropout (diffusers' train_instruct_pix2pix.py): text [B, L, D] replaced by the empty
    prompt's [1, L, D] where p < 2·prob; image latents [B, 4, h, w] zeroed where prob <= p < 3·prob."""
    prompt_mask = (random_p < 2 * prob).reshape(-1, 1, 1)
    text = torch.where(prompt_mask, null_text.to(text.dtype), text)
    keep_image = 1 - ((random_p >= prob) & (random_p < 3 * prob)).to(image_latents.dtype)
    return text, image_latents * keep_image.reshape(-1, 1, 1, 1)


def denoising_error(prediction: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Per-sample ‖ε − ε̂‖² as a mean over latent elements: [B, C, h, w] -> [B] (in fp32)."""
    return (prediction.float() - noise.float()).pow(2).flatten(1).mean(dim=1)


def static_loss(prediction: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """L_static: IP2P's loss on the dropout-conditioned prediction."""
    return F.mse_loss(prediction.float(), noise.float())


def action_loss(error_positive: torch.Tensor, error_negative: torch.Tensor) -> torch.Tensor:
    """L_action = −log softmax(−e⁺, −e⁻)[0] = softplus(e⁺ − e⁻), averaged over the batch ([B] each)."""
    return F.softplus(error_positive - error_negative).mean()


def regularization_loss(prediction: torch.Tensor, reference_prediction: torch.Tensor) -> torch.Tensor:
    """L_reg: the fine-tuned prediction's distance to the frozen pre-fine-tuning UNet's (same inputs)."""
    return F.mse_loss(prediction.float(), reference_prediction.float())


@dataclass
class NoiseDraw:
    """The random draws of one training micro-batch, shared by all three losses."""

    timesteps: torch.Tensor  # [B] long
    noise: torch.Tensor  # [B, 4, h, w]
    random_p: torch.Tensor  # [B] conditioning-dropout uniforms
    action_timesteps: torch.Tensor  # [B] t of L_action and L_reg (shared by c_T and c_T')
    action_noise: torch.Tensor  # [B, 4, h, w] ε of L_action and L_reg (shared by c_T and c_T')

    def slice(self, part: slice) -> "NoiseDraw":
        return NoiseDraw(*(getattr(self, name)[part] for name in self.__dataclass_fields__))


def draw_noise(shape: tuple, num_train_timesteps: int, generator: torch.Generator,
               action_timestep_fraction: float = 1.0) -> NoiseDraw:
    """t ~ U{0..T-1}, ε ~ N(0, I), p ~ U(0, 1) for a batch of latents of `shape` [B, 4, h, w] (on the CPU, so
    a seeded generator gives the same draws on any device and under any number of processes). With
    action_timestep_fraction = 1 all three losses share (t, ε); below 1, L_action/L_reg get their own pair with
    t ~ U{0..fraction·T-1} (still one pair for both instructions)."""
    timesteps = torch.randint(0, num_train_timesteps, (shape[0],), generator=generator)
    noise = torch.randn(shape, generator=generator)
    random_p = torch.rand(shape[0], generator=generator)
    if action_timestep_fraction >= 1:
        return NoiseDraw(timesteps, noise, random_p, timesteps, noise)
    highest = max(1, int(action_timestep_fraction * num_train_timesteps))
    action_timesteps = torch.randint(0, highest, (shape[0],), generator=generator)
    return NoiseDraw(timesteps, noise, random_p, action_timesteps, torch.randn(shape, generator=generator))


def editaction_losses(
    unet,
    reference_unet,
    noise_scheduler: DDPMScheduler,
    latents: torch.Tensor,
    image_latents: torch.Tensor,
    text: torch.Tensor,
    negative_text: torch.Tensor,
    null_text: torch.Tensor,
    draw: NoiseDraw,
    dropout_prob: float = 0.05,
    lambda_action: float = 1.0,
    lambda_reg: float = 1.0,
    action_error: str = "sum",
) -> dict[str, torch.Tensor]:
    """L (Eq. 7) and its terms for one micro-batch.

    latents [B, 4, h, w]: scaled VAE latents of the edited (after) images; image_latents [B, 4, h, w]: VAE mode of
    the input (before) images, unscaled as in IP2P; text / negative_text [B, L, D]: embeddings of the true and the
    random instruction; null_text [1, L, D]: the empty prompt's. One UNet call on [static | c_T | c_T'] (3B) gives
    all three trainable predictions; the frozen reference sees the c_T third only (no gradient).
    """
    timesteps, noise = draw.timesteps.to(latents.device), draw.noise.to(latents.device, latents.dtype)
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)  # [B, 4, h, w]
    action_timesteps = draw.action_timesteps.to(latents.device)
    action_noise = draw.action_noise.to(latents.device, latents.dtype)
    action_noisy = noise_scheduler.add_noise(latents, action_noise, action_timesteps)  # [B, 4, h, w]
    dropped_text, dropped_image = conditioning_dropout(text, null_text, image_latents, draw.random_p.to(latents.device),
                                                       dropout_prob)
    batch = len(latents)
    model_input = torch.cat([torch.cat([noisy, dropped_image], 1),
                             torch.cat([action_noisy, image_latents], 1).repeat(2, 1, 1, 1)])
    all_timesteps = torch.cat([timesteps, action_timesteps, action_timesteps])
    prediction = unet(model_input, all_timesteps, torch.cat([dropped_text, text, negative_text])).sample
    static_prediction, positive, negative = prediction.split(batch)  # [B, 4, h, w] each
    losses = {"static": static_loss(static_prediction, noise)}
    # e± as squared norms (sums over the latent, the scale of log-likelihoods in the Bayes posterior of Eq. 4-5)
    # or as per-element means (a temperature of 1/elements: softplus stays in its linear range and keeps pushing e⁻
    # up until the negative's prediction is ruined).
    scale = positive[0].numel() if action_error == "sum" else 1
    losses["action"] = action_loss(scale * denoising_error(positive, action_noise),
                                   scale * denoising_error(negative, action_noise))
    if reference_unet is not None and lambda_reg > 0:
        with torch.no_grad():
            reference = reference_unet(torch.cat([action_noisy, image_latents], 1), action_timesteps, text).sample
        losses["reg"] = regularization_loss(positive, reference)
    else:
        losses["reg"] = torch.zeros((), device=latents.device)
    losses["total"] = losses["static"] + lambda_action * losses["action"] + lambda_reg * losses["reg"]
    return losses
