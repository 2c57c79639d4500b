"""Tiny, randomly initialised models built entirely from code: every model the library loads, at a size that runs
in well under a second on a CPU. Their outputs mean nothing; the *plumbing* is what is tested.

No weights can be downloaded in CI, so every test of the diffusion code runs on these:
- InstructPix2Pix: the real architecture (8-channel UNet input, SD's 8x VAE downsampling, CLIP text encoder, CLIP
  BPE tokenizer);
- Stable Diffusion 1.5 for ViMAEdit: SD-1.5's block structure (4 levels; cross-attention in the first three down
  blocks and the last three up blocks; 2 layers per down block, 3 per up block; none in the deepest level except
  the mid block), so the layers ViMAEdit reads exist at the same *relative* resolutions: latent/2 (SD's 32² at
  512²) and latent/4 (16²); an IP-Adapter (image projection + per-layer key/value weights) and a CLIP with vision
  and text projections. `write_tiny_vimaedit_models(folder)` saves the three in the layouts diffusers and
  transformers load (`save_pretrained` folders; `models/ip-adapter_sd15.bin` as in `h94/IP-Adapter`), for tests of
  the real loading path; nothing is ever written into a cache;
- SAM (ViT image encoder, prompt encoder, two-way mask decoder) at 64²;
- TimeSformer (divided space-time attention) at 8 frames of 32², EditAction's action recogniser.
The full-size architectures with random weights are in `nerf_edit.models.full_size`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    EulerAncestralDiscreteScheduler,
    StableDiffusionInstructPix2PixPipeline,
    StableDiffusionPipeline,
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


# ------------------------------------------------------------------------ SAM and CLIP
def build_tiny_sam(seed: int = 0):
    """SAM's architecture (ViT image encoder, prompt encoder, two-way mask decoder) at 64² with random weights."""
    from transformers import (
        SamConfig,
        SamImageProcessor,
        SamMaskDecoderConfig,
        SamModel,
        SamPromptEncoderConfig,
        SamVisionConfig,
    )

    image_size, patch_size, hidden = 64, 8, 32
    config = SamConfig(
        vision_config=SamVisionConfig(
            hidden_size=hidden, output_channels=hidden, num_hidden_layers=2, num_attention_heads=2,
            image_size=image_size, patch_size=patch_size, window_size=4, global_attn_indexes=(1,),
            num_pos_feats=hidden // 2, mlp_dim=2 * hidden,
        ),
        prompt_encoder_config=SamPromptEncoderConfig(
            hidden_size=hidden, image_size=image_size, patch_size=patch_size, mask_input_channels=4
        ),
        mask_decoder_config=SamMaskDecoderConfig(
            hidden_size=hidden, mlp_dim=2 * hidden, num_attention_heads=2, iou_head_hidden_dim=hidden
        ),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SamModel(config).eval()
    processor = SamImageProcessor(
        size={"longest_edge": image_size}, pad_size={"height": image_size, "width": image_size},
        mask_size={"longest_edge": image_size // 4}, mask_pad_size={"height": image_size // 4, "width": image_size // 4},
    )
    return model, processor


def build_tiny_clip(seed: int = 0):
    """A random-weight CLIP (real classes, tiny sizes) with the tiny BPE tokenizer, for offline tests."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    tokenizer = build_tiny_tokenizer()
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(config)
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return model, tokenizer, processor


def build_tiny_dino(seed: int = 0):
    """A random-weight ViT (DINO ViT-B/8's class, tiny sizes) for the PIE-Bench structure distance."""
    from transformers import ViTConfig, ViTModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                                  image_size=224, patch_size=32), add_pooling_layer=False)


# ------------------------------------------------------------------------ Stable Diffusion 1.5 for ViMAEdit
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
            cross_attention_dim=_TEXT_HIDDEN,
            attention_head_dim=2,
            norm_num_groups=4,
        )
        vae = build_tiny_vae(8, 4)
        text_encoder = build_tiny_text_encoder(tokenizer, _TEXT_HIDDEN)
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


# ------------------------------------------------------------------------ TimeSformer for EditAction's evaluation
def build_tiny_timesformer(labels: list[str], seed: int = 0, image_size: int = 32, frames: int = 8):
    """A random-weight TimeSformer (the real class and divided space-time attention, tiny sizes) classifying
    `labels`, with a video processor resizing to `image_size`², for offline tests of the action recogniser."""
    from transformers import TimesformerConfig, TimesformerForVideoClassification, VideoMAEImageProcessor

    config = TimesformerConfig(image_size=image_size, patch_size=8, num_frames=frames, hidden_size=32,
                               num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                               attention_type="divided_space_time", num_labels=len(labels),
                               id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TimesformerForVideoClassification(config)
    # The hub TimeSformers' processor (VideoMAEImageProcessor) with every setting given: resize the short side,
    # centre crop, rescale to [0, 1], ImageNet normalisation.
    processor = VideoMAEImageProcessor(size={"shortest_edge": image_size},
                                       crop_size={"height": image_size, "width": image_size}, do_normalize=True,
                                       image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    return model, processor
