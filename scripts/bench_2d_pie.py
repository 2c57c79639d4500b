"""nerf-edit-bench-2d: run one of our editors on PIE-Bench and measure it as PnP-Inversion does.

Reads a PIE-Bench folder (mapping_file.json + annotation_images/), edits every image, writes the edited images
(`<output>/images/<image_path>.png`), one row of metrics per image (`<output>/rows-<process>.jsonl`), and, when
all are done, the table: `<output>/metrics.csv` (per image) and `<output>/summary.json` / `summary.md` (means in
PnP-Inversion's units beside the published ViMAEdit and P2P numbers).

Editors: `vimaedit` gets each image's source prompt, target prompt and blend words; the IP2P editors (`relevance`,
`global`, `zone`, ...) get the editing instruction when the dataset has one, else the target prompt.
Resumable: images with an edited file and a metrics row are skipped. Sharded over processes with
`accelerate launch --num_processes N -m nerf_edit_scripts.bench_2d_pie ...` (image i goes to process i mod N).
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
from PIL import Image

from nerf_edit.config.vimaedit import ViMAEditConfig, departures_from_official, official_vimaedit_config
from nerf_edit.core.io import atomic_save_image, atomic_write
from nerf_edit.core.progress import Progress
from nerf_edit.editing.editor import editor_class
from nerf_edit.errors import ImageReadError, UsageError
from nerf_edit.eval import pie_bench
from nerf_edit_scripts.cli import run


@dataclass
class BenchPie:
    """Edit every PIE-Bench image with one editor and write the PnP-Inversion metrics table."""

    data: Path
    """PIE-Bench folder: mapping_file.json and annotation_images/."""
    output: Path
    """Folder for edited images, per-image rows and the summary (re-running resumes)."""
    editor: str = "vimaedit"
    """Editor: `vimaedit`, an IP2P editor name (relevance, global, zone, ...) or `package.module:Class`."""
    model: str = "timbrooks/instruct-pix2pix"
    """IP2P-architecture weights of IP2P editors (hub id, folder or `tiny`)."""
    steps: int = 50
    """Denoising steps of IP2P editors (ViMAEdit's are --vimaedit.steps)."""
    vimaedit: ViMAEditConfig = field(default_factory=official_vimaedit_config)
    """ViMAEdit settings (prompts and blend words come from the dataset). The defaults here are the official run's
    (`--vimaedit.ip-ordering official`, `--vimaedit.composite False`, `--vimaedit.timestep-offset 1`), so the table's
    row sits beside the published ones honestly; the row's label names any of these changed."""
    seed: int = 1234
    """Seed of each image's edit (the official runner's)."""
    limit: int = 0
    """Edit only the first N images (0: all)."""
    device: str = "auto"
    """Device of the editor and the metrics."""
    dino_model: str = pie_bench.DINO_MODEL_ID
    """DINO ViT of the structure distance (hub id, folder, or `tiny`)."""
    clip_model: str = pie_bench.CLIP_L14_ID
    """CLIP of the CLIP similarities (hub id, folder, or `tiny`)."""
    lpips: str = pie_bench.LPIPS_NET
    """LPIPS network (`squeeze`, as PnP) or `tiny` (random backbone, offline tests)."""

    def validate(self) -> None:
        from nerf_edit import validate

        if not Path(self.data).is_dir():
            raise UsageError(f"--data {str(self.data)!r} is not a folder: pass a PIE-Bench folder (mapping_file.json, "
                             "annotation_images/)")
        pie_bench.load_mapping(self.data)
        validate.check_output_dir(self.output)
        validate.check_at_least("--limit", self.limit, 0)
        validate.check_at_least("--steps", self.steps, 1)
        validate.check_seed(self.seed)
        validate.check_device(self.device)
        editor_class(self.editor, "--editor")

    def main(self) -> None:
        from accelerate import PartialState

        state = PartialState()
        device = self.device if self.device != "auto" else str(state.device)
        items = pie_bench.load_mapping(self.data)
        if self.limit:
            items = items[: self.limit]
        output = Path(self.output)
        done = finished_keys(output)
        mine = [item for index, item in enumerate(items) if index % state.num_processes == state.process_index]
        todo = [item for item in mine if item.key not in done or not edited_path(output, item).is_file()]
        log(f"process {state.process_index}/{state.num_processes}: {len(mine)} images, {len(mine) - len(todo)} "
            f"already done, {len(todo)} to edit")
        if todo:
            editor = build_editor(self, device)
            metrics = pie_bench.PieMetrics(self.dino_model, self.clip_model, self.lpips, device)
            rows_file = output / f"rows-{state.process_index}.jsonl"
            with Progress("PIE-Bench", len(todo), "images", every=1,
                          line=lambda done, total, rate, elapsed, status: f"[{done}/{total}] {status}") as progress:
                for item in todo:
                    began = time.perf_counter()
                    row = edit_and_measure(self, editor, metrics, item, output)
                    append_row(rows_file, row)
                    progress.advance(status=f"{item.key} edited and measured in {time.perf_counter() - began:.1f} s")
        state.wait_for_everyone()
        if state.is_main_process:
            write_table(output, [item.key for item in items], row_label(self))


def log(message: str) -> None:
    print(message, flush=True)


def append_row(path: Path, row: Dict) -> None:
    """One JSON line per image, flushed: a crash loses at most the image being written; a line cut by one is
    closed first so the new row stays readable."""
    cut = path.is_file() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
    with open(path, "a") as handle:
        handle.write(("\n" if cut else "") + json.dumps(row) + "\n")
        handle.flush()


def edited_path(output: Path, item: pie_bench.PieItem) -> Path:
    return output / "images" / Path(item.image_path).with_suffix(".png")


def finished_keys(output: Path) -> set:
    keys = set()
    for rows in Path(output).glob("rows-*.jsonl"):
        for line in rows.read_text().splitlines():
            if line.strip():
                try:
                    keys.add(json.loads(line)["key"])
                except (json.JSONDecodeError, KeyError):
                    continue  # a line cut by a crash: that image is redone
    return keys


def build_editor(command: BenchPie, device: str):
    from nerf_edit.config.editor import EditorConfig
    config = EditorConfig(model=command.model, device=device, steps=command.steps)
    config.vimaedit = command.vimaedit
    return editor_class(command.editor)(config)


def load_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"))
    except (OSError, ValueError) as error:
        raise ImageReadError(f"cannot read image {str(path)!r} ({type(error).__name__}): check the PIE-Bench folder") from error


def edit_and_measure(command: BenchPie, editor, metrics: pie_bench.PieMetrics, item: pie_bench.PieItem,
                     output: Path) -> Dict:
    source = load_rgb(Path(command.data) / pie_bench.IMAGES_FOLDER / item.image_path)  # [H, W, 3] uint8
    images = torch.from_numpy(source).permute(2, 0, 1)[None].float() / 255
    generator = torch.Generator().manual_seed(command.seed)
    if hasattr(editor, "edit_prompts"):
        result = editor.edit_prompts(images, item.source_prompt, item.target_prompt, item.blend_words, generator=generator)
    else:
        result = editor.edit(images, item.instruction or item.target_prompt, generator=generator)
    path = edited_path(output, item)
    atomic_save_image(path, result.images[0].detach().cpu())
    edited = load_rgb(path)  # measured as saved (8 bits), as PnP measures its saved files
    mask = pie_bench.decode_rle(item.mask_rle, source.shape[:2])
    row = {"key": item.key, "image_path": item.image_path}
    row.update(metrics.all(source, edited, mask, item.target_prompt))
    return row


def row_label(command: BenchPie) -> str:
    """What made our row: ViMAEdit's official preset, or which of its settings differ from it; another editor."""
    if command.editor != "vimaedit":
        return f"ours: {command.editor}"
    departures = departures_from_official(command.vimaedit)
    if not departures:
        return "ours: ViMAEdit, official preset"
    changed = ", ".join(f"{name}={value}" for name, value in departures.items())
    return f"ours: ViMAEdit, {changed} (not the official run's)"


def write_table(output: Path, keys: List[str], label: str) -> None:
    rows = {}
    for rows_file in sorted(Path(output).glob("rows-*.jsonl")):
        for line in rows_file.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            rows[row["key"]] = row
    ordered = [rows[key] for key in keys if key in rows]

    def write_csv(tmp: Path) -> None:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["key", "image_path", *pie_bench.METRICS])
            writer.writeheader()
            for row in ordered:
                writer.writerow({name: row.get(name) for name in writer.fieldnames})

    atomic_write(output / "metrics.csv", write_csv)
    summary = pie_bench.summarize(ordered)
    atomic_write(output / "summary.json", lambda tmp: tmp.write_text(json.dumps(
        {"images": len(ordered), "label": label, "ours": summary, "published": pie_bench.PUBLISHED}, indent=1)))
    header = ["", "structure ×10³ ↓", "PSNR ↑", "LPIPS ×10³ ↓", "MSE ×10⁴ ↓", "SSIM ×10² ↑", "CLIP whole ↑", "CLIP edited ↑"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, values in [(f"{label} ({len(ordered)} images)", summary), *pie_bench.PUBLISHED.items()]:
        cells = ["n/a" if values[m] is None else f"{values[m]:.2f}" for m in pie_bench.METRICS]
        lines.append("| " + " | ".join([name, *cells]) + " |")
    table = "\n".join(lines) + "\n"
    atomic_write(output / "summary.md", lambda tmp: tmp.write_text(table))
    log(table)


def entrypoint() -> None:
    run(BenchPie)


if __name__ == "__main__":
    entrypoint()
