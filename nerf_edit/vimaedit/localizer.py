"""ViMAEdit's grounding as a localiser for IP2P editors: where an instruction acts, from IP2P's own attention."""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from nerf_edit.config.editor import EditorConfig
from nerf_edit.config.vimaedit import check_vimaedit_config, vimaedit_config
from nerf_edit.core.checks import check_images, check_instruction
from nerf_edit.core.guided import Step, denoise
from nerf_edit.editing.localizer import Localization
from nerf_edit.errors import EditorError
from nerf_edit.models.ip2p import InstructPix2Pix, pad_to_multiple
from nerf_edit.vimaedit import ops as vimaedit
from nerf_edit.vimaedit.attention import (
    IP2P_LAYOUT,
    AttentionControl,
    attention_control,
    grounding_factors,
    upsample_flat,
)

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
    `nerf_edit.vimaedit.attention.grounding_factors` (IP2P has SD-1.5's UNet: 16² and 32² at 512²)."""

    def __init__(self, config: EditorConfig, ip2p: InstructPix2Pix):
        self.config = config
        self.settings = vimaedit_config(config)
        check_vimaedit_config(self.settings)
        self.ip2p = ip2p

    @classmethod
    def check_settings(cls, config: EditorConfig, prefix: str = "--", check_models: bool = True) -> None:
        """ViMAEdit's settings (`config.vimaedit`, flags `prefix` + `vimaedit.`); it loads no model of its own."""
        check_vimaedit_config(vimaedit_config(config), f"{prefix}vimaedit.")

    @torch.no_grad()
    def localize(self, images: torch.Tensor, instruction: str, conditioning: Optional[torch.Tensor] = None,
                 generator: Optional[torch.Generator] = None) -> Localization:
        check_images(images)
        check_instruction(instruction)
        conditioning = images if conditioning is None else conditioning
        ip2p, settings = self.ip2p, self.settings
        multiple = ip2p.vae_scale_factor * 2 ** (len(ip2p.unet.config.block_out_channels) - 1)
        clean = ip2p.encode(pad_to_multiple(images, multiple))  # [B, 4, h, w]
        image_latents = ip2p.encode_condition(pad_to_multiple(conditioning, multiple))
        latent_size = tuple(clean.shape[-2:])
        weights = self.blend_weights(instruction, images.shape[0]).to(clean.device)  # [B, L]
        timesteps = ip2p.edit_timesteps(self.config.steps, 1.0)
        device = generator.device if generator is not None else clean.device
        noise = torch.randn(clean.shape, generator=generator, device=device).to(clean.device, clean.dtype)
        latents = ip2p.scheduler.add_noise(clean, noise, timesteps[:1])
        control, ground, grounded = self.grounding(latent_size, weights)
        predict = ip2p.guided_predictor(image_latents, instruction, self.config.guidance_scale,
                                        self.config.image_guidance_scale)
        control.step = 0
        with attention_control(ip2p.unet, control):
            denoise(predict, ip2p.scheduler, latents, timesteps, [ground])
        soft = self.soft_map(grounded[0], latent_size, images.shape[-2:]).to(images.device)
        return Localization(mask=soft > settings.mask_threshold, soft=soft)

    def blend_weights(self, instruction: str, batch: int) -> torch.Tensor:
        """The blend tokens' weights in the instruction [B, L]: `blend_words`, else its content words."""
        words = self.settings.blend_words.split() or content_words(instruction)
        weights = vimaedit.token_weights(instruction, words, self.ip2p.tokenizer)
        if not bool(weights.any()):
            raise EditorError(f"blend words {words} are not in the instruction {instruction!r}")
        return weights.expand(batch, -1)

    def grounding(self, latent_size: Tuple[int, int], weights: torch.Tensor):
        """The attention control that records IP2P's attention, and the step hook that grounds the blend tokens
        with it from `blend_start` of the steps on. -> (control, hook, the grounded maps' sum [B, h/2·w/2] once
        denoised, as a one-item list)"""
        settings, steps = self.settings, self.config.steps
        cross_factor, self_factor = grounding_factors(self.ip2p.unet)
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

        return control, ground, sums

    def soft_map(self, total: torch.Tensor, latent_size: Tuple[int, int], size) -> torch.Tensor:
        """The grounded sum [B, h/2·w/2], min-max normalised and nearest-resized to the images' `size` (H, W).
        -> [B, H, W]"""
        factor = self.ip2p.vae_scale_factor
        pixels = (latent_size[0] * factor, latent_size[1] * factor)
        soft = vimaedit.normalize_maps(upsample_flat(total, latent_size, pixels))
        return soft.view(-1, *pixels)[:, : size[0], : size[1]]
