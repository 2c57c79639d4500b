"""nerf-edit-eval: compare renders of an edited scene with renders of the original along the same camera path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from nerf_edit import validate
from nerf_edit.core.io import IMAGE_SUFFIXES, load_image
from nerf_edit.errors import ImageReadError, UsageError
from nerf_edit.eval.metrics import CLIP_MODEL_ID, ClipEmbedder, edit_metrics
from nerf_edit_scripts.cli import run
from nerf_edit_scripts.shared import check_clip_model, write_results

VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".avi")


def load_frames(source: Path) -> torch.Tensor:
    """A folder of images (sorted by name) or a video file -> [N, 3, H, W] in [0, 1]."""
    if source.is_dir():
        paths = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise ImageReadError(f"no frames ({', '.join(IMAGE_SUFFIXES)}) in folder {str(source)!r}")
        return torch.stack([load_image(p) for p in paths])
    if source.suffix.lower() in VIDEO_SUFFIXES and source.is_file():
        import mediapy

        try:
            frames = mediapy.read_video(str(source))  # [N, H, W, 3] uint8
        except (RuntimeError, OSError, ValueError) as error:  # ffmpeg could not decode it
            raise ImageReadError(f"cannot read video {str(source)!r} ({type(error).__name__}): pass a video ffmpeg "
                                 f"can decode, or a folder of frames") from error
        return torch.from_numpy(np.asarray(frames)).permute(0, 3, 1, 2).float() / 255
    raise ImageReadError(f"{str(source)!r} is neither a folder of frames nor a video file ({', '.join(VIDEO_SUFFIXES)})")


def load_masks(source: Path, count: int) -> torch.Tensor:
    """A folder of mask images (sorted by name; nonzero = the edit region) -> [N, H, W] bool."""
    paths = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if source.is_dir() else []
    if len(paths) != count:
        raise ImageReadError(f"need {count} masks in folder {str(source)!r} (one per frame), found {len(paths)}")
    from PIL import Image

    return torch.stack([torch.from_numpy(np.asarray(Image.open(p).convert("L")) > 0) for p in paths])


def check_frames_source(source: Path, name: str) -> None:
    """A folder with frames or a video file (checked without decoding)."""
    if not source.exists():
        raise ImageReadError(f"{name} {str(source)!r} does not exist: pass a folder of frames or a video file")
    if source.is_dir():
        if not any(p.suffix.lower() in IMAGE_SUFFIXES for p in source.iterdir()):
            raise ImageReadError(f"{name}: no frames ({', '.join(IMAGE_SUFFIXES)}) in folder {str(source)!r}")
    elif source.suffix.lower() not in VIDEO_SUFFIXES:
        raise ImageReadError(f"{name} {str(source)!r} is neither a folder of frames nor a video file ({', '.join(VIDEO_SUFFIXES)})")


def frame_count(folder: Path) -> int:
    return sum(1 for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


@dataclass
class Evaluate:
    """CLIP text-image, image, directional and frame-consistency scores, and background preservation."""

    edited: Path
    """Renders of the edited scene: a folder of frames or a video."""
    original: Path
    """Renders of the original scene along the same cameras."""
    instruction: str
    """The edit instruction."""
    source_caption: Optional[str] = None
    """Caption of the original scene (with --target-caption: CLIP directional similarity)."""
    target_caption: Optional[str] = None
    """Caption of the edited scene."""
    masks: Optional[Path] = None
    """Folder of per-frame masks of the edit region (nonzero = edited): background PSNR/L1/L2 outside them."""
    clip_model: str = CLIP_MODEL_ID
    """CLIP weights: hub id, local directory, or `tiny` (random, offline tests)."""
    device: str = "cpu"
    """Device for CLIP."""
    output: Path = Path("eval/results.json")
    """JSON of the results; a plot of the per-frame scores is written beside it (.png)."""

    def validate(self) -> None:
        """Every setting, before any frame or model is loaded (one UsageError line each)."""
        check_frames_source(self.edited, "--edited")
        check_frames_source(self.original, "--original")
        if self.masks is not None and not self.masks.is_dir():
            raise ImageReadError(f"--masks {str(self.masks)!r} is not a folder: pass the folder of per-frame masks")
        counts = {name: frame_count(path) for name, path in (("--edited", self.edited), ("--original", self.original),
                                                              ("--masks", self.masks)) if path is not None and path.is_dir()}
        if len(set(counts.values())) > 1:
            raise ImageReadError(f"different numbers of frames ({', '.join(f'{k} {v}' for k, v in counts.items())}): "
                                 f"render and mask the same camera path")
        validate.check_text("--instruction", self.instruction, "turn the ball blue")
        if (self.source_caption is None) != (self.target_caption is None):
            raise UsageError("pass both --source-caption and --target-caption (CLIP directional similarity) or neither")
        check_clip_model(self.clip_model)
        validate.check_device(self.device, "--device", allow_auto=False)
        validate.check_output_file(self.output, "--output")

    def main(self) -> dict:
        self.validate()
        edited, original = load_frames(self.edited), load_frames(self.original)
        masks = load_masks(self.masks, len(edited)) if self.masks is not None else None
        results = edit_metrics(ClipEmbedder(self.clip_model, self.device), edited, original, self.instruction,
                               self.source_caption, self.target_caption, masks)
        write_results(results, self.output)
        return results


def entrypoint() -> None:
    run(Evaluate)


if __name__ == "__main__":
    entrypoint()
