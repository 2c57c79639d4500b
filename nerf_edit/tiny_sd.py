"""Tiny random-weight models for ViMAEdit, built from code: an SD-1.5-shaped text-to-image pipeline, a CLIP with
vision and text projections, and an IP-Adapter (image projection + per-layer key/value weights).

The UNet has SD-1.5's block structure (4 levels; cross-attention in the first three down blocks and the last three
up blocks; 2 layers per down block, 3 per up block; none in the deepest level except the mid block), so the layers
ViMAEdit reads exist at the same *relative* resolutions: latent/2 (SD's 32² at 512²) and latent/4 (16²).
`write_tiny_vimaedit_models(folder)` saves all three in the layouts diffusers and transformers load
(`save_pretrained` folders; `models/ip-adapter_sd15.bin` as in `h94/IP-Adapter`), for tests of the real loading
path; nothing is ever written into a cache.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel


from nerf_edit.tiny import build_tiny_text_encoder, build_tiny_tokenizer, build_tiny_vae

TEXT_HIDDEN = 32
IMAGE_EMBED_DIM = 16  # the tiny CLIP's projection size (SD's IP-Adapter: 1024, CLIP ViT-H/14)
IP_ADAPTER_WEIGHT = "ip-adapter_sd15.bin"
IP_ADAPTER_SUBFOLDER = "models"


def build_tiny_sd_pipeline(seed: int = 0) -> StableDiffusionPipeline:
    """Stable Diffusion 1.5's architecture (4-channel UNet input, 8x VAE, CLIP text encoder) at a tiny size."""
    tokenizer = build_tiny_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=16,
            in_channels=4,
            out_channels=4,
            layers_per_block=2,
            block_out_channels=(8, 16, 16, 16),
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            cross_attention_dim=TEXT_HIDDEN,
            attention_head_dim=2,
            norm_num_groups=4,
        )
        vae = build_tiny_vae(8, 4)
        text_encoder = build_tiny_text_encoder(tokenizer, TEXT_HIDDEN)
    # SD-1.5's own scheduler config values (the editor builds its DDIM from them explicitly).
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              num_train_timesteps=1000, steps_offset=1, clip_sample=False, set_alpha_to_one=False)
    return StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, image_encoder=None, requires_safety_checker=False,
    )


def build_tiny_ip_adapter(unet: UNet2DConditionModel, image_embed_dim: int = IMAGE_EMBED_DIM, seed: int = 0) -> dict:
    """IP-Adapter weights in the original checkpoint format (`{"image_proj": ..., "ip_adapter": ...}`) for `unet`:
    an image projection to 4 tokens and to_k_ip/to_v_ip for every cross-attention layer, numbered 1, 3, 5, ... in
    the order of `unet.attn_processors` (the format diffusers' `load_ip_adapter` converts)."""
    cross_dim = unet.config.cross_attention_dim
    channels = list(unet.config.block_out_channels)
    generator = torch.Generator().manual_seed(seed)

    def random(*shape):
        return torch.randn(*shape, generator=generator) * 0.2

    image_proj = {"proj.weight": random(4 * cross_dim, image_embed_dim), "proj.bias": random(4 * cross_dim),
                  "norm.weight": torch.ones(cross_dim), "norm.bias": torch.zeros(cross_dim)}
    layers, key_id = {}, 1
    for name in unet.attn_processors:
        if not name.endswith("attn2.processor"):
            continue
        if name.startswith("mid_block"):
            hidden = channels[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(channels))[int(name[len("up_blocks.")])]
        else:
            hidden = channels[int(name[len("down_blocks.")])]
        layers[f"{key_id}.to_k_ip.weight"] = random(hidden, cross_dim)
        layers[f"{key_id}.to_v_ip.weight"] = random(hidden, cross_dim)
        key_id += 2
    return {"image_proj": image_proj, "ip_adapter": layers}


def write_tiny_vimaedit_models(folder: str | Path, seed: int = 0) -> dict:
    """Save the tiny SD pipeline, IP-Adapter and CLIP under `folder` in hub layouts.
    -> {"model": sd folder, "ip_adapter": ip-adapter folder, "clip_model": clip folder} (paths as str)"""
    from nerf_edit.metrics import build_tiny_clip

    folder = Path(folder)
    pipe = build_tiny_sd_pipeline(seed)
    pipe.save_pretrained(folder / "sd")
    weights = folder / "ip_adapter" / IP_ADAPTER_SUBFOLDER
    weights.mkdir(parents=True, exist_ok=True)
    torch.save(build_tiny_ip_adapter(pipe.unet, seed=seed), weights / IP_ADAPTER_WEIGHT)
    clip, tokenizer, processor = build_tiny_clip(seed)
    clip.save_pretrained(folder / "clip")
    tokenizer.save_pretrained(folder / "clip")
    processor.save_pretrained(folder / "clip")
    return {"model": str(folder / "sd"), "ip_adapter": str(folder / "ip_adapter"), "clip_model": str(folder / "clip")}
