"""Action accuracy read off the model itself (the Diffusion-Classifier reading, Li et al. 2023, the paper's ref [27]).

The paper scores edits with a fine-tuned TimeSformer action recogniser (`nerf_edit/action/recognizer.py`; it needs
the source videos and pretrained weights). The same question -- does the model tie the *action* in the
instruction to the change between the images? -- is also answered offline by the model itself:
for each held-out (before, after, instruction) pair, the true instruction and K negatives are scored by their mean
denoising error ‖ε − ε_θ(z_t, t, E(before), c)‖² over M (t, ε) draws shared by all candidates, and the pair counts
as correct when the true instruction has the strictly lowest error (chance: 1 / (K + 1)).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from nerf_edit.action.data import ActionPair, load_pair_image
from nerf_edit.action.losses import denoising_error, training_noise_scheduler
from nerf_edit.errors import UsageError


@torch.no_grad()
def encode_prompts(tokenizer, text_encoder, prompts: list[str], device) -> torch.Tensor:
    """CLIP embeddings [N, 77, D] of the prompts (padded to the tokenizer's max length, as IP2P)."""
    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    return text_encoder(ids.to(device))[0]


@torch.no_grad()
def encode_pair_images(vae, before: torch.Tensor, after: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """before/after [B, 3, H, W] in [-1, 1] -> (image latents: the VAE mode, unscaled, as IP2P conditions on it;
    after latents: the VAE mode, scaled) [B, 4, H/8, W/8] each."""
    image_latents = vae.encode(before.to(vae.device, vae.dtype)).latent_dist.mode()
    latents = vae.encode(after.to(vae.device, vae.dtype)).latent_dist.mode() * vae.config.scaling_factor
    return image_latents, latents


@dataclass
class ActionAccuracy:
    accuracy: float
    correct: int
    total: int
    negatives: int
    draws: int
    chance: float
    choices: list[dict] = field(default_factory=list)  # per pair: instruction, chosen, errors by candidate

    def summary(self) -> dict:
        return {"action_accuracy": self.accuracy, "correct": self.correct, "pairs": self.total,
                "negatives": self.negatives, "draws": self.draws, "chance": self.chance}


def pick_negatives(pairs: list[ActionPair], vocabulary: list[str], count: int, seed: int) -> list[list[str]]:
    """K distinct negatives per pair from the vocabulary (every instruction but the pair's own), seeded."""
    rng = np.random.default_rng(seed)
    vocabulary = sorted(set(vocabulary))
    negatives = []
    for pair in pairs:
        others = [instruction for instruction in vocabulary if instruction != pair.instruction]
        if len(others) < count:
            raise UsageError(f"need {count} negative instructions per pair but the data has only {len(others)} other "
                             f"instruction(s): lower --negatives")
        negatives.append([others[i] for i in rng.choice(len(others), size=count, replace=False)])
    return negatives


@torch.no_grad()
def action_accuracy(
    pipe,
    pairs: list[ActionPair],
    vocabulary: list[str],
    negatives: int = 3,
    draws: int = 8,
    resolution: int = 64,
    seed: int = 0,
    timestep_fraction: float = 1.0,
) -> ActionAccuracy:
    """Held-out action accuracy of an IP2P-architecture pipeline (see the module docstring). The negatives and
    the (t, ε) draws depend only on `seed` and the pairs, so two models are compared on identical questions.
    t is stratified over the first `timestep_fraction` of the schedule (1: all of it)."""
    if not pairs:
        raise UsageError("no held-out pairs to evaluate: build the data with a held-out split")
    unet, device = pipe.unet, pipe.unet.device
    scheduler = training_noise_scheduler(pipe.scheduler.config)
    total_steps = scheduler.config.num_train_timesteps
    if not 0 < timestep_fraction <= 1:
        raise UsageError(f"the timestep fraction must be in (0, 1], got {timestep_fraction}")
    highest = max(1, int(timestep_fraction * total_steps))
    negative_sets = pick_negatives(pairs, vocabulary, negatives, seed)
    generator = torch.Generator().manual_seed(seed)
    correct, choices = 0, []
    for pair, pair_negatives in zip(pairs, negative_sets):
        before = load_pair_image(pair.before, resolution)[None]
        after = load_pair_image(pair.after, resolution)[None]
        image_latents, latents = encode_pair_images(pipe.vae, before, after)  # [1, 4, h, w]
        # Stratified t (one per 1/M of the schedule) and ε, shared by every candidate of this pair.
        timesteps = ((torch.arange(draws) + torch.rand(draws, generator=generator)) * highest / draws).long()
        noise = torch.randn((draws, *latents.shape[1:]), generator=generator).to(device, latents.dtype)
        timesteps = timesteps.clamp(max=highest - 1).to(device)
        noisy = scheduler.add_noise(latents.expand(draws, -1, -1, -1), noise, timesteps)  # [M, 4, h, w]
        candidates = [pair.instruction] + pair_negatives
        text = encode_prompts(pipe.tokenizer, pipe.text_encoder, candidates, device)  # [K+1, L, D]
        count = len(candidates)
        model_input = torch.cat([noisy, image_latents.expand(draws, -1, -1, -1)], 1).repeat(count, 1, 1, 1)
        prediction = unet(model_input.to(unet.dtype), timesteps.repeat(count),
                          text.repeat_interleave(draws, dim=0).to(unet.dtype)).sample  # [(K+1)·M, 4, h, w]
        errors = denoising_error(prediction, noise.repeat(count, 1, 1, 1)).reshape(count, draws).mean(1)  # [K+1]
        is_correct = bool(errors[0] < errors[1:].min())
        correct += is_correct
        choices.append({"instruction": pair.instruction, "chosen": candidates[int(errors.argmin())],
                        "errors": dict(zip(candidates, errors.tolist()))})
    return ActionAccuracy(correct / len(pairs), correct, len(pairs), negatives, draws, 1 / (negatives + 1), choices)
