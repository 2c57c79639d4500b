"""ViMAEdit's mathematics as plain functions (arXiv 2410.10496; official code github Null-0000/ViMAEdit, read
only: it has no licence, nothing here is copied from it).

ViMAEdit edits with two DDIM branches that start from the same noised input latent: the *source* branch (source
prompt, CFG 1.0) and the *target* branch (target prompt, CFG 7.5). Its three parts, each a function here:

* image-embedding-enhanced denoising: `target_image_embedding` (ê_t = e_s + ‖e_s‖·(t_t/‖t_t‖ − t_s/‖t_s‖)) and
  `ip_adapter_batch_embeddings` (which IP-Adapter embedding each UNet batch entry gets);
* self-attention-guided iterative grounding: `blend_token_map` (M₀ from cross-attention), `iterative_grounding`
  (M ← γM + (1−γ)·A·M, K times), `normalize_maps` and `branch_union_mask` (min-max per branch, union > 0.5);
* spatially adaptive variance-guided sampling: `critical_region` (normalised map > 0.8) and `dual_branch_ddim_step`
  (σ_t = η·1[critical]·σ_DDIM(t), the same z in both branches), with the InfEdit-style x̂0 correction
  (`correct_predicted_x0`) and the mask blend after every step (`blend_branches`).

Shapes: B images, N = h·w attention cells, L text tokens, D embedding size. Both branches of a batch are stacked
source first: [2B, ...] = [source (B), target (B)].
"""

from __future__ import annotations

from typing import Literal, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from nerf_edit.core.guided import Step

IPOrdering = Literal["paper", "official"]


# ----------------------------------------------------------------------------- image-embedding guidance
def target_image_embedding(
    source_image: torch.Tensor, source_text: torch.Tensor, target_text: torch.Tensor
) -> torch.Tensor:
    """ê_t = e_s + ‖e_s‖·(t_t/‖t_t‖ − t_s/‖t_s‖): the source image's CLIP embedding moved along the prompt change.

    source_image e_s [B, D], source_text t_s [B, D], target_text t_t [B, D] (projected CLIP embeddings) -> [B, D].
    The text direction is rescaled to the image embedding's norm (official code: p2p_editor.py
    get_ip_adapter_image_embeds, `text_embeds * image_embeds.norm() / text_embeds.norm(dim=-1)`); the norm is per
    row here, which is the same for the official batch of one.
    """
    scale = source_image.norm(dim=-1, keepdim=True)  # [B, 1]
    direction = F.normalize(target_text, dim=-1) - F.normalize(source_text, dim=-1)  # [B, D]
    return source_image + scale * direction


def ip_adapter_batch_embeddings(
    source_image: torch.Tensor, target_image: torch.Tensor, ordering: IPOrdering = "paper"
) -> torch.Tensor:
    """IP-Adapter image embeddings for the UNet batch [uncond source, uncond target, cond source, cond target].

    source_image e_s [B, D], target_image ê_t [B, D] -> [4B, 1, D] (diffusers' `image_embeds` layout: one image each).
    `paper`: the unconditional halves get the zero (negative) embedding, the source branch e_s and the target
    branch ê_t (the paper's intent).
    `official`: the official code stacks [0, e_s] and [0, ê_t] and concatenates them, which on its batch
    [uncond src, uncond tar, cond src, cond tar] gives [0, e_s, 0, ê_t]: the target's unconditional half sees e_s
    and the source branch only the zero embedding (p2p_editor.py get_ip_adapter_image_embeds + edit_image_...).
    """
    zero = torch.zeros_like(source_image)
    if ordering == "paper":
        parts = [zero, zero, source_image, target_image]
    elif ordering == "official":
        parts = [zero, source_image, zero, target_image]
    else:
        raise ValueError(f"unknown IP-Adapter ordering {ordering!r}: use 'paper' or 'official'")
    return torch.cat(parts)[:, None]  # [4B, 1, D]


