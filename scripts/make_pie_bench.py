"""nerf-edit-make-pie-bench: a small folder in PIE-Bench's layout (mapping_file.json + annotation_images/) with
synthetic images, so the PIE-Bench runner and its metrics can be tested offline. Deterministic from the seed.

Each image is a coloured ball or box on a two-tone checker floor; its mask (run-length, as PIE-Bench) is the
object; the prompts change the object's colour, the blend words name the object."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nerf_edit.core.io import atomic_save_image, atomic_write
from nerf_edit.eval.pie_bench import IMAGES_FOLDER, MAPPING_FILE, encode_rle
from nerf_edit_scripts.cli import run

COLORS = {"red": (0.85, 0.12, 0.1), "blue": (0.12, 0.25, 0.85), "green": (0.15, 0.7, 0.2), "yellow": (0.9, 0.8, 0.1)}


def draw(size: int, shape: str, color: tuple, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """-> (image [H, W, 3] float in [0, 1], object mask [H, W] bool)"""
    ys, xs = np.mgrid[0:size, 0:size] / size
    checker = ((np.floor(xs * 6) + np.floor(ys * 6)) % 2)[..., None]
    image = checker * np.array([0.82, 0.78, 0.68]) + (1 - checker) * np.array([0.45, 0.42, 0.36])
    cx, cy, radius = rng.uniform(0.35, 0.65), rng.uniform(0.35, 0.65), rng.uniform(0.15, 0.25)
    if shape == "ball":
        mask = (xs - cx) ** 2 + (ys - cy) ** 2 < radius**2
    else:
        mask = (np.abs(xs - cx) < radius) & (np.abs(ys - cy) < radius)
    shade = 0.75 + 0.25 * (1 - ys)[..., None]
    image = np.where(mask[..., None], np.array(color) * shade, image)
    return image, mask


@dataclass
class MakePieBench:
    """Write a PIE-Bench-shaped folder of synthetic edits."""

    output: Path
    """Folder to create (mapping_file.json, annotation_images/)."""
    count: int = 4
    """Number of images."""
    size: int = 64
    """Image side in pixels (PIE-Bench: 512)."""
    seed: int = 0
    """Random seed."""

    def validate(self) -> None:
        from nerf_edit import validate

        validate.check_at_least("--count", self.count, 1)
        validate.check_at_least("--size", self.size, 16)
        validate.check_seed(self.seed)
        validate.check_output_dir(self.output)

    def main(self) -> None:
        write_pie_bench(self.output, self.count, self.size, self.seed)
        print(f"wrote {self.count} images to {self.output}")


def write_pie_bench(output: Path, count: int = 4, size: int = 64, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    names = list(COLORS)
    mapping = {}
    for index in range(count):
        shape = ("ball", "box")[index % 2]
        source, target = names[index % len(names)], names[(index + 1) % len(names)]
        image, mask = draw(size, shape, COLORS[source], rng)
        key = f"{index:012d}"
        relative = f"0_synthetic/{key}.png"
        atomic_save_image(Path(output) / IMAGES_FOLDER / relative, image)
        mapping[key] = {
            "image_path": relative,
            "original_prompt": f"a [{source}] {shape} on the floor",
            "editing_prompt": f"a [{target}] {shape} on the floor",
            "editing_instruction": f"turn the {shape} {target}",
            "editing_type_id": "0",
            "blended_word": f"{shape} {shape}",
            "mask": encode_rle(mask),
        }
    atomic_write(Path(output) / MAPPING_FILE, lambda tmp: tmp.write_text(json.dumps(mapping, indent=1)))
    return mapping


def entrypoint() -> None:
    run(MakePieBench)


if __name__ == "__main__":
    entrypoint()
