"""An editor whose right answer is known, for end-to-end tests on the synthetic scene.

The instruction is taken to concern the red ball. Relevance is the ball's region, found by colour in the
original image; the edit turns the ball blue (red and blue channels swapped) and, like IP2P, also touches the
background a little (brighter by OVER_EDIT). With a mask, pixels outside it are the background's (default the
input), as the WYS editor guarantees; without one (the global editor), the over-edit reaches the whole view.
"""

import torch

from nerf_edit.editing.editor import Editor, EditRequest, EditResult

OVER_EDIT = 0.15


def red_region(images: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] -> [B, H, W] bool: clearly red pixels (the ball; floor and sky are not red)."""
    r, g, b = images.unbind(1)
    return (r > 0.25) & (r > 2 * g) & (r > 2 * b)


class OracleEditor(Editor):
    def __init__(self, config):
        super().__init__(config)
        self.relevance_calls = 0
        self.edit_calls = 0
        self.instructions = []

    def relevance(self, images, instruction, conditioning=None, generator=None):
        self.relevance_calls += 1
        self.instructions.append(instruction)
        return red_region(images).float()

    def run(self, request: EditRequest) -> EditResult:
        self.edit_calls += 1
        self.instructions.append(request.instruction)
        images, source = request.images, request.conditioning.to(request.images)
        ball = red_region(source)[:, None]
        edited = torch.where(ball, source[:, [2, 1, 0]], (source + OVER_EDIT).clamp(0, 1))
        if request.mask is not None:
            edited = torch.where(request.mask[:, None].to(images.device), edited, request.background.to(images))
        return EditResult(images=edited, mask=request.mask)


class RenderBackgroundOracleEditor(OracleEditor):
    """An editor that ignores the request's background (outside its mask it returns the render it was handed):
    the editor interface still keeps the photo there (`keep_background`)."""

    def run(self, request: EditRequest) -> EditResult:
        result = super().run(request)
        if request.mask is not None:
            result.images = torch.where(request.mask[:, None], result.images, request.images)
        return result


class NotAnEditor:
    """relevance() and edit() of the old duck-typed interface, no Editor: refused at start-up with one line."""

    def __init__(self, config):
        self.config = config

    def relevance(self, images, instruction, conditioning=None):
        return red_region(images).float()

    def edit(self, images, instruction, conditioning=None, mask=None, strength=1.0, generator=None):
        return EditResult(images=images)


class OriginalsOnlyOracleEditor(OracleEditor):
    """The oracle saying what is true of it (its relevance reads `images` alone): the 3D method renders no view for
    its relevance targets. For runs whose subject is not how relevance is conditioned."""

    relevance_reads_conditioning = False
