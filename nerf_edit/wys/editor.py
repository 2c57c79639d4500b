"""Watch Your Steps' editor: IP2P edits only where the localiser (default: WYS relevance >= τ) allows."""

from __future__ import annotations

from typing import Optional

import torch

from nerf_edit.core.checks import check_background, check_mask
from nerf_edit.core.guided import StepCallback, adaptive_variance_hook, composite, feathered_weights
from nerf_edit.core.relevance import relevance_mask
from nerf_edit.editing.editor import EditResult, IP2PEditor
from nerf_edit.editing.localizer import localize


class RelevanceGuidedEditor(IP2PEditor):
    """Watch Your Steps: IP2P edits only where the localiser (default: relevance >= τ) allows."""

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
        """Edit `images`; `mask` [B, H, W] bool overrides the localiser (3D passes the rendered relevance's).
        Outside the mask the latents follow `background`'s (default `images`) re-noised at every step, and the
        result is `background` there, bit for bit."""
        images, conditioning = self._check(images, instruction, conditioning)
        background = check_background(background, images)
        noise = self.draw_noise(images, generator)
        encoded = self.ip2p.encode_inputs(images, conditioning)
        found = None
        if mask is None:
            found = localize(self.localizer, images, instruction, conditioning, generator, encoded)
            mask = found.mask
        mask = check_mask(mask, images)
        if self.config.dilate_px > 0:
            mask = relevance_mask(mask.float(), 0.5, self.config.dilate_px)
        hooks = []
        if self.config.adaptive_variance and found is not None and found.soft is not None:
            critical = self.latent_cells(found.soft > self.config.vimaedit.critical_threshold, "any")
            hooks.append(adaptive_variance_hook(self.ip2p.scheduler, critical.to(encoded.clean.device), 1.0, generator))
        latents = self.denoise(encoded, instruction, strength, noise, mask,
                               self.background_latents(background, encoded), hooks, on_step)
        edited = self.ip2p.decode_cropped(latents, images)
        result = composite(edited, background.float(), feathered_weights(mask, self.config.feather_px))
        return EditResult(images=result, relevance=found.as_map() if found is not None else None, mask=mask,
                          localization=found)
