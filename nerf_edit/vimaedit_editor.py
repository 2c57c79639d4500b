"""ViMAEdit as an editor (dual-branch SD-1.5 editing) and its grounding as a localiser for IP2P editors.

`ViMAEditEditor(EditorConfig)` follows nerf_edit.editors.Editor. Its settings are a `ViMAEditConfig`, read from
`config.vimaedit` (the field EditorConfig is to carry; `ViMAEditConfig()` until it does). The maths is in
nerf_edit/vimaedit.py, the attention control in nerf_edit/vimaedit_attention.py.

What runs (official code github Null-0000/ViMAEdit, run_editing_vima.py defaults; deviations marked):
* SD-1.5 text-to-image UNet; x0 = VAE mean latent of the image; x_T = add_noise(x0, ε, t = 980); 50 DDIM steps
  (`leading` spacing, offset 0: 980, 960, ..., 0; ᾱ_prev = 1 after the last step, DDIM's `set_alpha_to_one`, which
  the official scheduler inherits). The official scheduler also inherits DDIM's `clip_sample=True`, clamping the
  corrected x̂0 latent to [−1, 1]; SD latents are not in that range, so it is off here (`clip_predicted_x0` turns
  it on to reproduce the official numbers).
* the two branches share x_T; UNet batch [uncond src, uncond tar, cond src, cond tar]; CFG 1.0 (source prompt) and
  7.5 (target prompt); x̂0 correction each step; P2P refinement [0, 20), self-attention injection [0, 30),
  IP-Adapter attention injection [0, 5).
* IP-Adapter (`h94/IP-Adapter`, models/ip-adapter_sd15.bin, scale 0.4) loaded by diffusers; e_s, t_s, t_t are
  projected CLIP ViT-H/14 embeddings (`laion/CLIP-ViT-H-14-laion2B-s32B-b79K`, the encoder IP-Adapter SD-1.5 was
  trained with; the official code loads a CLIPModel for both towers). `ip_ordering`: `paper` (e_s for the source
  branch, ê_t for the target, zero for both unconditional halves) or `official` (the official batch order: the
  target's unconditional half gets e_s, the source branch the zero embedding); see vimaedit.ip_adapter_batch_embeddings.
* grounding from step ⌊0.2·50⌋ − 1 on (the official counter counts UNet calls), M₀ from cross-attention at latent/4
  (SD: 16²), A from self-attention at latent/2 (32²), K = 5, γ = 0.5; mask = union of branches > 0.5 blended into
  the target after every step; critical region > 0.8 gets σ = η·σ_DDIM, the same z in both branches.
* ours: pixels outside the final mask (nearest-upsampled to pixels) are the input's exactly (`composite`), as every
  editor here; the official output is the decoded latent everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from nerf_edit import vimaedit
from nerf_edit.checks import (EditorError, check_background, check_conditioning, check_images, check_instruction,
                              check_mask)
from nerf_edit.editors import EditResult
from nerf_edit.guided import Step, denoise
from nerf_edit.localizers import Localization
from nerf_edit.loading import ModelUnavailableError, check_available, is_tiny, resolve_dtype, unavailable_message
from nerf_edit.validate import UsageError
from nerf_edit.vimaedit_attention import (
    IP2P_LAYOUT,
    VIMAEDIT_LAYOUT,
    AttentionControl,
    BatchLayout,
    attention_control,
    grounding_factors,
    upsample_flat,
)

from nerf_edit.vimaedit_config import (  # noqa: F401  (re-exported: the settings belong with the editor)
    CLIP_H14_ID,
    IP_ADAPTER_ID,
    SD15_MODEL_ID,
    ViMAEditConfig,
    check_vimaedit_config,
    vimaedit_config,
)


def blend_word_pair(blend_words: str) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """'cat dog' -> (('cat',), ('dog',)); 'cat' -> (('cat',), ('cat',)); '' -> ((), ())."""
    words = blend_words.split()
    if not words:
        return (), ()
    return (words[0],), (words[-1],)


def vimaedit_ddim_scheduler(config):
    """DDIM with SD-1.x's noise schedule and every setting given: 50 steps give 980, 960, ..., 0 (the official
    ViMAEdit schedule: `leading` spacing, offset 0), no clipping of x̂0, ᾱ_prev = 1 after the last step."""
    from nerf_edit.ip2p import sd1_ddim_scheduler

    scheduler = sd1_ddim_scheduler(config, timestep_spacing="leading", steps_offset=0, set_alpha_to_one=True)
    return scheduler


@dataclass
class ViMAEditModels:
    """The networks ViMAEdit runs: SD-1.5 parts (with the IP-Adapter in the UNet when loaded) and CLIP."""

    unet: torch.nn.Module
    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    scheduler: object
    clip: Optional[torch.nn.Module] = None
    clip_tokenizer: object = None
    clip_processor: object = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32


def load_vimaedit_models(settings: ViMAEditConfig, device: str = "cpu", dtype=None) -> ViMAEditModels:
    """SD-1.5 (+ IP-Adapter + CLIP when `image_guidance`), each by hub id, local folder or `tiny`; a model that cannot
    be had is one ModelUnavailableError line, raised before any weights load."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import logging as diffusers_logging

    from nerf_edit.loading import _DTYPE_KWARG

    torch_dtype = resolve_dtype(device, dtype)
    if not is_tiny(settings.model):
        check_available(settings.model, "model_index.json", "--vimaedit.model")
    if settings.image_guidance:
        if not is_tiny(settings.ip_adapter):
            check_available(settings.ip_adapter, f"{settings.ip_adapter_subfolder}/{settings.ip_adapter_weight}".lstrip("/"),
                            "--vimaedit.ip-adapter")
        if not is_tiny(settings.clip_model):
            check_available(settings.clip_model, "config.json", "--vimaedit.clip-model")
    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # our one-line errors replace diffusers' chatter
    try:
        if is_tiny(settings.model):
            from nerf_edit.tiny_sd import build_tiny_sd_pipeline

            pipe = build_tiny_sd_pipeline(int(settings.model.partition(":")[2] or 0))
        else:
            pipe = _from_pretrained(StableDiffusionPipeline, settings.model, **{_DTYPE_KWARG: torch_dtype},
                                    safety_checker=None, requires_safety_checker=False)
        clip = clip_tokenizer = clip_processor = None
        if settings.image_guidance:
            if is_tiny(settings.ip_adapter):
                from nerf_edit.tiny_sd import build_tiny_ip_adapter

                pipe.load_ip_adapter(build_tiny_ip_adapter(pipe.unet), subfolder="", weight_name="",
                                     image_encoder_folder=None)
            else:
                try:
                    pipe.load_ip_adapter(settings.ip_adapter, subfolder=settings.ip_adapter_subfolder,
                                         weight_name=settings.ip_adapter_weight, image_encoder_folder=None)
                except (OSError, ValueError, KeyError) as error:
                    raise ModelUnavailableError(unavailable_message(settings.ip_adapter, error)) from error
            pipe.set_ip_adapter_scale(settings.ip_adapter_scale)
            clip, clip_tokenizer, clip_processor = load_clip(settings.clip_model)
            clip = clip.to(device, torch_dtype).eval()
    finally:
        diffusers_logging.set_verbosity(verbosity)
    if pipe.unet.dtype != torch_dtype:
        pipe = pipe.to(dtype=torch_dtype)
    pipe = pipe.to(device)
    return ViMAEditModels(
        unet=pipe.unet, vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer,
        scheduler=vimaedit_ddim_scheduler(pipe.scheduler.config), clip=clip, clip_tokenizer=clip_tokenizer,
        clip_processor=clip_processor, device=torch.device(device), dtype=torch_dtype,
    )


