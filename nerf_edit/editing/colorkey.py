"""A rule-based colour-key editor: a DEMONSTRATION editor, not InstructPix2Pix.

It reads two colour words from the instruction ("turn the red ball blue": source red, target blue) and
  relevance = how much each pixel has the source colour's hue (soft, in [0, 1]),
  edit      = the conditioning view recoloured to the target hue (shading and saturation kept), inside the mask;
              pixels outside the mask are exactly the input's, as with every editor.
It needs no weights and runs anywhere, so `make demo` can show WYS's promise (the object changes in 3D, the rest
of the scene does not) on machines without the real IP2P weights. It understands colours, not objects: every
pixel of the source colour is relevant, whatever it belongs to.

It is an `Editor` (`nerf_edit.editing.Editor`) and is constructed as `ColorKeyEditor(EditorConfig)`; of
the config it uses `tau` (mask = relevance >= tau when no mask is given) and `dilate_px`. `model`, the guidance
scales, steps and `strength` have no meaning for it and are ignored.
"""

from __future__ import annotations

import re
from typing import Optional

import torch

from nerf_edit.config.editor import EditorConfig
from nerf_edit.core.checks import check_images, check_instruction
from nerf_edit.core.masks import dilate
from nerf_edit.editing.editor import Editor, EditRequest, EditResult
from nerf_edit.errors import EditorError

# Hue (degrees on the HSV circle) of each colour word the editor understands; aliases share a hue.
HUES = {
    "red": 0.0,
    "orange": 30.0,
    "yellow": 60.0,
    "green": 120.0,
    "cyan": 180.0,
    "blue": 230.0,
    "purple": 275.0,
    "violet": 275.0,
    "magenta": 300.0,
    "pink": 330.0,
}
HUE_TOLERANCE = 35.0
"""A pixel's hue this many degrees or more from the source hue is not relevant (linear ramp up to the hue)."""
SATURATION_RANGE = (0.25, 0.45)
"""Relevance ramps from 0 to 1 over this HSV saturation range: greys, whites and the beige floor are not keyed."""
MIN_VALUE = 0.08
"""Pixels darker than this (HSV value) are not keyed: their hue is noise."""

_COLOUR_WORD = re.compile(r"\b(" + "|".join(HUES) + r")\b")


def parse_instruction(instruction: str) -> tuple[str, str]:
    """("turn the red ball blue") -> ("red", "blue"): the first and the last colour word named.

    Raises EditorError (one line) when the instruction does not name two different colours."""
    check_instruction(instruction)
    words = _COLOUR_WORD.findall(instruction.lower())
    if len(words) < 2 or HUES[words[0]] == HUES[words[-1]]:
        raise EditorError(
            f"the colorkey demonstration editor can't read a source and a target colour from {instruction!r}: "
            f"name both, e.g. 'turn the red ball blue' (colours: {', '.join(HUES)})"
        )
    return words[0], words[-1]


def hue_saturation_value(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[B, 3, H, W] RGB in [0, 1] -> hue in degrees [0, 360), saturation, value; each [B, H, W]."""
    images = images.float().clamp(0, 1)
    value, argmax = images.max(dim=1)
    chroma = value - images.min(dim=1).values
    r, g, b = images.unbind(1)
    safe = chroma.clamp_min(1e-8)
    hue = torch.where(argmax == 0, ((g - b) / safe) % 6, torch.where(argmax == 1, (b - r) / safe + 2, (r - g) / safe + 4))
    hue = torch.where(chroma > 0, hue * 60.0, torch.zeros_like(hue))
    saturation = torch.where(value > 0, chroma / value.clamp_min(1e-8), torch.zeros_like(value))
    return hue, saturation, value


def pure_colour(hue: float) -> torch.Tensor:
    """The fully saturated, full-value RGB of `hue` degrees -> [3] (max 1, min 0)."""
    h = torch.tensor(hue / 60.0)
    k = (torch.tensor([5.0, 3.0, 1.0]) + h) % 6
    return 1 - torch.clamp(torch.minimum(k, 4 - k), 0, 1)


def colour_key(images: torch.Tensor, hue: float) -> torch.Tensor:
    """How much each pixel has `hue`: [B, 3, H, W] -> [B, H, W] in [0, 1]."""
    pixel_hue, saturation, value = hue_saturation_value(images)
    distance = (pixel_hue - hue).abs()
    distance = torch.minimum(distance, 360.0 - distance)  # around the hue circle
    hue_match = (1 - distance / HUE_TOLERANCE).clamp(0, 1)
    low, high = SATURATION_RANGE
    saturation_match = ((saturation - low) / (high - low)).clamp(0, 1)
    return hue_match * saturation_match * (value >= MIN_VALUE).float()


def recolour(images: torch.Tensor, hue: float) -> torch.Tensor:
    """Replace the hue of every pixel by `hue`, keeping its HSV saturation and value (so shading stays):
    min + chroma · pure colour. Greys (no chroma) are unchanged. [B, 3, H, W] -> [B, 3, H, W]"""
    images = images.float()
    low = images.min(dim=1, keepdim=True).values  # [B, 1, H, W]
    chroma = images.max(dim=1, keepdim=True).values - low
    return low + chroma * pure_colour(hue).to(images.device)[None, :, None, None]


class ColorKeyEditor(Editor):
    """Demonstration editor (not IP2P): recolours the instruction's source colour to its target colour.

    relevance(images) keys the source colour in `images` (the 3D method passes the original view there);
    the edit recolours the conditioning view inside the mask (relevance of the conditioning view >= tau when no
    mask is given) and keeps the background outside it."""

    is_demonstration = True
    # relevance() reads `images` alone: the 3D method renders no view to compute its relevance targets.
    relevance_reads_conditioning = False

    def __init__(self, config: Optional[EditorConfig] = None):
        super().__init__(config if config is not None else EditorConfig())

    @staticmethod
    def check_prompt(instruction: str) -> None:
        """EditorError unless the instruction names a source and a target colour."""
        parse_instruction(instruction)

    def relevance(
        self,
        images: torch.Tensor,
        instruction: str,
        conditioning: Optional[torch.Tensor] = None,
        generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        """Where `images` have the source colour -> [B, H, W] in [0, 1]."""
        check_images(images)
        source, _ = parse_instruction(instruction)
        return colour_key(images, HUES[source])

    def run(self, request: EditRequest) -> EditResult:
        """Recolour the conditioning view to the target colour inside the request's mask (default: its relevance
        >= tau), grown by dilate_px; the background elsewhere. `strength`, `generator` and `on_step` are ignored."""
        source, target = parse_instruction(request.instruction)
        conditioning = request.conditioning.to(request.images.device)
        relevance, mask = None, request.mask
        if mask is None:
            relevance = colour_key(conditioning, HUES[source])
            mask = relevance >= self.config.tau
        mask = dilate(mask, self.config.dilate_px)
        recoloured = recolour(conditioning, HUES[target]).to(request.images.dtype)
        edited = torch.where(mask[:, None], recoloured, request.background.to(recoloured))
        return EditResult(images=edited, relevance=relevance, mask=mask)
