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
        clean = ip2p.encode(pad_to_multiple(images, multiple))  # [B, 4, h, w]
        image_latents = ip2p.encode_condition(pad_to_multiple(conditioning, multiple))
        latent_size = tuple(clean.shape[-2:])
        words = settings.blend_words.split() or content_words(instruction)
        weights = vimaedit.token_weights(instruction, words, ip2p.tokenizer).to(clean.device)
        if not bool(weights.any()):
            raise EditorError(f"blend words {words} are not in the instruction {instruction!r}")
        weights = weights.expand(images.shape[0], -1)  # [B, L]
        steps = self.config.steps
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

        predict = ip2p.guided_predictor(image_latents, instruction, self.config.guidance_scale,
                                        self.config.image_guidance_scale)
        control.step = 0
        with attention_control(ip2p.unet, control):
            denoise(predict, ip2p.scheduler, latents, timesteps, [ground])
        total = sums[0]
        soft = vimaedit.normalize_maps(upsample_flat(total, latent_size, (latent_size[0] * factor, latent_size[1] * factor)))
        soft = soft.view(-1, latent_size[0] * factor, latent_size[1] * factor)[:, :height, :width].to(images.device)
        return Localization(mask=soft > settings.mask_threshold, soft=soft)