def _from_pretrained(cls, model: str, **kwargs):
    from pathlib import Path

    path = Path(model).expanduser()
    try:
        return cls.from_pretrained(str(path) if path.is_dir() else model, **kwargs)
    except (OSError, ValueError, EnvironmentError) as error:
        raise ModelUnavailableError(unavailable_message(model, error)) from error


def load_clip(model: str):
    """(CLIPModel, tokenizer, image processor) by hub id, folder or `tiny`."""
    if is_tiny(model):
        from nerf_edit.metrics import build_tiny_clip

        return build_tiny_clip(int(model.partition(":")[2] or 0))
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

    try:
        return CLIPModel.from_pretrained(model), CLIPTokenizer.from_pretrained(model), CLIPImageProcessor.from_pretrained(model)
    except (OSError, ValueError) as error:
        raise ModelUnavailableError(unavailable_message(model, error)) from error


def _features(output) -> torch.Tensor:
    """transformers 5 returns a model output where 4.x returned the projected features tensor."""
    if isinstance(output, torch.Tensor):
        return output
    return output.pooler_output if getattr(output, "pooler_output", None) is not None else output[0]


def _pad(images: torch.Tensor, multiple: int) -> torch.Tensor:
    height, width = images.shape[-2:]
    return F.pad(images, (0, -width % multiple, 0, -height % multiple), mode="replicate")


