"""Image and array files, written atomically (temporary file + rename): an interrupted write leaves no torn file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from nerf_edit.errors import ImageReadError

# The image files the commands read from a folder (every one of them PIL reads: `load_image`).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def atomic_write(path: Path, write: Callable[[Path], None], temporary_dir: Optional[Path] = None) -> None:
    """Call write(temporary path), then rename the file onto `path`. The temporary file lives in `path`'s folder
    unless `temporary_dir` (on the same file system) is given."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A hidden `.tmp` name: readers globbing `*.png`/`*.npy` never see a file being written.
    fd, tmp = tempfile.mkstemp(dir=temporary_dir or path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def to_uint8(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """[3, H, W] tensor or [H, W, 3]/[H, W] array in [0, 1] -> uint8 array [H, W, (3)]."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().float()
        image = image.permute(1, 2, 0).numpy() if image.ndim == 3 else image.numpy()
    if image.dtype == np.uint8:
        return image
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def atomic_save_image(path: Path, image: torch.Tensor | np.ndarray) -> None:
    array = to_uint8(image)
    image_format = Image.registered_extensions().get(Path(path).suffix.lower(), "PNG")
    atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format=image_format))


def atomic_save_array(path: Path, array: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array)

    atomic_write(path, write)


def load_image(path: Path) -> torch.Tensor:
    """An RGB image file as [3, H, W] float in [0, 1]."""
    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    except (FileNotFoundError, IsADirectoryError, UnidentifiedImageError, OSError) as error:
        raise ImageReadError(f"cannot read image {str(path)!r} ({type(error).__name__}): pass an image file "
                             f"({', '.join(IMAGE_SUFFIXES)})") from error
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()
