"""Plain InstructPix2Pix as an editor (instruct-nerf2nerf's behaviour): no localisation."""

from __future__ import annotations

from typing import Optional

import torch

from nerf_edit.core.guided import StepCallback
from nerf_edit.editing.editor import EditResult, IP2PEditor


class GlobalEditor(IP2PEditor):
    """Plain InstructPix2Pix (instruct-nerf2nerf's behaviour): every pixel may change; `mask` and `background` are
    ignored. Full-strength edits start from pure noise, as diffusers' pipeline."""

    default_start = "noise"

    def edit(
        self,
        images: torch.Tensor,
        instruction: str,
        conditioning: Optional[torch.Tensor] = None,
        mask: Optional[torch.Tensor] = None,
        strength: float = 1.0,
        generator: Optional[torch.Generator] = None,
        on_step: Optional[StepCallback] = None,
        background: Optional[torch.Tensor] = None,
    ) -> EditResult:
        images, conditioning = self._check(images, instruction, conditioning)
        noise = self.draw_noise(images, generator)
        latents = self.denoise(self.ip2p.encode_inputs(images, conditioning), instruction, strength, noise,
                               on_step=on_step)
        return EditResult(images=self.ip2p.decode_cropped(latents, images))
