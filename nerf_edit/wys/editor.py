"""Watch Your Steps' editor: IP2P edits only where the localiser (default: WYS relevance >= τ) allows."""

from __future__ import annotations

from nerf_edit.editing.editor import EditRequest, EditResult
from nerf_edit.editing.ip2p_editor import IP2PEditor
from nerf_edit.editing.localizer import localize
from nerf_edit.wys.localizer import RelevanceLocalizer
from nerf_edit.wys.ops import composite, feathered_weights, relevance_mask


class RelevanceGuidedEditor(IP2PEditor):
    """Watch Your Steps: IP2P edits only where the localiser (default: relevance >= τ) allows."""

    default_localizer = RelevanceLocalizer

    def run(self, request: EditRequest) -> EditResult:
        """Edit `request.images`; its `mask` [B, H, W] bool overrides the localiser (3D passes the rendered
        relevance's). Outside the mask the latents follow the background's re-noised at every step, and the result
        is the background there, bit for bit."""
        images, background, generator = request.images, request.background, request.generator
        noise = self.draw_noise(images, generator)
        encoded = self.ip2p.encode_inputs(images, request.conditioning)
        found, mask = None, request.mask
        if mask is None:
            found = localize(self.localizer, images, request.instruction, request.conditioning, generator, encoded)
            mask = found.mask
        if self.config.dilate_px > 0:
            mask = relevance_mask(mask.float(), 0.5, self.config.dilate_px)
        region = found.soft if found is not None else None
        latents = self.denoise(encoded, request.instruction, request.strength, noise, mask,
                               self.background_latents(background, encoded), on_step=request.on_step, region=region,
                               generator=generator)
        edited = self.ip2p.decode_cropped(latents, images)
        result = composite(edited, background.float(), feathered_weights(mask, self.config.feather_px))
        return EditResult(images=result, relevance=found.as_map() if found is not None else None, mask=mask,
                          localization=found)
