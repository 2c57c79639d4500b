"""nerf-edit-image: edit images by text instruction, only where the instruction acts (Watch Your Steps, ZONE)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, List

import numpy as np
import torch
import tyro

from nerf_edit import validate
from nerf_edit.config.editor import EditorConfig
from nerf_edit.config.presets import official_vimaedit_editor_config, official_zone_config
from nerf_edit.core.checks import check_instruction
from nerf_edit.core.io import IMAGE_SUFFIXES, atomic_save_image, load_image, to_uint8
from nerf_edit.editing.editor import check_edit_settings, editor_class
from nerf_edit.errors import ImageReadError
from nerf_edit_scripts.cli import run


@dataclass
class EditImage:
    """Edit one image or a folder of images by instruction; writes the edit, a relevance map and a mask overlay
    (and with ZONE: the rough and refined masks and the globally edited canvas)."""

    input: Path
    """An image file, or a folder of images."""
    instruction: str
    """What to change, e.g. "turn the ball blue"."""
    output: Path = Path("edited")
    """Folder for <name>_edited.png, _relevance.png, _mask.png (and _rough_mask.png, _refined_mask.png, _canvas.png)."""
    editor: str = "relevance"
    """`relevance` (WYS), `zone` (ZONE), `global` (plain IP2P), `colorkey` (rule-based demonstration editor, not
    IP2P: recolours the named source colour, e.g. "turn the red ball blue"), or an import path `package.module:Class`."""
    seed: int = 0
    """Seed of the diffusion noise."""
    source_prompt: str = ""
    """ViMAEdit: what the input shows, e.g. "a cat on a bench" (sets --vimaedit.source-prompt)."""
    target_prompt: str = ""
    """ViMAEdit: what the edit should show (default: the instruction; sets --vimaedit.target-prompt)."""
    blend_words: str = ""
    """ViMAEdit: the source prompt's word and the target prompt's naming what changes, e.g. "cat dog" (the vimaedit
    localizer: words of the instruction); sets --vimaedit.blend-words."""
    zone_size_rule: bool = False
    """ZONE's size rule before editing (lsl001006/ZONE ptp_utils.py `check_image_size`, the zone-official preset's):
    a longest side above 512 resized to 512, both sides padded black to multiples of 32; the padded edit is written,
    as the official code does."""
    settings: Annotated[EditorConfig, tyro.conf.arg(name="")] = field(default_factory=EditorConfig)
    """Model, device, steps, guidance, tau, ... (flags without a prefix)."""

    def validate(self) -> None:
        """Every setting, before any model or image is loaded (one UsageError line each)."""
        for name in ("source_prompt", "target_prompt", "blend_words"):  # the short flags win over --vimaedit.*
            if getattr(self, name):
                setattr(self.settings.vimaedit, name, getattr(self, name))
        check_instruction(self.instruction)
        for path in self.find_inputs():
            check_image_header(path)
        validate.check_output_dir(self.output, "--output")
        # Each editor checks what it reads: IP2P's weights for IP2P editors, ZONE's for zone (or its localiser), ...
        check_edit_settings(self.editor, self.settings, "--", "--editor")
        validate.check_seed(self.seed)

    def main(self) -> None:
        self.validate()
        inputs = self.find_inputs()
        images = [load_image(path) for path in inputs]  # fail on a bad file before loading any model
        if self.zone_size_rule:
            from nerf_edit.zone.ops import check_image_size

            images = [check_image_size(image) for image in images]
        editor = editor_class(self.editor)(self.settings)
        from rich.progress import track

        for path, image in track(list(zip(inputs, images)), description="Editing", transient=True):
            generator = torch.Generator().manual_seed(self.seed)
            result = editor.edit(image[None], self.instruction, generator=generator)
            relevance = result.relevance
            if relevance is None and hasattr(editor, "relevance"):
                relevance = editor.relevance(image[None], self.instruction,
                                             generator=torch.Generator().manual_seed(self.seed))
            self.write(path.stem, image, result.images[0], relevance[0] if relevance is not None else None,
                       result.mask[0] if result.mask is not None else None)
            self.write_localization(path.stem, image, getattr(result, "localization", None))
        print(f"wrote {len(inputs)} edit(s) to {self.output}")

    def find_inputs(self) -> List[Path]:
        if self.input.is_dir():
            inputs = sorted(p for p in self.input.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not inputs:
                raise ImageReadError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {str(self.input)!r}")
            return inputs
        if not self.input.exists():
            raise ImageReadError(f"--input {str(self.input)!r} does not exist: pass an image file or a folder of images")
        return [self.input]

    def write(self, name: str, image: torch.Tensor, edited: torch.Tensor, relevance, mask) -> None:
        atomic_save_image(self.output / f"{name}_edited.png", edited)
        if relevance is not None:
            atomic_save_image(self.output / f"{name}_relevance.png", colorize(relevance))
        if mask is not None:
            atomic_save_image(self.output / f"{name}_mask.png", overlay(image, mask))

    def write_localization(self, name: str, image: torch.Tensor, found) -> None:
        """ZONE's intermediate pictures, when the localisation has them: rough mask M_b, refined mask M_f
        (overlays) and the canvas I_sty."""
        for key in ("rough_mask", "refined_mask"):
            mask = getattr(found, key, None)
            if mask is not None:
                atomic_save_image(self.output / f"{name}_{key}.png", overlay(image, mask[0].cpu()))
        canvas = getattr(found, "canvas", None)
        if canvas is not None:
            atomic_save_image(self.output / f"{name}_canvas.png", canvas[0])
        if getattr(found, "actions", None):
            by = getattr(found, "action_classifier", "")
            print(f"{name}: {found.actions[0]} edit" + (f" (decided by the {by})" if by else ""))


def check_image_header(path: Path) -> None:
    """An image file PIL can identify, of at least 8x8 pixels (reads the header only)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError) as error:
        raise ImageReadError(f"cannot read image {str(path)!r} ({type(error).__name__}): pass an image file "
                             f"({', '.join(IMAGE_SUFFIXES)})") from error
    if width < 8 or height < 8:
        raise ImageReadError(f"image {str(path)!r} is {width}x{height}: at least 8x8 pixels are needed")


