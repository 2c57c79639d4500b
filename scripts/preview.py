"""nerf-edit-preview: a 2D preview of a 3D edit before the run. A few training views of a nerfstudio scene are
edited as the 3D method edits them, over a small grid of the settings that matter, onto one contact sheet.

Per view and setting (text guidance s_T, image guidance s_I, τ, strength), what `ns-train wys` does to a view:
  relevance = editor.relevance(photo, prompt)                       (seeded)
  mask      = relevance >= τ
  edit      = editor.edit(photo, prompt, mask=mask, strength=s, generator=seeded)
with the method's own editor and localiser (any registered editor or plug-in) and its editor settings (`ns-train
wys`'s: 20 steps, s_I 1.5, ...; every editor flag overrides them). It is a preview, not the run: there is no render
yet, so the relevance is the photo's own (the run's is the original conditioned on its render, and its mask the
rendered relevance, normalised, >= τ, or the view's target >= τ), and the edit starts from the photo itself (the
run's starts from the render, conditioned on the photo). Every cell uses the same seed, so the rows of a view differ
by their settings only.

Writes to --output: preview.png (the contact sheet: a row per view and setting, columns photo | relevance (turbo,
fixed 0..1) | mask | edit), index.html (the same cells as separate full-size files in cells/, a label per row, and
the ns-train command for the chosen setting), preview.json (the rows, their files and settings). See docs/preview.md.
"""

from __future__ import annotations

import dataclasses
import html
import itertools
import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Dict, List, Optional, Tuple
from urllib.parse import quote

import numpy as np
import torch
import tyro

from nerf_edit import validate
from nerf_edit.config.editor import EditorConfig
from nerf_edit.core.io import atomic_save_image, atomic_write, load_image, to_uint8
from nerf_edit.core.progress import Progress
from nerf_edit.editing.editor import check_edit_settings, check_prompt, editor_class
from nerf_edit.errors import EditorError, ImageReadError, UsageError
from nerf_edit.scene.settings import EditSettings
from nerf_edit_methods.editor_settings import wys_editing
from nerf_edit_scripts.cli import run
from nerf_edit_scripts.shared import scene_frames

COLUMNS = ("photo", "relevance", "mask", "edit")
DEFAULT_VIEWS = 4
LEAST_LOWER_BOUND = 0.02  # ns-train wys's --pipeline.lower-bound
GRID_FLAGS = {"guidance_scale": "--guidance-scales", "image_guidance_scale": "--image-guidance-scales",
              "tau": "--taus"}  # the editor's single-value flags the grid replaces
NOT_PRINTED = set(GRID_FLAGS) | {"device"}  # editor settings never printed as ns-train flags (device: the NeRF's)


@dataclass(frozen=True)
class Setting:
    """One point of the grid; `number` is its label on the sheet (1, 2, ...)."""

    number: int
    guidance_scale: float
    image_guidance_scale: float
    tau: float
    strength: float

    def label(self) -> str:
        return (f"#{self.number}: s_T {self.guidance_scale:g}, s_I {self.image_guidance_scale:g}, tau {self.tau:g}, "
                f"strength {self.strength:g}")

    def bounds(self) -> Tuple[float, float]:
        """The 3D run's noise range for this preview strength s: [min(0.02, s), s]. The run draws each edit's
        strength in [lower, upper]; its strongest edits (the upper bound) decide how far the scene departs from
        the photos, which a preview edit at strength s shows, and the weaker ones down to the method's 0.02 make
        the views agree. s = 0.98 gives the method's default range [0.02, 0.98]."""
        return min(LEAST_LOWER_BOUND, self.strength), self.strength

    def flags(self) -> List[str]:
        lower, upper = self.bounds()
        return ["--pipeline.editing.guidance-scale", repr(self.guidance_scale),
                "--pipeline.editing.image-guidance-scale", repr(self.image_guidance_scale),
                "--pipeline.editing.tau", repr(self.tau),
                "--pipeline.lower-bound", repr(lower), "--pipeline.upper-bound", repr(upper)]


@dataclass
class View:
    name: str  # as the 3D run names it (the file stem; edits/images/<name>.png)
    path: Path


@dataclass
class Row:
    view: str
    setting: Setting
    cells: Dict[str, str]  # column -> file, relative to --output


