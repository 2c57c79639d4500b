"""ViMAEdit as an editor (dual-branch SD-1.5 editing).

`ViMAEditEditor(EditorConfig)` follows nerf_edit.editing.Editor. Its settings are a `ViMAEditConfig`, read from
`config.vimaedit`. The maths is in `nerf_edit.vimaedit.ops`, the attention control in
`nerf_edit.vimaedit.attention`, the models in `nerf_edit.vimaedit.models`; its grounding on IP2P is
`nerf_edit.vimaedit.localizer`.

What runs (official code github Null-0000/ViMAEdit, run_editing_vima.py defaults; deviations marked):
* SD-1.5 text-to-image UNet; x0 = VAE mean latent of the image; x_T = add_noise(x0, ε, t = 981); 50 DDIM steps
  (`leading` spacing, offset 1: 981, 961, ..., 1; ᾱ_prev = 1 after the last step, DDIM's `set_alpha_to_one`, which
  the official scheduler inherits). The official EDDIM inherits DDIM's offset 0 and `clip_sample=True` too, but
  the StableDiffusionPipeline it is handed to rewrites both (offset 1, no clamp of x̂0): what ran is what runs
  here (`timestep_offset 0` for 980, ..., 0; `clip_predicted_x0` clamps x̂0 to [−1, 1]).
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

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from nerf_edit import validate
from nerf_edit.config.vimaedit import check_vimaedit_config, vimaedit_config
from nerf_edit.core.checks import check_background, check_conditioning, check_images, check_mask
from nerf_edit.editing.editor import Editor, EditRequest, EditResult
from nerf_edit.errors import EditorError
from nerf_edit.models.clip import projected_features
from nerf_edit.models.ip2p import pad_to_multiple
from nerf_edit.vimaedit import ops as vimaedit
from nerf_edit.vimaedit.attention import (
    VIMAEDIT_LAYOUT,
    AttentionControl,
    BatchLayout,
    attention_control,
    grounding_factors,
    upsample_flat,
)
from nerf_edit.vimaedit.models import ViMAEditModels, load_vimaedit_models


def blend_word_pair(blend_words: str) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """'cat dog' -> (('cat',), ('dog',)); 'cat' -> (('cat',), ('cat',)); '' -> ((), ())."""
    words = blend_words.split()
    if not words:
        return (), ()
    return (words[0],), (words[-1],)


@dataclass
class ViMAEditResult(EditResult):
    """An edit with what ViMAEdit's loop ended with (latents [B, 4, h, w], masks [B, 1, h, w])."""

    critical_region: Optional[torch.Tensor] = None  # where the adaptive variance acted at the last step
    latent_mask: Optional[torch.Tensor] = None  # the mask blended into the target branch
    decoded: Optional[torch.Tensor] = None  # [B, 3, H, W] the target branch decoded, before the composite
    latents: Optional[torch.Tensor] = None  # the target branch's final latents
    source_latents: Optional[torch.Tensor] = None  # the source branch's final latents (x0 by the correction)
    x0: Optional[torch.Tensor] = None  # the input's latents


@dataclass
class _Start:
    """Where both branches start: sizes, x0 [B, 4, h, w], the fixed noise, the timesteps and x_T [2B, 4, h, w]."""

    batch: int
    height: int
    width: int
    scale_factor: int  # the VAE's downsampling
    multiple: int  # images are padded to a multiple of this (VAE x UNet downsampling)
    latent_size: Tuple[int, int]
    device: torch.device
    noise_device: torch.device
    x0: torch.Tensor
    noise: torch.Tensor
    first: int  # index of the first timestep in the full schedule
    timesteps: torch.Tensor
    latents: torch.Tensor


@dataclass
class _Branches:
    """What the dual-branch loop ends with."""

    latents: torch.Tensor  # [2B, 4, h, w] source first
    grounding_sum: Optional[torch.Tensor]  # [2B, h/2·w/2] the grounded maps summed, None without blend words
    critical: Optional[torch.Tensor]  # [B, 1, h, w] the critical region at the last step
    blend_mask: Optional[torch.Tensor]  # [B, 1, h, w] the grounding mask at the last step