def colorize(relevance: torch.Tensor) -> np.ndarray:
    """[H, W] in [0, 1] -> uint8 [H, W, 3] with matplotlib's turbo colour map."""
    from matplotlib import colormaps

    return to_uint8(colormaps["turbo"](relevance.detach().cpu().float().clamp(0, 1).numpy())[..., :3])


def overlay(image: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """The image [3, H, W] with the mask [H, W] tinted red: what the edit was allowed to change."""
    tinted = image.clone()
    red = torch.tensor([1.0, 0.0, 0.0])[:, None]
    tinted[:, mask] = 0.5 * tinted[:, mask] + 0.5 * red
    return to_uint8(tinted)


PRESETS = {
    "zone-official": ("ZONE as its authors run it: --editor zone, 20 DPM-Solver++ steps ending at sigma_min, "
                      "guidance 7.5 / image 1.5, the edge smoother on grey levels, its size rule (longest side "
                      "<= 512, sides padded to multiples of 32)",
                      lambda: EditImage(input=tyro.MISSING, instruction=tyro.MISSING, editor="zone",
                                        zone_size_rule=True, settings=official_zone_config())),
    "vimaedit-official": ("ViMAEdit as its authors run it: --editor vimaedit, their IP-Adapter order, no composite, "
                          "offset-1 timesteps",
                          lambda: EditImage(input=tyro.MISSING, instruction=tyro.MISSING, editor="vimaedit",
                                            settings=official_vimaedit_editor_config())),
}


def entrypoint() -> None:
    run(EditImage, PRESETS)


if __name__ == "__main__":
    entrypoint()
