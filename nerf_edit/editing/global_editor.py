"""Plain InstructPix2Pix as an editor (instruct-nerf2nerf's behaviour): no localisation."""

from __future__ import annotations

from nerf_edit.editing.editor import EditRequest, EditResult
from nerf_edit.editing.ip2p_editor import IP2PEditor


class GlobalEditor(IP2PEditor):
    """Plain InstructPix2Pix (instruct-nerf2nerf's behaviour): the whole image is edited, and without `--localizer`
    its relevance is 1 everywhere. A caller's mask is applied to the result as to every editor's (`Editor.edit`
    keeps the background outside it). Full-strength edits start from pure noise, as diffusers' pipeline."""

    default_start = "noise"

    def run(self, request: EditRequest) -> EditResult:
        images = request.images
        noise = self.draw_noise(images, request.generator)
        latents = self.denoise(self.ip2p.encode_inputs(images, request.conditioning), request.instruction,
                               request.strength, noise, on_step=request.on_step)
        return EditResult(images=self.ip2p.decode_cropped(latents, images))