class ViMAEditEditor(Editor):
    """ViMAEdit (dual-branch SD-1.5 editing) behind the Editor interface. `edit(images, instruction)` edits with
    the configured source prompt and blend words, the instruction being the target prompt unless one is configured;
    `edit_prompts` takes all three per call (the PIE-Bench runner)."""

    def __init__(self, config, models: Optional[ViMAEditModels] = None):
        super().__init__(config)
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

    @classmethod
    def check_settings(cls, config, prefix: str = "--", check_models: bool = True,
                       model_flag: Optional[str] = None) -> None:
        """The shared settings and ViMAEdit's (`config.vimaedit`, flags `prefix` + `vimaedit.`); its models are
        checked when they load."""
        super().check_settings(config, prefix, check_models, model_flag)
        check_vimaedit_config(vimaedit_config(config), f"{prefix}vimaedit.")

    def run(self, request: EditRequest) -> ViMAEditResult:
        """The edit with the configured source prompt and blend words, the instruction being the target prompt
        unless one is configured."""
        target = self.settings.target_prompt or request.instruction
        return self.edit_prompts(request.images, self.settings.source_prompt, target, self.settings.blend_words,
                                 conditioning=request.conditioning, mask=request.mask, strength=request.strength,
                                 generator=request.generator, background=request.background, on_step=request.on_step)

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
        conditioning, mask, background = self._check_inputs(images, target_prompt, strength, conditioning, mask,
                                                            background)
        start = self._start(images, strength, generator)  # draws the fixed noise first
        context = self._text_context(source_prompt, target_prompt, start.batch)  # [4B, L, D]
        added = {}
        if self.settings.image_guidance:
            added = {"image_embeds": [self._image_embeddings(conditioning, source_prompt, target_prompt)]}
        weights = self._blend_weights(source_prompt, target_prompt, blend_words, start.batch)
        given_mask = None if mask is None else (F.max_pool2d(pad_to_multiple(mask[:, None].float().to(start.device),
                                                                             start.multiple), start.scale_factor) > 0)
        branches = self._denoise_branches(start, context, added, weights, given_mask, generator, source_prompt,
                                          target_prompt, on_step)
        return self._finish(images, background, start, branches, given_mask)

    def _check_inputs(self, images, target_prompt, strength, conditioning, mask, background):
        check_images(images)
        if not isinstance(target_prompt, str) or not target_prompt.strip():
            raise EditorError("the target prompt is empty: say what the edited image shows, e.g. 'a blue ball'")
        if not 0 < strength <= 1:
            raise EditorError(f"strength must be in (0, 1], got {strength}")
        conditioning = check_conditioning(conditioning, images)
        background = check_background(background, images)
        if mask is not None:
            mask = check_mask(mask, images)
        return conditioning, mask, background

    def _start(self, images: torch.Tensor, strength: float, generator) -> "_Start":
        """x0, the fixed noise (drawn first: a seed gives the same edit whatever else draws), the timesteps from
        `strength` on, and both branches' x_T."""
        models, settings = self.models, self.settings
        batch, (height, width) = images.shape[0], images.shape[-2:]
        scale_factor = 2 ** (len(models.vae.config.block_out_channels) - 1)
        multiple = scale_factor * 2 ** (len(models.unet.config.block_out_channels) - 1)
        device, dtype = models.device, models.dtype
        pixels = pad_to_multiple(images.to(device, dtype), multiple) * 2 - 1
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
        return _Start(batch, height, width, scale_factor, multiple, latent_size, device, noise_device, x0, noise,
                      first, timesteps, latents)

    def _blend_weights(self, source_prompt: str, target_prompt: str, blend_words: str, batch: int):
        """The blend words' token weights in both prompts [2B, L] (source rows first), or None without words."""
        source_words, target_words = blend_word_pair(blend_words)
        if not source_words:
            return None
        tokenizer = self.models.tokenizer
        weights = torch.stack([vimaedit.token_weights(source_prompt, source_words, tokenizer),
                               vimaedit.token_weights(target_prompt, target_words, tokenizer)])
        weights = weights.repeat_interleave(batch, 0).to(self.models.device)  # [2B, L]
        if not bool(weights.sum(1).gt(0).all()):
            raise EditorError(f"blend words {blend_words!r} are not in the prompts ({source_prompt!r} / "
                              f"{target_prompt!r}): give the source prompt's word, then the target prompt's")
        return weights

    def _denoise_branches(self, start: "_Start", context, added, weights, given_mask, generator, source_prompt,
                          target_prompt, on_step) -> "_Branches":
        """Both branches through the timesteps under the attention control: grounding, adaptive variance, the
        dual-branch DDIM step and the mask blend after every step."""
        settings, models = self.settings, self.models
        scheduler, device, batch, latent_size = models.scheduler, start.device, start.batch, start.latent_size
        control = self._control(source_prompt, target_prompt, latent_size, weights is not None)
        blend_start = int(settings.blend_start * settings.steps)
        latents = start.latents
        grounding_sum: Optional[torch.Tensor] = None  # [2B, h/2·w/2]
        critical = blend_mask = None
        with attention_control(models.unet, control):
            for index, t in enumerate(start.timesteps):
                step = start.first + index  # the step of the full schedule (P2P windows and blend start count from 0)
                control.step = step
                eps = self._guided_noise(latents, t, context, added)
                cross, self_map = control.pop_step()
                if weights is not None and step + 1 >= blend_start:
                    grounded = self._ground(cross, self_map, weights, latent_size)
                    grounding_sum = grounded if grounding_sum is None else grounding_sum + grounded
                if grounding_sum is not None:
                    maps = upsample_flat(grounding_sum, latent_size, latent_size).view(2 * batch, 1, *latent_size)
                    critical = vimaedit.critical_region(maps, settings.critical_threshold)  # [B, 1, h, w]
                    blend_mask = vimaedit.branch_union_mask(maps, settings.mask_threshold)
                alpha_t = scheduler.alphas_cumprod[int(t)].to(device)
                previous = int(t) - scheduler.config.num_train_timesteps // settings.steps
                alpha_prev = (scheduler.alphas_cumprod[previous] if previous >= 0
                              else scheduler.final_alpha_cumprod).to(device)
                sigma = self._sigma(critical, alpha_t, alpha_prev, batch, latent_size, device)
                step_noise = None
                if sigma is not None:
                    step_noise = torch.randn(start.noise.shape, generator=generator,
                                             device=start.noise_device).to(device)
                latents, _ = vimaedit.dual_branch_ddim_step(eps, latents, alpha_t, alpha_prev, start.x0, sigma,
                                                            step_noise, clip_x0=settings.clip_predicted_x0)
                applied = given_mask if given_mask is not None else blend_mask
                if applied is not None:
                    latents = vimaedit.blend_branches(latents, applied)
                if on_step is not None:
                    on_step(index, t, latents.chunk(2)[1])
        return _Branches(latents, grounding_sum, critical, blend_mask)

    def _guided_noise(self, latents: torch.Tensor, t, context, added) -> torch.Tensor:
        """Both branches' classifier-free-guided ε from one UNet call on [uncond src, uncond tar, cond src, cond
        tar]. [2B, 4, h, w] -> [2B, 4, h, w] (source first)"""
        settings, models = self.settings, self.models
        model_input = latents.repeat(2, 1, 1, 1).to(models.dtype)
        eps = models.unet(model_input, t, encoder_hidden_states=context, added_cond_kwargs=added or None).sample
        uncond_src, uncond_tar, cond_src, cond_tar = eps.float().chunk(4)
        return torch.cat([uncond_src + settings.source_guidance_scale * (cond_src - uncond_src),
                          uncond_tar + settings.target_guidance_scale * (cond_tar - uncond_tar)])

    def _finish(self, images, background, start: "_Start", branches: "_Branches", given_mask) -> ViMAEditResult:
        """Decode the target branch; the grounding map and the final mask at pixel size; the composite."""
        models, settings = self.models, self.settings
        batch, height, width, latent_size = start.batch, start.height, start.width, start.latent_size
        target = branches.latents.chunk(2)[1]
        edited = models.vae.decode(target.to(models.dtype) / models.vae.config.scaling_factor).sample
        edited = ((edited.float() + 1) / 2).clamp(0, 1)[..., :height, :width].to(images.device)
        relevance = None
        if branches.grounding_sum is not None:
            soft = vimaedit.normalize_maps(upsample_flat(branches.grounding_sum, latent_size, latent_size))
            soft = soft.view(2, batch, *latent_size)
            soft = F.interpolate(soft.max(0).values[:, None], scale_factor=start.scale_factor, mode="nearest")[:, 0]
            relevance = soft[:, :height, :width].to(images.device)
        applied = given_mask if given_mask is not None else branches.blend_mask
        if applied is not None:
            pixel_mask = F.interpolate(applied.float(), scale_factor=start.scale_factor,
                                       mode="nearest")[:, 0, :height, :width] > 0
            pixel_mask = pixel_mask.to(images.device)
        else:
            pixel_mask = torch.ones(batch, height, width, dtype=torch.bool, device=images.device)
        result = edited
        if settings.composite:
            result = torch.where(pixel_mask[:, None], edited, background.float().to(images.device))
        return ViMAEditResult(images=result, relevance=relevance, mask=pixel_mask, critical_region=branches.critical,
                              latent_mask=applied, decoded=edited, latents=target,
                              source_latents=branches.latents.chunk(2)[0], x0=start.x0)

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
        image = projected_features(models.clip.get_image_features(pixel_values=pixels.to(models.device, clip_dtype))).float()
        tokens = models.clip_tokenizer([source_prompt, target_prompt], padding="max_length",
                                       max_length=models.clip_tokenizer.model_max_length, truncation=True,
                                       return_tensors="pt")
        text = projected_features(models.clip.get_text_features(input_ids=tokens.input_ids.to(models.device))).float()
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
