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
    vae, text_encoder, unet = _sd15_parts(seed, dtype, in_channels=8)
    scheduler = EulerAncestralDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000, steps_offset=1
    )
    return StableDiffusionInstructPix2PixPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=build_tiny_tokenizer(), unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def build_full_size_sd15_pipeline(seed: int = 0, dtype: torch.dtype = torch.float32):
    """`stable-diffusion-v1-5/stable-diffusion-v1-5` (ViMAEdit's model) with random weights: IP2P's architecture
    with SD's 4 input channels, and SD-1.5's DDIM scheduler config (the editors build their samplers from it)."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    vae, text_encoder, unet = _sd15_parts(seed, dtype, in_channels=4)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              num_train_timesteps=1000, steps_offset=1, clip_sample=False, set_alpha_to_one=False)
    return StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=build_tiny_tokenizer(), unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, image_encoder=None, requires_safety_checker=False,
    )


def _sd15_parts(seed: int, dtype: torch.dtype, in_channels: int):
    """SD-1.5's VAE, CLIP ViT-L/14 text encoder and UNet (`in_channels` 4, or IP2P's 8), random weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=64,
            in_channels=in_channels,
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
    return vae, text_encoder, unet


def build_full_size_magicbrush_pipeline(seed: int = 1, dtype: torch.dtype = torch.float32
                                        ) -> StableDiffusionInstructPix2PixPipeline:
    """`vinesmsuic/magicbrush-jul7` (ZONE's fusion model) with random weights. MagicBrush is IP2P's checkpoint
    fine-tuned on MagicBrush's data (Zhang et al. 2023, §4): the same architecture, so the same builder with other
    weights (`seed`, 1 by default so that it differs from the IP2P it is fused with)."""
    return build_full_size_ip2p_pipeline(seed=seed, dtype=dtype)


def build_full_size_ip_adapter_weights(unet, seed: int = 0) -> dict:
    """`h94/IP-Adapter` models/ip-adapter_sd15.bin's layout and shapes for SD-1.5's `unet`, random weights: the image
    projection (CLIP ViT-H/14's 1024-d embedding -> 4 × 768 tokens) and to_k_ip / to_v_ip of every cross-attention
    layer, in the checkpoint format diffusers' `load_ip_adapter` converts (the tiny builder's, at full size)."""
    from nerf_edit.models.tiny import build_tiny_ip_adapter

    return build_tiny_ip_adapter(unet, image_embed_dim=1024, seed=seed)


def build_full_size_sam(seed: int = 0, dtype: torch.dtype = torch.float32):
    """`facebook/sam-vit-huge`'s architecture (ViT-H/16 at 1024², 32 layers) with random weights: its FLOPs without
    a download, for GPU benchmarks."""
    from transformers import SamConfig, SamImageProcessor, SamModel, SamVisionConfig

    config = SamConfig(vision_config=SamVisionConfig(
        hidden_size=1280, num_hidden_layers=32, num_attention_heads=16, global_attn_indexes=(7, 15, 23, 31)
    ))
    return _seeded(seed, lambda: SamModel(config).eval().to(dtype)), SamImageProcessor()


# ------------------------------------------------------------------------------------------ image and text encoders
# The values below are those of each model's hub `config.json` (the model named in each docstring); what they leave
# at transformers' defaults is left there. CLIP's token ids are the tiny tokenizer's (the real BPE files are a
# download): ids of the tiny vocabulary are valid rows of the full 49408-token embedding.


def build_full_size_clip_l14(seed: int = 0):
    """`openai/clip-vit-large-patch14` (PIE-Bench's CLIP score, the 3D evaluation) with random weights: text
    12 layers × 768 (3072 MLP, 12 heads), vision ViT-L/14 at 224² (24 layers × 1024, 4096 MLP, 16 heads), both
    quick_gelu, projections to 768. -> (CLIPModel, tokenizer, CLIPImageProcessor at 224²)"""
    from transformers import CLIPConfig, CLIPModel

    tokenizer = build_tiny_tokenizer()
    config = CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                         num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
                         projection_dim=768, **_token_ids(tokenizer)),
        vision_config=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                           image_size=224, patch_size=14, hidden_act="quick_gelu", projection_dim=768),
        projection_dim=768,
    )
    return _seeded(seed, lambda: CLIPModel(config).eval()), tokenizer, _clip_processor()


def build_full_size_clip_h14(seed: int = 0):
    """`laion/CLIP-ViT-H-14-laion2B-s32B-b79K`, the image encoder of IP-Adapter SD-1.5 (`h94/IP-Adapter`,
    models/image_encoder), with random weights: vision ViT-H/14 at 224² (32 layers × 1280, 5120 MLP, 16 heads),
    text 24 layers × 1024 (4096 MLP, 16 heads), gelu, projections to 1024.
    -> (CLIPModel, tokenizer, CLIPImageProcessor at 224²)"""
    from transformers import CLIPConfig, CLIPModel

    tokenizer = build_tiny_tokenizer()
    config = CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                         num_attention_heads=16, max_position_embeddings=77, hidden_act="gelu", projection_dim=1024,
                         **_token_ids(tokenizer)),
        vision_config=dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
                           image_size=224, patch_size=14, hidden_act="gelu", projection_dim=1024),
        projection_dim=1024,
    )
    return _seeded(seed, lambda: CLIPModel(config).eval()), tokenizer, _clip_processor()


def build_full_size_ip_adapter_projection(seed: int = 0):
    """IP-Adapter SD-1.5's image projection (`ip-adapter_sd15.bin`, "image_proj"): CLIP ViT-H/14's 1024-d image
    embedding to 4 tokens of SD-1.5's 768-d cross-attention (diffusers' ImageProjection, as its
    `_convert_ip_adapter_image_proj_to_diffusers` builds it for this file)."""
    from diffusers.models.embeddings import ImageProjection

    return _seeded(seed, lambda: ImageProjection(cross_attention_dim=768, image_embed_dim=1024,
                                                 num_image_text_embeds=4).eval())


def build_full_size_dino_vitb8(seed: int = 0):
    """`facebook/dino-vitb8` (PIE-Bench's structure distance) with random weights: ViT-B/8 at 224² (12 layers ×
    768, 3072 MLP, 12 heads, qkv bias), no pooler (PnPInversion reads the last layer's keys)."""
    from transformers import ViTConfig, ViTModel

    config = ViTConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                       image_size=224, patch_size=8, qkv_bias=True)
    return _seeded(seed, lambda: ViTModel(config, add_pooling_layer=False).eval())


def build_full_size_timesformer(seed: int = 0):
    """`facebook/timesformer-base-finetuned-k400` (EditAction's action recogniser, fine-tuned in the paper) with
    random weights: 8 frames of 224², 16² patches, 12 layers × 768 (3072 MLP, 12 heads), divided space-time
    attention, 400 Kinetics classes."""
    from transformers import TimesformerConfig, TimesformerForVideoClassification

    config = TimesformerConfig(image_size=224, patch_size=16, num_frames=8, hidden_size=768, num_hidden_layers=12,
                               num_attention_heads=12, intermediate_size=3072, attention_type="divided_space_time",
                               num_labels=400)
    return _seeded(seed, lambda: TimesformerForVideoClassification(config).eval())


def _seeded(seed: int, build):
    """`build()` under its own seed, leaving the caller's random state as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _token_ids(tokenizer) -> dict:
    """The special tokens' ids of `tokenizer`: CLIP's text model pools at the end-of-text token it is told."""
    return dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id)


def _clip_processor():
    """OpenAI CLIP's preprocessing at 224² (shortest edge 224, centre crop, CLIP's mean and std)."""
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
