"""The run's record of edits: every edited view and relevance target, on disk the moment it is made."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from nerf_edit.core.io import atomic_save_array, atomic_save_image, load_image

EDITS_FOLDER = "edits"


class EditStore:
    """A run's edits under `<run>/edits/`:
    `images/<view>.png` the latest edit of a view, `relevance/<view>.npy` its relevance target, `masks/<view>.png`
    the pixels that edit was allowed to change, and `base/<view>.png` the view the run started from where that is
    not the photo (a run stacked on another edit starts from that edit's result).

    Files are written to a temporary name and renamed, so a kill at any moment leaves each file whole.
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.images_dir = self.root / "images"
        self.relevance_dir = self.root / "relevance"
        self.masks_dir = self.root / "masks"
        self.base_dir = self.root / "base"

    @classmethod
    def for_run(cls, run_dir: Path) -> "EditStore":
        return cls(Path(run_dir) / EDITS_FOLDER)

    def save_image(self, view: str, image: torch.Tensor) -> Path:
        """image [H, W, 3] in [0, 1]."""
        path = self.images_dir / f"{view}.png"
        atomic_save_image(path, image.detach().cpu().permute(2, 0, 1))
        return path

    def save_relevance(self, view: str, relevance: torch.Tensor) -> Path:
        """relevance [H, W] in [0, 1]."""
        path = self.relevance_dir / f"{view}.npy"
        atomic_save_array(path, relevance.detach().cpu().float().numpy())
        return path

    def save_mask(self, view: str, mask: torch.Tensor) -> Path:
        """mask [H, W] bool."""
        path = self.masks_dir / f"{view}.png"
        atomic_save_image(path, mask.detach().cpu().float()[None].expand(3, -1, -1))
        return path

    def save_base(self, view: str, image: torch.Tensor) -> Path:
        """The view this run starts from [H, W, 3] in [0, 1]."""
        path = self.base_dir / f"{view}.png"
        atomic_save_image(path, image.detach().cpu().permute(2, 0, 1))
        return path

    def load_base(self) -> Dict[str, torch.Tensor]:
        """The views this run started from where they are not the photos [H, W, 3]."""
        return {path.stem: load_image(path).permute(1, 2, 0) for path in sorted(self.base_dir.glob("*.png"))}

    def result_views(self) -> Dict[str, torch.Tensor]:
        """What this run left, where it is not the photo: its edit of a view, else the view it started from."""
        images, _ = self.load()
        return {**self.load_base(), **images}

    def clear_images(self) -> None:
        for path in self.images_dir.glob("*.png"):
            path.unlink()

    def num_images(self) -> int:
        return len(list(self.images_dir.glob("*.png")))

    def load(self) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
        """(edited images by view [H, W, 3], relevance targets by view [H, W])."""
        images = {path.stem: load_image(path).permute(1, 2, 0) for path in sorted(self.images_dir.glob("*.png"))}
        relevance = {
            path.stem: torch.from_numpy(np.load(path)) for path in sorted(self.relevance_dir.glob("*.npy"))
        }
        return images, relevance

    def restore_into(self, datamanager, names: Sequence[str], copy_to: Optional["EditStore"] = None) -> Tuple[List[int], int]:
        """Resume: write this store's starting views (as the originals), edited views and relevance targets into
        `datamanager` (views named `names`, in dataset order), mirroring them into `copy_to` (the new run's store)
        when that is another folder.
        -> (indices of the views that have an edit, number of relevance targets restored)"""
        images, relevance = self.load()
        base = self.load_base()
        mirror = copy_to is not None and copy_to.root != self.root
        edited = []
        for index, name in enumerate(names):
            if name in base:
                datamanager.set_original(index, base[name])
                if mirror:
                    copy_to.save_base(name, base[name])
            if name in images:
                datamanager.set_view(index, images[name])
                edited.append(index)
                if mirror:
                    copy_to.save_image(name, images[name])
            if name in relevance:
                datamanager.set_relevance_target(index, relevance[name])
                if mirror:
                    copy_to.save_relevance(name, relevance[name])
        return edited, sum(name in relevance for name in names)