@dataclass
class Preview:
    """Preview a 3D edit in 2D: edit a few training views of a scene with the method's editor over a grid of
    settings (text guidance, image guidance, tau, strength), onto one contact sheet (preview.png, index.html) with
    the ns-train flags of the chosen setting. The edits start from the photos themselves (there is no render yet)."""

    data: Optional[Path] = None
    """The nerfstudio scene folder (its transforms.json lists the training images)."""
    prompt: str = ""
    """The edit instruction, as --pipeline.prompt of the run, e.g. "turn the red ball blue"."""
    output: Path = Path("preview")
    """Folder for preview.png, index.html, preview.json and cells/ (created if missing)."""
    editor: str = "relevance"
    """The method's editor: `relevance` (WYS), `zone`, `global`, `colorkey`, `vimaedit`, or `package.module:Class`."""
    views: Optional[int] = None
    """How many views, spread evenly over the capture in frame order (default 4; every view if the scene has fewer)."""
    view_names: Tuple[str, ...] = ()
    """Views by name (their file stems, as the run names them) instead of --views."""
    guidance_scales: Tuple[float, ...] = (7.5,)
    """Text guidance s_T values of the grid (--pipeline.editing.guidance-scale)."""
    image_guidance_scales: Tuple[float, ...] = (1.5,)
    """Image guidance s_I values of the grid (--pipeline.editing.image-guidance-scale)."""
    taus: Tuple[float, ...] = (0.3, 0.5)
    """Relevance thresholds τ of the grid: mask = relevance >= τ (--pipeline.editing.tau)."""
    strengths: Tuple[float, ...] = (0.5, 0.98)
    """Noise levels the edits start from, in (0, 1] (the run's --pipeline.upper-bound; see docs/preview.md)."""
    pick: Optional[int] = None
    """The grid setting (#number on the sheet) whose ns-train flags are printed; default: the middle value of each
    list (the upper of two middles)."""
    seed: int = 0
    """Seed of every cell's relevance and edit noise (the same for all cells)."""
    cell_height: int = 160
    """Height of a cell on the sheet, px (the files in cells/ keep each view's own size)."""
    settings: Annotated[EditorConfig, tyro.conf.arg(name="")] = field(default_factory=wys_editing)
    """The editor's settings, ns-train wys's by default: model, device, steps, localizer, ... (flags without a
    prefix; guidance and tau come from the grid)."""

    @property
    def interrupted(self) -> str:
        return f"stopped: cells written so far are in {str(self.output / 'cells')!r}; the sheet is written at the end"

    # ------------------------------------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Every setting and the scene's views, before any image or model is loaded (one UsageError line each)."""
        validate.check_text("--prompt", self.prompt, "turn the red ball blue")
        self.select_views()
        self.check_grid()
        validate.check_output_dir(self.output, "--output")
        cls = check_edit_settings(self.editor, self.settings, "--", "--editor")
        check_prompt(cls, self.prompt)
        validate.check_seed(self.seed)
        validate.check_at_least("--cell-height", self.cell_height, 16)

    def check_grid(self) -> None:
        lists = {"--guidance-scales": self.guidance_scales, "--image-guidance-scales": self.image_guidance_scales,
                 "--taus": self.taus, "--strengths": self.strengths}
        for name, values in lists.items():
            if not values:
                raise UsageError(f"{name} is empty: give at least one value, e.g. {name} "
                                 f"{' '.join(map(str, getattr(Preview, name[2:].replace('-', '_'))))}")
        for value in self.guidance_scales:
            validate.check_range("--guidance-scales", value, 0)
        for value in self.image_guidance_scales:
            validate.check_range("--image-guidance-scales", value, 0)
        for value in self.taus:
            validate.check_range("--taus", value, 0, 1)
        for value in self.strengths:
            validate.check_range("--strengths", value, 0, 1, low_open=True)
        base = wys_editing()
        for name, flag in GRID_FLAGS.items():
            if getattr(self.settings, name) != getattr(base, name):
                raise UsageError(f"--{name.replace('_', '-')}: the preview tries a grid of these: use {flag} "
                                 f"{getattr(self.settings, name)} (one or more values)")
        if self.pick is not None and not 1 <= self.pick <= len(self.grid()):
            raise UsageError(f"--pick {self.pick}: the grid has settings #1 to #{len(self.grid())}")

    def select_views(self) -> List[View]:
        """The views to preview: --view-names, or --views spread evenly over the scene's frames (in the order the
        run reads them: sorted by file path)."""
        if self.views is not None and self.view_names:
            raise UsageError("pass --views or --view-names, not both")
        views = scene_views(self.data)
        if self.view_names:
            return named_views(views, self.view_names)
        wanted = DEFAULT_VIEWS if self.views is None else self.views
        validate.check_at_least("--views", wanted, 1)
        return [views[i] for i in spread(len(views), wanted)]

    # ------------------------------------------------------------------------------------------------ the run
    def grid(self) -> List[Setting]:
        """Every combination of the lists (duplicates dropped), numbered from 1."""
        lists = [dict.fromkeys(values) for values in (self.guidance_scales, self.image_guidance_scales, self.taus,
                                                       self.strengths)]
        return [Setting(number, *values) for number, values in enumerate(itertools.product(*lists), start=1)]

    def chosen(self, grid: List[Setting]) -> Setting:
        if self.pick is not None:
            return grid[self.pick - 1]
        middle = [sorted(dict.fromkeys(values))[len(dict.fromkeys(values)) // 2] for values in
                  (self.guidance_scales, self.image_guidance_scales, self.taus, self.strengths)]
        return next(s for s in grid if [s.guidance_scale, s.image_guidance_scale, s.tau, s.strength] == middle)

    def main(self) -> None:
        self.validate()
        views, grid = self.select_views(), self.grid()
        photos = [read_photo(view.path) for view in views]  # a bad file stops before any model loads
        editor = editor_class(self.editor)(dataclasses.replace(self.settings))
        rows, thumbnails = [], []
        with Progress("Preview", len(views) * len(grid), "edits", every=1, announce=True) as progress:
            for view, photo in zip(views, photos):
                relevance: Dict[tuple, torch.Tensor] = {}  # per view: (s_T, s_I, τ) -> [H, W]
                for setting in grid:
                    cells = self.edit_cell(editor, photo, setting, relevance)
                    rows.append(self.save_row(len(rows), view.name, setting, cells))
                    thumbnails.append([thumbnail(cells[column], self.cell_height) for column in COLUMNS])
                    progress.advance(status=f"{view.name} {setting.label()}")
        chosen = self.chosen(grid)
        command = self.command(chosen)
        atomic_save_image(self.output / "preview.png", contact_sheet(rows, thumbnails))
        self.write_page(rows, grid, chosen)
        atomic_write(self.output / "preview.json", lambda tmp: tmp.write_text(json.dumps(
            {"prompt": self.prompt, "editor": self.editor, "seed": self.seed, "chosen": chosen.number,
             "command": command, "rows": [dict(view=r.view, **dataclasses.asdict(r.setting), cells=r.cells)
                                          for r in rows]}, indent=2)))
        print(f"wrote {len(rows)} rows to {self.output / 'preview.png'} and {self.output / 'index.html'}")
        print(f"setting {chosen.label()}; for the 3D run:\n{command}")

    def edit_cell(self, editor, photo: torch.Tensor, setting: Setting, relevance: Dict[tuple, torch.Tensor]
                  ) -> Dict[str, np.ndarray]:
        """One view at one setting, as the 3D method edits it (from the photo): -> column -> uint8 image."""
        EditSettings(self.prompt, setting.guidance_scale, setting.image_guidance_scale, setting.tau).apply_to(
            editor.config)
        key = (setting.guidance_scale, setting.image_guidance_scale, setting.tau)
        if key not in relevance:
            found = editor.relevance(photo[None], self.prompt, generator=torch.Generator().manual_seed(self.seed))
            if found is None:
                raise EditorError(f"editor {self.editor!r} gave no relevance map for {self.prompt!r}, and the 3D "
                                  f"method's edit mask is cut from it (vimaedit: name what changes with "
                                  f"--vimaedit.source-prompt and --vimaedit.blend-words)")
            relevance[key] = found[0].detach().float().cpu()
        mask = relevance[key] >= setting.tau
        result = editor.edit(photo[None], self.prompt, mask=mask[None], strength=setting.strength,
                             generator=torch.Generator().manual_seed(self.seed))
        allowed = result.mask[0].cpu() if result.mask is not None else mask  # grown where the editor grows it
        return {"photo": to_uint8(photo), "relevance": colorize(relevance[key]), "mask": to_uint8(allowed.float()),
                "edit": to_uint8(result.images[0].float().cpu().clamp(0, 1))}

    def save_row(self, index: int, view: str, setting: Setting, cells: Dict[str, np.ndarray]) -> Row:
        files = {column: f"cells/{index:03d}_{view}_{column}.png" for column in COLUMNS}
        for column, name in files.items():
            atomic_save_image(self.output / name, cells[column])
        return Row(view, setting, files)

    # ------------------------------------------------------------------------------------------------ outputs
    def command(self, setting: Setting) -> str:
        """The ns-train command of a setting: the scene, prompt, editor, every editor setting given here that
        differs from the method's, and the setting's flags."""
        parts = ["ns-train", "wys", "--data", str(self.data), "--pipeline.prompt", self.prompt]
        if self.editor != "relevance":
            parts += ["--pipeline.editor", self.editor]
        parts += changed_flags(self.settings, wys_editing(), "--pipeline.editing.")
        return shlex.join(parts + setting.flags())

    def write_page(self, rows: List[Row], grid: List[Setting], chosen: Setting) -> None:
        head = "".join(f"<th>{column}</th>" for column in COLUMNS)
        body = "\n".join(
            f"<tr><td class=label><b>{html.escape(row.view)}</b><br>{html.escape(row.setting.label())}</td>"
            + "".join(f'<td><img src="{quote(row.cells[c])}" alt="{c}" title="{html.escape(row.cells[c])}"></td>'
                      for c in COLUMNS) + "</tr>" for row in rows)
        settings = "\n".join(f"<tr><td>{'<b>chosen</b> ' if s == chosen else ''}{html.escape(s.label())}</td>"
                             f"<td><code>{html.escape(shlex.join(s.flags()))}</code></td></tr>" for s in grid)
        page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Preview: {html.escape(self.prompt)}</title>
<style>body{{font-family:sans-serif}} img{{height:{self.cell_height}px;image-rendering:pixelated}}
td.label{{font-size:small;max-width:16em}} pre{{white-space:pre-wrap}}</style></head><body>
<h1>{html.escape(self.prompt)}</h1>
<p>editor {html.escape(self.editor)}, seed {self.seed}; each edit starts from the photo (no render yet);
relevance in turbo colours, 0 (dark blue) to 1 (dark red); mask: white where the edit may act. Sheet: <a href="preview.png">preview.png</a>.</p>
<table><tr><th>view, setting</th>{head}</tr>
{body}
</table>
<h2>Settings as ns-train flags</h2>
<table>{settings}</table>
<h2>The 3D run, setting #{chosen.number}</h2>
<pre id="command">{html.escape(self.command(chosen))}</pre>
</body></html>
"""
        atomic_write(self.output / "index.html", lambda tmp: tmp.write_text(page, encoding="utf-8"))


# ---------------------------------------------------------------------------------------------------- the scene
def scene_views(data: Optional[Path]) -> List[View]:
    """The training images transforms.json lists, sorted by file path (nerfstudio's frame order), named as the run
    names them. One UsageError line for a missing folder, file or image."""
    if data is None:
        raise UsageError("no --data given: pass the scene folder, e.g. --data data/synthetic")
    if not Path(data).is_dir():
        raise UsageError(f"--data {str(data)!r} is not a folder: pass a nerfstudio scene folder (with transforms.json)")
    transforms = Path(data) / "transforms.json"
    if not transforms.is_file():
        raise UsageError(f"--data {str(data)!r} has no transforms.json: pass a nerfstudio scene folder "
                         f"(ns-process-data makes one from photos or a video)")
    frames = scene_frames(transforms)
    if not frames:
        raise UsageError(f"{str(transforms)!r} lists no frames: the scene has no images")
    return [View(name, path) for name, path in frames]


def named_views(views: List[View], names: Tuple[str, ...]) -> List[View]:
    by_name = {view.name: view for view in views}
    for name in names:
        if name not in by_name:
            examples = ", ".join(view.name for view in views[:3])
            raise UsageError(f"--view-names: the scene has no view {name!r}: name views by file stem, e.g. {examples}")
    return [by_name[name] for name in dict.fromkeys(names)]


def spread(count: int, wanted: int) -> List[int]:
    """`wanted` of `count` frames evenly spaced over the capture: the middle of each of `wanted` equal stretches
    (every frame when `wanted` >= `count`)."""
    if wanted >= count:
        return list(range(count))
    return [(2 * i + 1) * count // (2 * wanted) for i in range(wanted)]


def read_photo(path: Path) -> torch.Tensor:
    if not path.is_file():
        raise ImageReadError(f"image {str(path)!r} listed in transforms.json does not exist: restore the images "
                             f"folder or regenerate the scene")
    photo = load_image(path)
    if min(photo.shape[-2:]) < 8:
        raise ImageReadError(f"image {str(path)!r} is {photo.shape[-1]}x{photo.shape[-2]}: at least 8x8 pixels are needed")
    return photo


# ---------------------------------------------------------------------------------------------------- pictures
def colorize(relevance: torch.Tensor) -> np.ndarray:
    """[H, W], fixed range 0..1 -> uint8 [H, W, 3] with matplotlib's turbo colour map."""
    from matplotlib import colormaps

    return to_uint8(colormaps["turbo"](relevance.detach().cpu().float().clamp(0, 1).numpy())[..., :3])


def thumbnail(cell: np.ndarray, height: int):
    """A cell as an RGB PIL image `height` px high (nearest when enlarged: pixels stay visible)."""
    from PIL import Image

    image = Image.fromarray(cell).convert("RGB")
    width = max(1, round(image.width * height / image.height))
    resample = Image.Resampling.NEAREST if height >= image.height else Image.Resampling.LANCZOS
    return image.resize((width, height), resample)


def contact_sheet(rows: List[Row], thumbnails: List[list]) -> np.ndarray:
    """A label column and the four cells of every row, under a header; rows of other widths padded white."""
    from PIL import Image, ImageDraw

    font = sheet_font()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    labels = [f"{row.view}\n{row.setting.label().replace(', ', chr(10))}" for row in rows]
    label_width = 8 + max(measure.multiline_textbbox((0, 0), text, font=font)[2] for text in labels)
    label_height = max(measure.multiline_textbbox((0, 0), text, font=font)[3] for text in labels)
    widths = [max(cells[c].width for cells in thumbnails) + 4 for c in range(len(COLUMNS))]
    heights = [max(cells[0].height, label_height) + 4 for cells in thumbnails]
    header = 20
    sheet = Image.new("RGB", (label_width + sum(widths), header + sum(heights)), "white")
    draw = ImageDraw.Draw(sheet)
    for c, column in enumerate(COLUMNS):
        draw.text((label_width + sum(widths[:c]) + 2, 4), column, fill="black", font=font)
    top = header
    for text, cells, height in zip(labels, thumbnails, heights):
        draw.multiline_text((4, top + 2), text, fill="black", font=font)
        for c, cell in enumerate(cells):
            sheet.paste(cell, (label_width + sum(widths[:c]) + 2, top + 2))
        top += height
    return np.asarray(sheet)


def sheet_font():
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=12)
    except (TypeError, ImportError, OSError):  # an older Pillow or one without FreeType: the bitmap font
        return ImageFont.load_default()


def changed_flags(config, base, prefix: str, skip=NOT_PRINTED) -> List[str]:
    """`prefix`-named flags for every setting of `config` (an EditorConfig, nested settings included) that differs
    from `base`'s, but those in `skip`, as ns-train spells them (`--name True` for a boolean)."""
    flags: List[str] = []
    for item in dataclasses.fields(config):
        value, default = getattr(config, item.name), getattr(base, item.name)
        flag = prefix + item.name.replace("_", "-")
        if item.name in skip or value == default:
            continue
        if dataclasses.is_dataclass(value):
            flags += changed_flags(value, default, flag + ".", skip=())
        elif isinstance(value, bool):
            flags += [flag, str(value)]  # ns-train's booleans take a value (tyro's FlagConversionOff)
        elif isinstance(value, (tuple, list)):
            flags += [flag, *map(str, value)]
        else:
            flags += [flag, repr(value) if isinstance(value, float) else str(value)]
    return flags


def entrypoint() -> None:
    run(Preview)


if __name__ == "__main__":
    entrypoint()