# ----------------------------------------------------------------------------- grounding
def blend_token_map(cross_attention: Sequence[torch.Tensor], token_weights: torch.Tensor) -> torch.Tensor:
    """M₀ before resizing: the blend tokens' cross-attention, summed over tokens and averaged over layers.

    cross_attention: per layer [R, N, L] (heads already averaged; all layers on the same grid), token_weights
    [R, L] (1 on the blend words' tokens) -> [R, N]. Averaging head means over layers equals the official mean over
    layers and heads when every layer has the same number of heads (8 in SD-1.5).
    """
    maps = [(layer.float() * token_weights[:, None, :].float()).sum(-1) for layer in cross_attention]  # [R, N] each
    return torch.stack(maps).mean(0)


def resize_map(flat: torch.Tensor, grid: Tuple[int, int], size: Tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of flattened maps (F.interpolate's default, as the official code). [R, h·w] -> [R, H·W]"""
    maps = flat.reshape(flat.shape[0], 1, *grid)
    return F.interpolate(maps, size=size, mode="nearest").reshape(flat.shape[0], -1)


def iterative_grounding(
    initial: torch.Tensor, self_attention: torch.Tensor, gamma: float = 0.5, iterations: int = 5
) -> torch.Tensor:
    """M ← γ·M + (1 − γ)·A·M, `iterations` (K) times. initial M₀ [R, N], self_attention A [R, N, N] -> [R, N]

    A is row-stochastic (each query's attention over keys), so A·M spreads each cell's saliency from the cells it
    attends to; K = 0 returns M₀ (cross-attention-only grounding, the paper's ablation).
    """
    maps = initial.float()[..., None]  # [R, N, 1]
    attention = self_attention.float()
    for _ in range(iterations):
        maps = gamma * maps + (1 - gamma) * torch.bmm(attention, maps)
    return maps[..., 0]


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Min-max normalisation of each map to [0, 1]. [R, ...] -> [R, ...] (a constant map becomes 0)."""
    flat = maps.reshape(maps.shape[0], -1).float()
    low = flat.min(1, keepdim=True).values
    span = flat.max(1, keepdim=True).values - low
    return ((flat - low) / span.clamp_min(torch.finfo(flat.dtype).tiny)).reshape(maps.shape)


def branch_union_mask(maps: torch.Tensor, threshold: float) -> torch.Tensor:
    """Union over the two branches of (min-max normalised map > threshold). maps [2B, ...] -> [B, ...] bool

    The official blend uses `mask[:1] + mask` on booleans (logical or) for the target branch, and adds the two
    branches' masks for the variance region the same way (p2p_guidance_forward.py, attention_control.py LocalBlend).
    """
    above = normalize_maps(maps) > threshold
    source, target = above.chunk(2)
    return source | target


def ddim_sigma(alpha_prod_t: torch.Tensor, alpha_prod_prev: torch.Tensor) -> torch.Tensor:
    """DDIM's σ_t(η = 1) = sqrt((1 − ᾱ_prev)/(1 − ᾱ_t) · (1 − ᾱ_t/ᾱ_prev)) (DDIM eq. 16; diffusers' _get_variance)."""
    return ((1 - alpha_prod_prev) / (1 - alpha_prod_t) * (1 - alpha_prod_t / alpha_prod_prev)).sqrt()


def adaptive_sigma(critical: torch.Tensor, sigma_ddim: torch.Tensor, eta: float = 1.0) -> torch.Tensor:
    """σ_t = η·1[critical]·σ_DDIM(t): DDIM's η-variance inside the critical region, exactly zero elsewhere.
    critical [B, 1, h, w] bool -> [B, 1, h, w]"""
    return eta * critical.float() * sigma_ddim


def adaptive_variance_step(scheduler, step: Step, critical: torch.Tensor, eta: float = 1.0,
                           generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """A DDIM step (`core.guided.Step`) redone with the spatially adaptive variance: inside `critical`
    [B, 1, h, w] bool, with σ_t = η·σ_DDIM(t),
        x_{t-1} = √ᾱ_prev·x̂0 + √(1 − ᾱ_prev − σ_t²)·ε + σ_t·z,
    with the step's own ε and x̂0 and fresh z; outside it the deterministic step is kept, bit for bit. -> [B, C, h, w]"""
    t = int(step.timestep)
    previous = t - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    alpha_t = scheduler.alphas_cumprod[t]
    alpha_prev = scheduler.alphas_cumprod[previous] if previous >= 0 else scheduler.final_alpha_cumprod
    sigma = adaptive_sigma(critical, ddim_sigma(alpha_t, alpha_prev), eta).to(step.latents)  # [B, 1, h, w]
    device = generator.device if generator is not None else step.latents.device
    z = torch.randn(step.latents.shape, generator=generator, device=device).to(step.latents)
    varied = (alpha_prev.sqrt() * step.predicted_original + (1 - alpha_prev - sigma**2).sqrt() * step.noise_pred
              + sigma * z)
    return torch.where(critical.to(step.latents.device), varied.to(step.latents.dtype), step.latents)


def critical_region(maps: torch.Tensor, threshold: float = 0.8) -> torch.Tensor:
    """ViMAEdit's critical region: where a branch's normalised grounding map exceeds 0.8 (union of both branches).
    [2B, ...] -> [B, ...] bool"""
    return branch_union_mask(maps, threshold)


# ----------------------------------------------------------------------------- sampling
def correct_predicted_x0(predicted_x0: torch.Tensor, source_x0: torch.Tensor) -> torch.Tensor:
    """InfEdit-style correction: x̂0 ← x0 + (x̂0 − x̂0_src) for both branches, so the source branch's x̂0 is the input
    exactly and the target's keeps only its difference from the source's.
    predicted_x0 [2B, C, h, w] (source, target), source_x0 [B, C, h, w] -> [2B, C, h, w]"""
    source_prediction = predicted_x0.chunk(2)[0]
    return source_x0.repeat(2, 1, 1, 1) + predicted_x0 - source_prediction.repeat(2, 1, 1, 1)


def dual_branch_ddim_step(
    eps: torch.Tensor,
    latents: torch.Tensor,
    alpha_prod_t: torch.Tensor,
    alpha_prod_prev: torch.Tensor,
    source_x0: Optional[torch.Tensor],
    sigma: Optional[torch.Tensor] = None,
    noise: Optional[torch.Tensor] = None,
    clip_x0: bool = False,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """One DDIM step of both branches with the x̂0 correction and a per-pixel σ.

    eps, latents [2B, C, h, w] (source, target); alpha_prod_t/_prev ᾱ scalars; source_x0 x0 [B, C, h, w] or None
    (no correction); sigma [B, 1, h, w] or None (σ = 0: deterministic DDIM); noise z [B, C, h, w], the same for both
    branches; clip_x0 clamps the corrected x̂0 to [−1, 1] (the official scheduler's inherited DDIM default).
    Returns (x_{t-1} [2B, C, h, w], corrected x̂0 [2B, C, h, w]).

    x̂0 = (x_t − √(1−ᾱ_t)·ε)/√ᾱ_t, corrected; x_{t-1} = √ᾱ_prev·x̂0 + √(1 − ᾱ_prev − σ²)·ε̂ + σ·z with
    ε̂ = (x_t − √ᾱ_t·x̂0)/√(1−ᾱ_t), the noise implied by the corrected x̂0 (official scheduler.py EDDIMScheduler.
    edit_step writes the same as (√ᾱ_prev − √ᾱ_t·b_t)·x̂0 + b_t·x_t with b_t = √((1−ᾱ_prev−σ²)/(1−ᾱ_t))).
    """
    latents = latents.float()
    predicted_x0 = (latents - (1 - alpha_prod_t).sqrt() * eps.float()) / alpha_prod_t.sqrt()
    if source_x0 is not None:
        predicted_x0 = correct_predicted_x0(predicted_x0, source_x0.float())
    if clip_x0:
        predicted_x0 = predicted_x0.clamp(-1, 1)
    if sigma is None:
        sigma_both = torch.zeros((), device=latents.device)
    else:
        sigma_both = sigma.float().repeat(2, 1, 1, 1)  # [2B, 1, h, w]
    b_t = ((1 - alpha_prod_prev - sigma_both**2) / (1 - alpha_prod_t)).sqrt()
    previous = (alpha_prod_prev.sqrt() - alpha_prod_t.sqrt() * b_t) * predicted_x0 + b_t * latents
    if sigma is not None and noise is not None:
        previous = previous + sigma_both * noise.float().repeat(2, 1, 1, 1)
    return previous, predicted_x0


def blend_branches(latents: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x_tar ← x_src + M·(x_tar − x_src); the source branch is unchanged.
    latents [2B, C, h, w] (source, target), mask [B, 1, h, w] -> [2B, C, h, w]"""
    source, target = latents.chunk(2)
    mask = mask.to(latents.dtype)
    return torch.cat([source, source + mask * (target - source)])


# ----------------------------------------------------------------------------- prompts and tokens
def word_token_indices(prompt: str, words: Sequence[str], tokenizer) -> list[int]:
    """Positions (after the start token) of the tokens of every whitespace word of `prompt` equal to one of `words`
    (case- and punctuation-insensitive). CLIP's BPE tokenizes words independently, so a word's tokens are the
    ones it gets on its own."""
    wanted = {_plain(word) for word in words if _plain(word)}
    indices, position = [], 1  # 0 is <|startoftext|>
    for word in prompt.split():
        count = len(tokenizer(word, add_special_tokens=False).input_ids)
        if _plain(word) in wanted:
            indices.extend(range(position, position + count))
        position += count
    return [i for i in indices if i < tokenizer.model_max_length - 1]


def _plain(word: str) -> str:
    return "".join(ch for ch in word.lower() if ch.isalnum())


def token_weights(prompt: str, words: Sequence[str], tokenizer, length: Optional[int] = None) -> torch.Tensor:
    """1 on the tokens of `words` in `prompt`, 0 elsewhere. -> [L] float (L = the tokenizer's max length)."""
    weights = torch.zeros(length or tokenizer.model_max_length)
    for index in word_token_indices(prompt, words, tokenizer):
        weights[index] = 1
    return weights


def refinement_mapper(source_ids: Sequence[int], target_ids: Sequence[int], length: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Prompt-to-Prompt refinement alignment of two token sequences (with start/end tokens).

    Needleman-Wunsch global alignment with P2P's scores (match +1, mismatch −1, gap 0) and its tie order on the
    way back (a target-only token first, then a dropped source token, then a pair; P2P seq_aligner.global_align).
    Returns (mapper [length] long: for each target position the aligned source position, alphas [length] float: 1
    where the target token has a source token to borrow attention from, 0 for tokens only in the target).
    Positions past the target's tokens (padding) map to themselves with alpha 1.
    """
    n, m = len(source_ids), len(target_ids)
    score = torch.zeros(n + 1, m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            diagonal = score[i - 1, j - 1] + (1 if source_ids[i - 1] == target_ids[j - 1] else -1)
            score[i, j] = max(score[i, j - 1], score[i - 1, j], diagonal)
    mapper = torch.arange(length, dtype=torch.long)
    alphas = torch.ones(length)
    i, j = n, m
    while i > 0 or j > 0:
        if j > 0 and (i == 0 or score[i, j] == score[i, j - 1]):
            j -= 1  # a target token with no source counterpart
            if j < length:
                mapper[j], alphas[j] = 0, 0.0
        elif i > 0 and (j == 0 or score[i, j] == score[i - 1, j]):
            i -= 1  # a source token dropped from the target
        else:
            i, j = i - 1, j - 1
            if j < length:
                mapper[j], alphas[j] = i, 1.0
    return mapper, alphas
