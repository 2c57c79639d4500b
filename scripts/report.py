"""nerf-edit-report: what each run of an edit chain did, as pages readable offline (HTML with PNGs beside them).

For a wys run, one page per run of its chain (its `edit_history.json`; runs whose folders are gone are listed, not
drawn): for each training view the photo, the view the run started from (the previous run's result), the edited
view, its relevance target and the mask the edit was allowed in; the chain with each step's settings; and the
run's `nerf-edit-eval-scene` numbers when `<run>/eval/results.json` exists.
"""

from __future__ import annotations

import html
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
from PIL import Image

from nerf_edit import validate
from nerf_edit.core.io import atomic_write
from nerf_edit.errors import RunNotFoundError
from nerf_edit.scene.history import EditStep, previous_step, read_history
from nerf_edit.scene.store import EditStore
from nerf_edit_scripts.cli import run
from nerf_edit_scripts.shared import read_run_config, scene_frames

REPORT_FOLDER = "report"
# The settings shown for each step (all are in edit_history.json).
SHOWN_SETTINGS = ("model", "steps", "guidance_scale", "image_guidance_scale", "tau", "lower_bound", "upper_bound")


@dataclass
class Report:
    """Write one page per run of a wys run's edit chain: each training view's photo, starting view, edit, relevance
    target and mask, the chain's settings, and the run's evaluation numbers."""

    run: Path
    """Folder of a wys run (holds config.yml and edits/)."""
    output: Optional[Path] = None
    """Folder of the pages (default: <run>/report): index.html for this run, <run name>/index.html for each other
    run of the chain."""

    def validate(self) -> None:
        if not self.run.is_dir():
            raise RunNotFoundError(f"--run {str(self.run)!r} is not a folder: pass the folder of a wys run (it holds "
                                   f"config.yml and edits/)")
        read_run_config(self.run, "--run")
        if not (self.run / "edits").is_dir():
            raise RunNotFoundError(f"--run {str(self.run)!r} has no edits/ folder: pass a wys run that edited")
        validate.check_output_dir(self.output or self.run / REPORT_FOLDER, "--output")

    def main(self) -> Path:
        output = self.output or self.run / REPORT_FOLDER
        chain = chain_of(self.run)
        pages = {}
        for step in chain:
            folder = Path(step.run)
            if not (folder / "edits").is_dir():
                continue
            target = output if same_folder(folder, self.run) else output / page_name(folder)
            pages[step.run] = target
        for step in chain:
            if step.run in pages:
                write_page(Path(step.run), chain, pages, pages[step.run])
        index = pages.get(str(self.run), output) / "index.html"
        print(f"wrote {index} ({len(pages)} page{'s' if len(pages) != 1 else ''} for a chain of {len(chain)})")
        return index


def chain_of(run: Path) -> List[EditStep]:
    """The run's chain; a run older than the history file is a chain of its own one step."""
    chain = read_history(run)
    if chain:
        return chain
    step = previous_step(run, read_run_config(run, "--run").pipeline)
    return [step] if step is not None else []


def shown_settings(editor: str) -> tuple:
    """The settings worth showing for a step made with `editor`: the model only for editors that load IP2P (the
    colorkey demonstration editor and plug-ins of other kinds use none); an editor that can no longer be imported
    (a plug-in gone) shows all."""
    from nerf_edit.editing.editor import editor_class
    from nerf_edit.editing.ip2p_editor import IP2PEditor
    from nerf_edit.errors import UsageError

    try:
        uses_ip2p = issubclass(editor_class(editor), IP2PEditor)
    except UsageError:
        uses_ip2p = True
    return SHOWN_SETTINGS if uses_ip2p else tuple(key for key in SHOWN_SETTINGS if key != "model")


def same_folder(a: Path, b: Path) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def page_name(run: Path) -> str:
    """A folder name for a run's page: method and timestamp (`wys_2026-12-01_101010`)."""
    return f"{run.parent.name}_{run.name}"


def photos_of(run: Path) -> Dict[str, Path]:
    """View name -> the dataset's image file, from the run's config and its transforms.json."""
    config = read_run_config(run, "--run")
    data = Path(getattr(config.pipeline.datamanager, "data", None) or config.pipeline.datamanager.dataparser.data)
    transforms = data if data.suffix == ".json" else data / "transforms.json"
    if not transforms.is_file():
        return {}
    return dict(scene_frames(transforms))


def view_names(store: EditStore) -> List[str]:
    folders = [store.images_dir, store.relevance_dir, store.base_dir, store.masks_dir]
    return sorted({path.stem for folder in folders if folder.is_dir() for path in folder.iterdir()
                   if path.suffix in (".png", ".npy")})