@dataclass
class ViMAEditResult(EditResult):
    """An edit with what ViMAEdit's loop ended with (latents [B, 4, h, w], masks [B, 1, h, w])."""

    critical_region: Optional[torch.Tensor] = None  # where the adaptive variance acted at the last step
    latent_mask: Optional[torch.Tensor] = None  # the mask blended into the target branch
    decoded: Optional[torch.Tensor] = None  # [B, 3, H, W] the target branch decoded, before the composite
    latents: Optional[torch.Tensor] = None  # the target branch's final latents
    source_latents: Optional[torch.Tensor] = None  # the source branch's final latents (x0 by the correction)
    x0: Optional[torch.Tensor] = None  # the input's latents


class ViMAEditEditor:
    """ViMAEdit (dual-branch SD-1.5 editing) behind the Editor interface. `edit(images, instruction)` edits with
    the configured source prompt and blend words, the instruction being the target prompt unless one is configured;
    `edit_prompts` takes all three per call (the PIE-Bench runner)."""

    def __init__(self, config, models: Optional[ViMAEditModels] = None):
        from nerf_edit import validate

        self.config = config
        self.settings = vimaedit_config(config)
        check_vimaedit_config(self.settings)
        device = getattr(config, "device", "auto")
        validate.check_device(device)
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.models = models if models is not None else load_vimaedit_models(self.settings, self.device,
                                                                             getattr(config, "dtype", "auto"))

    # ------------------------------------------------------------------ Editor protocol
    def relevance(self, images: torch.Tensor, instruction: str, conditioning: Optional[torch.Tensor] = None,
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """The normalised grounding map (union of the branches' maxima) of the edit. -> [B, H, W] in [0, 1]"""
        return self.edit(images, instruction, conditioning, generator=generator).relevance

    def edit(self, images: torch.Tensor, instruction: str, conditioning: Optional[torch.Tensor] = None,
             mask: Optional[torch.Tensor] = None, strength: float = 1.0, generator: Optional[torch.Generator] = None,
             background: Optional[torch.Tensor] = None, on_step=None):
        target = self.settings.target_prompt or instruction
        return self.edit_prompts(images, self.settings.source_prompt, target, self.settings.blend_words,
                                 conditioning=conditioning, mask=mask, strength=strength, generator=generator,
                                 background=background, on_step=on_step)

    # ------------------------------------------------------------------ the method
    @torch.no_grad()
    def edit_prompts(self, images: torch.Tensor, source_prompt: str, target_prompt: str, blend_words: str = "",
                     conditioning: Optional[torch.Tensor] = None, mask: Optional[torch.Tensor] = None,
                     strength: float = 1.0, generator: Optional[torch.Generator] = None,
                     background: Optional[torch.Tensor] = None, on_step=None):
        """Edit `images` [B, 3, H, W] in [0, 1] from `source_prompt` to `target_prompt`.

        `conditioning` (default `images`) gives the IP-Adapter's source embedding e_s; `mask` [B, H, W] bool, when
        given, replaces the grounding mask in the blend and the composite; `background` (default `images`) is kept
        outside the final mask; `strength` < 1 starts at the step nearest strength·T.
        -> ViMAEditResult(images, relevance = normalised grounding map or None, mask, and the latents)"""

        check_images(images)
        if not isinstance(target_prompt, str) or not target_prompt.strip():
            raise EditorError("the target prompt is empty: say what the edited image shows, e.g. 'a blue ball'")
        if not 0 < strength <= 1:
            raise EditorError(f"strength must be in (0, 1], got {strength}")
        conditioning = check_conditioning(conditioning, images)
        background = check_background(background, images)
        if mask is not None:
            mask = check_mask(mask, images)
        settings, models = self.settings, self.models
        batch, (height, width) = images.shape[0], images.shape[-2:]
        scale_factor = 2 ** (len(models.vae.config.block_out_channels) - 1)
        multiple = scale_factor * 2 ** (len(models.unet.config.block_out_channels) - 1)
        device, dtype = models.device, models.dtype

        # x0 and the fixed noise (drawn first: a seed gives the same edit whatever else draws)
        pixels = _pad(images.to(device, dtype), multiple) * 2 - 1
        latent_size = (pixels.shape[-2] // scale_factor, pixels.shape[-1] // scale_factor)
        noise_device = generator.device if generator is not None else device
        noise = torch.randn((batch, models.vae.config.latent_channels, *latent_size), generator=generator,
                            device=noise_device).to(device)
        x0 = models.vae.encode(pixels).latent_dist.mean.float() * models.vae.config.scaling_factor  # [B, 4, h, w]

        scheduler = models.scheduler
        scheduler.set_timesteps(settings.steps, device=device)
        first = min(len(scheduler.timesteps) - 1, round(settings.steps * (1 - strength)))
        timesteps = scheduler.timesteps[first:]
        latents = scheduler.add_noise(x0, noise, timesteps[:1]).repeat(2, 1, 1, 1)  # [2B, 4, h, w]

        context = self._text_context(source_prompt, target_prompt, batch)  # [4B, L, D]
        added = {}
        if settings.image_guidance:
            added = {"image_embeds": [self._image_embeddings(conditioning, source_prompt, target_prompt)]}
        source_words, target_words = blend_word_pair(blend_words)
        weights = None
        if source_words:
            weights = torch.stack([vimaedit.token_weights(source_prompt, source_words, models.tokenizer),
                                   vimaedit.token_weights(target_prompt, target_words, models.tokenizer)])
            weights = weights.repeat_interleave(batch, 0).to(device)  # [2B, L]
            if not bool(weights.sum(1).gt(0).all()):
                raise EditorError(f"blend words {blend_words!r} are not in the prompts ({source_prompt!r} / "
                                  f"{target_prompt!r}): give the source prompt's word, then the target prompt's")
        control = self._control(source_prompt, target_prompt, latent_size, weights is not None)
        start = int(settings.blend_start * settings.steps)
        grounding_sum: Optional[torch.Tensor] = None  # [2B, h/2·w/2]
        final_mask = None if mask is None else (F.max_pool2d(_pad(mask[:, None].float().to(device), multiple),
                                                             scale_factor) > 0)
        critical = blend_mask = None
        with attention_control(models.unet, control):
            for index, t in enumerate(timesteps):
                step = first + index  # the step of the full schedule (P2P windows and blend start count from 0)
                control.step = step
                model_input = latents.repeat(2, 1, 1, 1).to(dtype)  # [uncond src, uncond tar, cond src, cond tar]
                eps = models.unet(model_input, t, encoder_hidden_states=context, added_cond_kwargs=added or None).sample
                uncond_src, uncond_tar, cond_src, cond_tar = eps.float().chunk(4)
                eps = torch.cat([uncond_src + settings.source_guidance_scale * (cond_src - uncond_src),
                                 uncond_tar + settings.target_guidance_scale * (cond_tar - uncond_tar)])
                cross, self_map = control.pop_step()
                if weights is not None and step + 1 >= start:
                    grounded = self._ground(cross, self_map, weights, latent_size)
                    grounding_sum = grounded if grounding_sum is None else grounding_sum + grounded
                if grounding_sum is not None:
                    maps = upsample_flat(grounding_sum, latent_size, latent_size).view(2 * batch, 1, *latent_size)
                    critical = vimaedit.critical_region(maps, settings.critical_threshold)  # [B, 1, h, w]
                    blend_mask = vimaedit.branch_union_mask(maps, settings.mask_threshold)
                alpha_t = scheduler.alphas_cumprod[int(t)].to(device)
                previous = int(t) - scheduler.config.num_train_timesteps // settings.steps
                alpha_prev = (scheduler.alphas_cumprod[previous] if previous >= 0 else scheduler.final_alpha_cumprod).to(device)
                sigma = self._sigma(critical, alpha_t, alpha_prev, batch, latent_size, device)
                step_noise = None
                if sigma is not None:
                    step_noise = torch.randn(noise.shape, generator=generator, device=noise_device).to(device)
                latents, _ = vimaedit.dual_branch_ddim_step(eps, latents, alpha_t, alpha_prev, x0, sigma, step_noise,
                                                            clip_x0=settings.clip_predicted_x0)
                applied = final_mask if final_mask is not None else blend_mask
                if applied is not None:
                    latents = vimaedit.blend_branches(latents, applied)
                if on_step is not None:
                    on_step(index, t, latents.chunk(2)[1])
        edited = models.vae.decode(latents.chunk(2)[1].to(dtype) / models.vae.config.scaling_factor).sample
        edited = ((edited.float() + 1) / 2).clamp(0, 1)[..., :height, :width].to(images.device)
        relevance = pixel_mask = None
        if grounding_sum is not None:
            soft = vimaedit.normalize_maps(upsample_flat(grounding_sum, latent_size, latent_size)).view(2, batch, *latent_size)
            soft = F.interpolate(soft.max(0).values[:, None], scale_factor=scale_factor, mode="nearest")[:, 0]
            relevance = soft[:, :height, :width].to(images.device)
        applied = final_mask if final_mask is not None else blend_mask
        if applied is not None:
            pixel_mask = F.interpolate(applied.float(), scale_factor=scale_factor, mode="nearest")[:, 0, :height, :width] > 0
            pixel_mask = pixel_mask.to(images.device)
        else:
            pixel_mask = torch.ones(batch, height, width, dtype=torch.bool, device=images.device)
        result = edited
        if settings.composite:
            result = torch.where(pixel_mask[:, None], edited, background.float().to(images.device))
        return ViMAEditResult(images=result, relevance=relevance, mask=pixel_mask, critical_region=critical,
                              latent_mask=applied, decoded=edited, latents=latents.chunk(2)[1],
                              source_latents=latents.chunk(2)[0], x0=x0)

    # ------------------------------------------------------------------ parts
    def _text_context(self, source_prompt: str, target_prompt: str, batch: int) -> torch.Tensor:
        models = self.models
        tokens = models.tokenizer(["", source_prompt, target_prompt], padding="max_length",
                                  max_length=models.tokenizer.model_max_length, truncation=True, return_tensors="pt")
        null, source, target = models.text_encoder(tokens.input_ids.to(models.device))[0].to(models.dtype)
        return torch.stack([null, null, source, target]).repeat_interleave(batch, 0)  # [4B, L, D]

    def _image_embeddings(self, conditioning: torch.Tensor, source_prompt: str, target_prompt: str) -> torch.Tensor:
        """[4B, 1, D] IP-Adapter embeddings in the configured ordering, from projected CLIP embeddings."""
        models = self.models
        clip_dtype = next(models.clip.parameters()).dtype
        pixels = models.clip_processor(images=list(conditioning.float().clamp(0, 1).cpu()), return_tensors="pt",
                                       do_rescale=False).pixel_values
        image = _features(models.clip.get_image_features(pixel_values=pixels.to(models.device, clip_dtype))).float()
        tokens = models.clip_tokenizer([source_prompt, target_prompt], padding="max_length",
                                       max_length=models.clip_tokenizer.model_max_length, truncation=True,
                                       return_tensors="pt")
        text = _features(models.clip.get_text_features(input_ids=tokens.input_ids.to(models.device))).float()
        batch = image.shape[0]
        source_text, target_text = text[:1].expand(batch, -1), text[1:].expand(batch, -1)
        target = vimaedit.target_image_embedding(image, source_text, target_text)
        return vimaedit.ip_adapter_batch_embeddings(image, target, self.settings.ip_ordering).to(models.dtype)

    def _control(self, source_prompt: str, target_prompt: str, latent_size, grounding: bool) -> AttentionControl:
        settings, tokenizer = self.settings, self.models.tokenizer
        mapper = alphas = None
        steps = settings.steps
        cross_factor, self_factor = grounding_factors(self.models.unet)
        if settings.prompt_to_prompt:
            ids = tokenizer([source_prompt, target_prompt], truncation=True,
                            max_length=tokenizer.model_max_length).input_ids
            mapper, alphas = vimaedit.refinement_mapper(ids[0], ids[1], tokenizer.model_max_length)
        return AttentionControl(
            VIMAEDIT_LAYOUT if settings.prompt_to_prompt else BatchLayout(chunks=4, record=(2, 3)),
            latent_size,
            record_cross_factor=cross_factor if grounding else None,
            record_self_factor=self_factor if grounding and settings.iterative_grounding and settings.grounding_iterations else None,
            self_steps=int(settings.self_replace * steps),
            cross_steps=int(settings.cross_replace * steps),
            image_steps=int(settings.image_replace * steps) if settings.image_guidance else 0,
            mapper=mapper,
            alphas=alphas,
        )

    def _ground(self, cross, self_map, weights, latent_size) -> torch.Tensor:
        """This step's grounded maps on the latent/2 grid. -> [2B, h/2·w/2]"""
        settings = self.settings
        if not cross:
            raise RuntimeError("the UNet has no cross-attention layers at 1/4 of the latent grid to ground with")
        initial = vimaedit.blend_token_map(cross, weights)  # [2B, Nc]
        factor = grounding_factors(self.models.unet)[1]
        half = (-(-latent_size[0] // factor), -(-latent_size[1] // factor))
        initial = upsample_flat(initial, latent_size, half)  # [2B, Ns]: M₀ on the self-attention grid
        iterations = settings.grounding_iterations if settings.iterative_grounding else 0
        if iterations == 0:
            return initial
        if self_map is None:
            raise RuntimeError("the UNet has no self-attention layers at 1/2 of the latent grid to ground with")
        return vimaedit.iterative_grounding(initial, self_map, settings.gamma, iterations)

    def _sigma(self, critical, alpha_t, alpha_prev, batch, latent_size, device) -> Optional[torch.Tensor]:
        settings = self.settings
        sigma_ddim = vimaedit.ddim_sigma(alpha_t, alpha_prev)
        if settings.variance == "uniform":
            return settings.eta * sigma_ddim * torch.ones(batch, 1, *latent_size, device=device)
        if settings.variance == "zero" or critical is None or not bool(critical.any()):
            return None
        return vimaedit.adaptive_sigma(critical, sigma_ddim, settings.eta)


# ---------------------------------------------------------------------------------------------- localiser
INSTRUCTION_STOPWORDS = frozenset(
    "a an the this that these those it its him her his them their he she they me my you your our we i "
    "make turn change give add put remove replace let have has be is are was were to into in on onto of at "
    "with and or as by for from like so very please instead now some more less look looks".split()
)


def content_words(instruction: str) -> Tuple[str, ...]:
    """The instruction's words that name things or properties (all words but a small list of function words and
    editing verbs): the blend tokens of the localiser when none are given."""
    words = [vimaedit._plain(word) for word in instruction.split()]
    kept = tuple(word for word in words if word and word not in INSTRUCTION_STOPWORDS)
    return kept or tuple(word for word in words if word)


class ViMAEditLocalizer:
    """ViMAEdit's grounding on InstructPix2Pix: where an instruction acts, from IP2P's own attention.

    A guided IP2P denoising of the input (`config.steps` steps, full strength, from the noised input) records the
    text branch's cross-attention at latent/4 and self-attention at latent/2; from `blend_start` of the steps on,
    M₀ (the blend tokens' cross-attention, resized to latent/2) is refined K times with M ← γM + (1−γ)·A·M and
    summed; the sum, min-max normalised and nearest-resized to pixels, is `soft`; `mask` is soft > mask_threshold.
    Blend tokens: `config.vimaedit.blend_words` when set, else the instruction's content words. Grids as
    `vimaedit_attention.grounding_factors` (IP2P has SD-1.5's UNet: 16² and 32² at 512²)."""

    def __init__(self, config, ip2p):
        self.config = config
        self.settings = vimaedit_config(config)
        check_vimaedit_config(self.settings)
        self.ip2p = ip2p

    @torch.no_grad()
    def localize(self, images: torch.Tensor, instruction: str, conditioning: Optional[torch.Tensor] = None,
                 generator: Optional[torch.Generator] = None) -> Localization:

        check_images(images)
        check_instruction(instruction)
        conditioning = images if conditioning is None else conditioning
        ip2p, settings = self.ip2p, self.settings
        factor = ip2p.vae_scale_factor
        multiple = factor * 2 ** (len(ip2p.unet.config.block_out_channels) - 1)
        height, width = images.shape[-2:]
        clean = ip2p.encode(_pad(images, multiple))  # [B, 4, h, w]
        image_latents = ip2p.encode_condition(_pad(conditioning, multiple))
        latent_size = tuple(clean.shape[-2:])
        words = settings.blend_words.split() or content_words(instruction)
        weights = vimaedit.token_weights(instruction, words, ip2p.tokenizer).to(clean.device)
        if not bool(weights.any()):
            raise EditorError(f"blend words {words} are not in the instruction {instruction!r}")
        weights = weights.expand(images.shape[0], -1)  # [B, L]
        steps = getattr(self.config, "steps", settings.steps)
        timesteps = ip2p.edit_timesteps(steps, 1.0)
        device = generator.device if generator is not None else clean.device
        noise = torch.randn(clean.shape, generator=generator, device=device).to(clean.device, clean.dtype)
        latents = ip2p.scheduler.add_noise(clean, noise, timesteps[:1])
        cross_factor, self_factor = grounding_factors(ip2p.unet)
        control = AttentionControl(
            IP2P_LAYOUT, latent_size, record_cross_factor=cross_factor,
            record_self_factor=self_factor if settings.iterative_grounding and settings.grounding_iterations else None,
        )
        start = int(settings.blend_start * steps)
        iterations = settings.grounding_iterations if settings.iterative_grounding else 0
        half = (-(-latent_size[0] // self_factor), -(-latent_size[1] // self_factor))
        sums = []  # the grounded maps summed from `start` on, [B, h/2·w/2]

        def ground(step: Step) -> torch.Tensor:
            """Step hook: this step's attention (recorded while its ε was predicted) grounds the blend tokens."""
            cross, self_map = control.pop_step()
            control.step = step.index + 1
            if step.index + 1 >= start:
                grounded = upsample_flat(vimaedit.blend_token_map(cross, weights), latent_size, half)
                if iterations:
                    grounded = vimaedit.iterative_grounding(grounded, self_map, settings.gamma, iterations)
                sums[:] = [grounded if not sums else sums[0] + grounded]
            return step.latents

        predict = ip2p.guided_predictor(image_latents, instruction, getattr(self.config, "guidance_scale", 7.5),
                                        getattr(self.config, "image_guidance_scale", 1.5))
        control.step = 0
        with attention_control(ip2p.unet, control):
            denoise(predict, ip2p.scheduler, latents, timesteps, [ground])
        total = sums[0]
        soft = vimaedit.normalize_maps(upsample_flat(total, latent_size, (latent_size[0] * factor, latent_size[1] * factor)))
        soft = soft.view(-1, latent_size[0] * factor, latent_size[1] * factor)[:, :height, :width].to(images.device)
        return Localization(mask=soft > settings.mask_threshold, soft=soft)
