"""Full-size architectures with random weights: the real shapes and FLOPs without a download (GPU benchmarks,
and a first run of the real layer structure on the CPU at a small input)."""

from __future__ import annotations

import torch
from diffusers import (
    AutoencoderKL,
    EulerAncestralDiscreteScheduler,
    StableDiffusionInstructPix2PixPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel

from nerf_edit.models.tiny import build_tiny_tokenizer


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


def build_full_size_sam(seed: int = 0, dtype: torch.dtype = torch.float32):
    """`facebook/sam-vit-huge`'s architecture (ViT-H/16 at 1024², 32 layers) with random weights: its FLOPs without
    a download, for GPU benchmarks."""
    from transformers import SamConfig, SamImageProcessor, SamModel, SamVisionConfig

    config = SamConfig(vision_config=SamVisionConfig(
        hidden_size=1280, num_hidden_layers=32, num_attention_heads=16, global_attn_indexes=(7, 15, 23, 31)
    ))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SamModel(config).eval().to(dtype)
    return model, SamImageProcessor()
