"""InstructPix2Pix over diffusers components: encode/decode, cached text embeddings, batched guidance."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, StableDiffusionInstructPix2PixPipeline

from nerf_edit.models.loading import IP2P_MODEL_ID, load_ip2p_pipeline


def sd1_noise_schedule(config) -> dict:
    """The noise schedule a model's scheduler config says its UNet was trained with (SD-1.x's when a key is
    missing: scaled-linear betas 0.00085..0.012 over 1000 steps): the part of any sampler taken from the model."""
    return dict(
        num_train_timesteps=config.get("num_train_timesteps", 1000),
        beta_start=config.get("beta_start", 0.00085),
        beta_end=config.get("beta_end", 0.012),
        beta_schedule=config.get("beta_schedule", "scaled_linear"),
        trained_betas=config.get("trained_betas"),
    )


def sd1_ddim_scheduler(config, timestep_spacing: str = "trailing", steps_offset: Optional[int] = None,
                       set_alpha_to_one: bool = False) -> DDIMScheduler:
    """DDIM with Stable Diffusion 1.x's settings, whatever scheduler a loaded pipeline carries.

    instruct-nerf2nerf and WYS take DDIM from `CompVis/stable-diffusion-v1-4` (clip_sample False,
    set_alpha_to_one False). `DDIMScheduler.from_config` of the hub IP2P's EulerAncestral config has no such keys
    and falls back to DDIM's defaults (clip_sample True: every step clamps the predicted x0 latent to [-1, 1]),
    so every setting is given here. Only the noise schedule itself (betas, training steps, prediction type) is
    taken from the model's config: it is what the UNet was trained with.
    "trailing" spacing: the first of n steps is T itself, so strength s starts at s·T (img2img semantics).
    Other samplers on SD-1.x (ViMAEdit) pass their own spacing, offset and final ᾱ.
    """
    return DDIMScheduler(
        **sd1_noise_schedule(config),
        prediction_type=config.get("prediction_type", "epsilon"),
        steps_offset=config.get("steps_offset", 1) if steps_offset is None else steps_offset,
        clip_sample=False,
        set_alpha_to_one=set_alpha_to_one,
        thresholding=False,
        rescale_betas_zero_snr=False,
        timestep_spacing=timestep_spacing,
    )


def sd1_dpm_solver_scheduler(config, final_sigmas_type: str = "zero") -> DPMSolverMultistepScheduler:
    """DPM-Solver++ (2M) as ZONE's official code gets it: `DPMSolverMultistepScheduler.from_config(<the IP2P
    pipeline's scheduler config>)` (lsl001006/ZONE inference.py ~15, 27). The noise schedule, spacing and offset
    come from the model's config (the hub IP2P's has no `timestep_spacing`, so DPM-Solver's `linspace`); every
    DPM-Solver setting is given here with the value `from_config` leaves it at, its own default, except
    `final_sigmas_type`: "zero" (diffusers' default since it has the setting: the last step lands on σ = 0) or
    "sigma_min" (the last step ends at the training schedule's smallest σ, what the diffusers 0.18 that ZONE pins
    does; `ZoneConfig.final_sigmas`, the zone-official preset's)."""
    return DPMSolverMultistepScheduler(
        **sd1_noise_schedule(config),
        prediction_type=config.get("prediction_type", "epsilon"),
        timestep_spacing=config.get("timestep_spacing", "linspace"),
        steps_offset=config.get("steps_offset", 0),
        solver_order=2,
        algorithm_type="dpmsolver++",
        solver_type="midpoint",
        lower_order_final=True,
        euler_at_final=False,
        use_karras_sigmas=False,
        final_sigmas_type=final_sigmas_type,
        thresholding=False,
    )


def pad_to_multiple(images: torch.Tensor, multiple: int) -> torch.Tensor:
    """Replicate-pad the bottom/right so H and W are multiples of `multiple` (the VAE's downsampling)."""
    height, width = images.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h == 0 and pad_w == 0:
        return images
    return F.pad(images, (0, pad_w, 0, pad_h), mode="replicate")


@dataclass
class EncodedInputs:
    """An edit's inputs in latent space (padded to the VAE's factor), encoded once and shared by the localiser and
    the editor."""

    images: torch.Tensor  # [B, 3, H, W] the images being edited, unpadded
    conditioning: torch.Tensor  # [B, 3, H, W] the image IP2P is conditioned on
    clean: torch.Tensor  # [B, 4, h, w] z0 of `images` (scaled latents)
    condition: torch.Tensor  # [B, 4, h, w] IP2P's condition latents of `conditioning` (unscaled mode)

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.images.shape[-2:])


class InstructPix2Pix:
    """The IP2P networks with the calls WYS needs. Images are [B, 3, H, W] in [0, 1], H and W multiples of 8.

    The sampler is DDIM (as in WYS and instruct-nerf2nerf): its `add_noise` is defined at any training timestep,
    which relevance maps (t = 0.8 T) and the relevance-guided blend (re-noising the input at every step) rely on.
    """

    def __init__(self, pipe: StableDiffusionInstructPix2PixPipeline):
        self.unet = pipe.unet
        self.vae = pipe.vae
        self.text_encoder = pipe.text_encoder
        self.tokenizer = pipe.tokenizer
        self.scheduler = sd1_ddim_scheduler(pipe.scheduler.config)
        self.model_scheduler_config = pipe.scheduler.config  # the model's own, for other samplers' noise schedule
        self.device = pipe.unet.device
        self.dtype = pipe.unet.dtype
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self._text_embeddings: dict[str, torch.Tensor] = {}

    @classmethod
    def from_pretrained(
        cls, model: str = IP2P_MODEL_ID, device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None
    ) -> "InstructPix2Pix":
        return cls(load_ip2p_pipeline(model, device=device, dtype=dtype))

    def speed_up(self, channels_last: bool = False, compile: bool = False, vae_tiling: bool = False) -> None:
        """GPU speed and memory options (see EditorConfig); results equal the plain model's to float tolerance."""
        if channels_last:
            self.unet.to(memory_format=torch.channels_last)
            self.vae.to(memory_format=torch.channels_last)
        if vae_tiling:
            self.vae.enable_tiling()
            self.vae.enable_slicing()
        if compile:
            # Compiles the forward in place: attention processors (ZONE's recorder) can still be swapped on the module.
            self.unet.compile()

    @property
    def num_train_timesteps(self) -> int:
        return self.scheduler.config.num_train_timesteps

    @torch.no_grad()
    def embed_text(self, instruction: str) -> torch.Tensor:
        """CLIP hidden states of one instruction, cached: the dataset update re-uses the prompt thousands of times."""
        if instruction not in self._text_embeddings:
            tokens = self.tokenizer(
                instruction,
                padding="max_length",
                max_length=self.tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            )
            hidden = self.text_encoder(tokens.input_ids.to(self.device))[0]  # [1, L, D]
            self._text_embeddings[instruction] = hidden.to(self.dtype)
        return self._text_embeddings[instruction]

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Diffusion latents z0 of images (the distribution's mode, scaled), [B, 4, H/8, W/8]."""
        return self.encode_condition(images) * self.vae.config.scaling_factor

    @torch.no_grad()
    def encode_condition(self, images: torch.Tensor) -> torch.Tensor:
        """IP2P's image-condition latents: the unscaled mode, as diffusers' IP2P pipeline feeds the UNet."""
        pixels = images.to(self.device, self.dtype) * 2 - 1
        return self.vae.encode(pixels).latent_dist.mode()

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        images = self.vae.decode(latents.to(self.dtype) / self.vae.config.scaling_factor).sample
        return ((images.float() + 1) / 2).clamp(0, 1)

    @torch.no_grad()
    def predict_text_and_null(
        self, noisy_latents: torch.Tensor, timestep: torch.Tensor, image_latents: torch.Tensor, instruction: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """ε(z_t, image, text) and ε(z_t, image, ∅) in one UNet call of batch 2B."""
        batch = noisy_latents.shape[0]
        text = self.embed_text(instruction).expand(batch, -1, -1)
        null = self.embed_text("").expand(batch, -1, -1)
        latents = torch.cat([noisy_latents, noisy_latents]).to(self.dtype)
        images = torch.cat([image_latents, image_latents]).to(self.dtype)
        eps = self.unet(torch.cat([latents, images], dim=1), timestep, encoder_hidden_states=torch.cat([text, null])).sample
        eps_text, eps_null = eps.float().chunk(2)
        return eps_text, eps_null

    @torch.no_grad()
    def predict_guided(
        self,
        noisy_latents: torch.Tensor,
        timestep: torch.Tensor,
        image_latents: torch.Tensor,
        instruction: str,
        guidance_scale: float = 7.5,
        image_guidance_scale: float = 1.5,
    ) -> torch.Tensor:
        """3-way classifier-free guidance ε_∅ + s_I(ε_I − ε_∅) + s_T(ε_{I,T} − ε_I), one UNet call of batch 3B."""
        batch = noisy_latents.shape[0]
        text = self.embed_text(instruction).expand(batch, -1, -1)
        null = self.embed_text("").expand(batch, -1, -1)
        latents = torch.cat([noisy_latents] * 3).to(self.dtype)
        images = torch.cat([image_latents, image_latents, torch.zeros_like(image_latents)]).to(self.dtype)
        eps = self.unet(
            torch.cat([latents, images], dim=1), timestep, encoder_hidden_states=torch.cat([text, null, null])
        ).sample.float()
        eps_text_image, eps_image, eps_null = eps.chunk(3)
        return eps_null + image_guidance_scale * (eps_image - eps_null) + guidance_scale * (eps_text_image - eps_image)

    def encode_inputs(self, images: torch.Tensor, conditioning: torch.Tensor) -> EncodedInputs:
        """z0 of `images` and the condition latents of `conditioning`; one VAE pass when they are the same tensor
        (z0 is then the scaled condition latent)."""
        condition = self.encode_condition(pad_to_multiple(conditioning, self.vae_scale_factor))
        if conditioning is images:
            clean = condition * self.vae.config.scaling_factor
        else:
            clean = self.encode(pad_to_multiple(images, self.vae_scale_factor))
        return EncodedInputs(images, conditioning, clean, condition)

    def decode_cropped(self, latents: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Decoded latents cropped to `like`'s [.., H, W] (undoing `pad_to_multiple`), on its device. -> [B, 3, H, W]"""
        height, width = like.shape[-2:]
        return self.decode(latents)[..., :height, :width].to(like.device)

    def draw_noise(self, images: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Noise shaped like the (padded) latents of `images` [B, C, h, w], on the generator's device. Drawn one
        image at a time, so a batch gets exactly the noise its images would get edited one by one."""
        factor = self.vae_scale_factor
        height, width = (-(-size // factor) for size in images.shape[-2:])
        device = generator.device if generator is not None else images.device
        shape = (1, self.vae.config.latent_channels, height, width)
        return torch.cat([torch.randn(shape, generator=generator, device=device) for _ in range(images.shape[0])])

    def guided_predictor(self, condition: torch.Tensor, instruction: str, guidance_scale: float,
                         image_guidance_scale: float):
        """`(noisy latents, t) -> guided ε` for `denoise`, conditioned on `condition` latents [B, 4, h, w]."""

        def predict(noisy: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
            eps = self.predict_guided(noisy, timestep, condition, instruction, guidance_scale, image_guidance_scale)
            return eps.to(noisy.dtype)

        return predict

    def start_latents(self, clean: torch.Tensor, noise: torch.Tensor, steps: int, strength: float,
                      from_noise: bool, scheduler=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """An edit's timesteps and first latents: z0 `clean` noised to the first step (official WYS, img2img), or
        pure noise when `from_noise` at strength 1 (diffusers' IP2P pipeline). `scheduler`: another sampler than
        the model's DDIM (its timesteps are set here).
        -> (timesteps, initial latents [B, 4, h, w], `noise` on z0's device and dtype)"""
        scheduler = scheduler if scheduler is not None else self.scheduler
        timesteps = self.edit_timesteps(steps, strength, scheduler)
        noise = noise.to(clean.device, clean.dtype)
        if strength >= 1 and from_noise:
            return timesteps, noise * scheduler.init_noise_sigma, noise
        return timesteps, scheduler.add_noise(clean, noise, timesteps[:1]), noise

    def edit_timesteps(self, steps: int, strength: float = 1.0, scheduler=None) -> torch.Tensor:
        """`steps` timesteps starting near strength·T (img2img's schedule, stretched so `steps` steps run), of the
        model's DDIM unless another `scheduler` is given.

        strength 1 is a full denoise from noise (2D editing); the 3D dataset update draws it in [lower, upper].
        """
        if not 0 < strength <= 1:
            raise ValueError(f"strength must be in (0, 1], got {strength}")
        scheduler = scheduler if scheduler is not None else self.scheduler
        total = max(steps, math.ceil(steps / strength))
        scheduler.set_timesteps(total, device=self.device)
        return scheduler.timesteps[total - steps :]
