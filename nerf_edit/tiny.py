"""A tiny, randomly initialised InstructPix2Pix built entirely from code.

No weights can be downloaded in CI, so every test of the diffusion code runs on this model: the real IP2P
architecture (8-channel UNet input, SD's 8x VAE downsampling, CLIP text encoder, CLIP BPE tokenizer) at a
size that runs in well under a second on a CPU. Its outputs mean nothing; the *plumbing* is what is tested.
"""

from __future__ import annotations

import torch
from diffusers import (
    AutoencoderKL,
    EulerAncestralDiscreteScheduler,
    StableDiffusionInstructPix2PixPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

# Words given a single token each, so instructions used in tests/demos tokenize into word pieces, not bytes.
_TINY_WORDS = (
    "make", "turn", "the", "a", "it", "him", "her", "give", "red", "blue", "green", "yellow", "ball", "cube",
    "hat", "into", "remove", "add", "change", "color", "colour", "to", "of", "and", "with", "sky", "floor",
)
_TEXT_HIDDEN = 32


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte-level table: every byte maps to a printable unicode character."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars)))


def _word_merges(word: str) -> list[tuple[str, str]]:
    """Left-to-right merges that assemble `word</w>` from its characters."""
    pieces = list(word[:-1]) + [word[-1] + "</w>"]
    merges = []
    while len(pieces) > 1:
        merges.append((pieces[0], pieces[1]))
        pieces = [pieces[0] + pieces[1]] + pieces[2:]
    return merges


def build_tiny_tokenizer() -> CLIPTokenizer:
    """A real CLIP BPE tokenizer over an in-code vocabulary (byte table + a few whole-word merges)."""
    byte_chars = list(bytes_to_unicode().values())
    tokens = byte_chars + [c + "</w>" for c in byte_chars]
    merges: list[tuple[str, str]] = []
    for word in _TINY_WORDS:
        for left, right in _word_merges(word):
            if (left, right) not in merges:
                merges.append((left, right))
                if left + right not in tokens:
                    tokens.append(left + right)
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: i for i, token in enumerate(tokens)}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def build_tiny_vae(width: int = 16, groups: int = 8) -> AutoencoderKL:
    """A 4-level VAE (3 downsamplings: SD's 8x) with 4 latent channels, `width`-wide; random weights."""
    return AutoencoderKL(
        block_out_channels=(width, width, 2 * width, 2 * width),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=groups,
        sample_size=64,
    )


def build_tiny_text_encoder(tokenizer: CLIPTokenizer, hidden_size: int) -> CLIPTextModel:
    """A 2-layer CLIP text encoder over the tiny tokenizer's vocabulary; random weights."""
    return CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            hidden_size=hidden_size,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=len(tokenizer),
            max_position_embeddings=77,
        )
    )


def build_tiny_ip2p_pipeline(seed: int = 0) -> StableDiffusionInstructPix2PixPipeline:
    """InstructPix2Pix with random weights: same component classes and conventions as `timbrooks/instruct-pix2pix`."""
    tokenizer = build_tiny_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=1,
            sample_size=16,
            in_channels=8,  # noisy latent (4) + image-condition latent (4)
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=_TEXT_HIDDEN,
            attention_head_dim=8,
            norm_num_groups=8,
        )
        vae = build_tiny_vae(16, 8)
        text_encoder = build_tiny_text_encoder(tokenizer, _TEXT_HIDDEN)
    # The scheduler IP2P ships with (SD's scaled-linear betas, Euler ancestral).
    scheduler = EulerAncestralDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000, steps_offset=1
    )
    return StableDiffusionInstructPix2PixPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_full_size_ip2p_pipeline(seed: int = 0, dtype: torch.dtype = torch.float32) -> StableDiffusionInstructPix2PixPipeline:
    """The real IP2P architecture (SD 1.5 UNet with 8 input channels, SD VAE, CLIP ViT-L/14 text encoder) with
    random weights: the same FLOPs as `timbrooks/instruct-pix2pix`, for GPU benchmarks without a download.
    The tokenizer is the tiny one (its ids are valid for the full vocabulary; tokenizing costs nothing here)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=64,
            in_channels=8,
            out_channels=4,
            layers_per_block=2,
            block_out_channels=(320, 640, 1280, 1280),
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            cross_attention_dim=768,
            attention_head_dim=8,
        ).to(dtype)
        vae = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            latent_channels=4,
            layers_per_block=2,
            sample_size=512,
        ).to(dtype)
        text_encoder = CLIPTextModel(
            CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                           num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu")
        ).to(dtype)
    scheduler = EulerAncestralDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000, steps_offset=1
    )
    return StableDiffusionInstructPix2PixPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=build_tiny_tokenizer(), unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