def write_page(run: Path, chain: List[EditStep], pages: Dict[str, Path], folder: Path) -> None:
    """`folder`/index.html and `folder`/images/*.png for one run."""
    store = EditStore.for_run(run)
    images = folder / "images"
    if images.is_dir():
        shutil.rmtree(images)
    images.mkdir(parents=True)
    photos = photos_of(run)
    rows = []
    for name in view_names(store):
        cells = [html.escape(name)]
        for kind, source in (("photo", photos.get(name)), ("start", store.base_dir / f"{name}.png"),
                             ("edited", store.images_dir / f"{name}.png"), ("mask", store.masks_dir / f"{name}.png")):
            cells.append(picture(source, images / f"{name}_{kind}.png", kind, folder))
        relevance = store.relevance_dir / f"{name}.npy"
        cells.insert(4, picture_of_array(relevance, images / f"{name}_relevance.png", folder))
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    body = [f"<h1>Edit report: {html.escape(str(run))}</h1>", chain_table(chain, run, pages, folder),
            evaluation_table(run),
            "<h2>Training views</h2>",
            "<p>start: the view this run started from where it is not the photo (the previous edit's result); "
            "mask: the pixels the edit was allowed to change (white).</p>",
            "<table><tr><th>view</th><th>photo</th><th>start</th><th>edited</th><th>relevance target</th>"
            "<th>mask</th></tr>", *rows, "</table>"]
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>Edit report</title><style>"
            "body{font-family:sans-serif} table{border-collapse:collapse} td,th{border:1px solid #ccc;padding:4px;"
            "vertical-align:top;font-size:13px} img{width:128px;image-rendering:pixelated}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")
    atomic_write(folder / "index.html", lambda path: path.write_text(page))


def picture(source: Optional[Path], target: Path, alt: str, folder: Path) -> str:
    """The image `source` as a PNG beside the page (PNG files are copied as they are); '' when there is none."""
    if source is None or not Path(source).is_file():
        return ""
    if Path(source).suffix.lower() == ".png":
        shutil.copyfile(source, target)
    else:
        Image.open(source).convert("RGB").save(target)
    return f"<img src='{target.relative_to(folder)}' alt='{alt}'>"


def picture_of_array(source: Path, target: Path, folder: Path) -> str:
    """A relevance target [H, W] in [0, 1] as an 8-bit grey PNG (round(255·r))."""
    if not source.is_file():
        return ""
    values = np.clip(np.load(source), 0, 1)
    Image.fromarray(np.round(values * 255).astype(np.uint8), mode="L").save(target)
    return f"<img src='{target.relative_to(folder)}' alt='relevance'>"


def chain_table(chain: List[EditStep], run: Path, pages: Dict[str, Path], folder: Path) -> str:
    rows = []
    for number, step in enumerate(chain, 1):
        here = same_folder(Path(step.run), run)
        name = html.escape(step.run)
        if step.run in pages and not here:
            name = f"<a href='{os.path.relpath(pages[step.run] / 'index.html', folder)}'>{name}</a>"
        elif step.run not in pages:
            name += " (folder gone)"
        settings = ", ".join(f"{key} {step.settings.get(key)}" for key in shown_settings(step.editor)
                             if key in step.settings)
        rows.append(f"<tr{' style=font-weight:bold' if here else ''}><td>{number}</td><td>{name}</td>"
                    f"<td>{html.escape(step.continued_as)}</td><td>{html.escape(step.prompt)}</td>"
                    f"<td>{html.escape(step.editor)}</td><td>{html.escape(step.localizer)}</td>"
                    f"<td>{html.escape(settings)}</td><td>{len(step.views_changed)}</td></tr>")
    return ("<h2>Edit chain</h2><p>Undo: continue from an earlier run (<code>ns-train wys --load-dir "
            "&lt;run&gt;/nerfstudio_models --pipeline.prompt ...</code>).</p><table><tr><th>#</th><th>run</th>"
            "<th>continued as</th><th>prompt</th><th>editor</th><th>localizer</th><th>settings</th>"
            "<th>views changed</th></tr>" + "".join(rows) + "</table>")


def evaluation_table(run: Path) -> str:
    path = run / "eval" / "results.json"
    if not path.is_file():
        return "<p>No evaluation yet (<code>nerf-edit-eval-scene --run RUN</code> writes one).</p>"
    results = json.loads(path.read_text())
    rows = "".join(f"<tr><td>{html.escape(key)}</td><td>{value:.4f}</td></tr>" for key, value in results.items()
                   if isinstance(value, (int, float)))
    return f"<h2>Evaluation (nerf-edit-eval-scene)</h2><table>{rows}</table>"


def entrypoint() -> None:
    run(Report)


if __name__ == "__main__":
    entrypoint()
