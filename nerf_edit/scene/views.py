"""The training views an edit schedule writes: every view in memory, each replaceable by its edit, with its
relevance target, for any datamanager (rays: nerfacto's; whole images: splatfacto's)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence

import torch


class EditableViews:
    """`image_batch` holds every view in dataset order: image [N, H, W, 3] (current, possibly edited), relevance
    [N, H, W, 1] and relevance_valid [N, H, W, 1]; `original_images` keeps the views edits start from; `names` names
    them (file stems, made unique). A datamanager mixes this in and calls `hold_views` once its images are loaded;
    the edit loop writes views only through the methods below."""

    image_batch: Dict[str, torch.Tensor]
    original_images: torch.Tensor
    names: List[str]

    def hold_views(self, image_batch: Dict[str, torch.Tensor], filenames: Sequence[Path]) -> None:
        """Keep `image_batch` (image [N, H, W, 3] in [0, 1], dataset order, from `filenames`) editable, with no
        relevance target yet."""
        self.image_batch = image_batch
        self.original_images = image_batch["image"].clone()  # [N, H, W, 3]
        num_images, height, width = self.original_images.shape[:3]
        image_batch["relevance"] = torch.zeros(num_images, height, width, 1)
        image_batch["relevance_valid"] = torch.zeros(num_images, height, width, 1, dtype=torch.bool)
        self.names = view_names(filenames)

    @property
    def num_views(self) -> int:
        return len(self.original_images)

    def set_view(self, index: int, image: torch.Tensor) -> None:
        """Train on `image` [H, W, 3] in [0, 1] for view `index` from the next step on."""
        self.image_batch["image"][index] = image.to(self.image_batch["image"])

    def set_relevance_target(self, index: int, relevance: torch.Tensor) -> None:
        """The relevance field's target for view `index`: [H, W] in [0, 1]."""
        self.image_batch["relevance"][index, ..., 0] = relevance.to(self.image_batch["relevance"])
        self.image_batch["relevance_valid"][index] = True

    def set_original(self, index: int, image: torch.Tensor) -> None:
        """Start view `index` from `image` [H, W, 3] (a stacked edit starts from the previous edit's result): what
        stays outside every edit's mask, what conditions IP2P and what relevance is computed from."""
        self.original_images[index] = image.to(self.original_images)
        self.image_batch["image"][index] = image.to(self.image_batch["image"])

    def reset_views(self) -> None:
        """Every view back to its original image (relevance targets are kept)."""
        self.image_batch["image"][:] = self.original_images

    def has_all_relevance_targets(self) -> bool:
        return bool(self.image_batch["relevance_valid"].flatten(1).any(1).all())


def view_names(filenames: Sequence[Path]) -> List[str]:
    """A name per view: its file's stem, prefixed by its index where two stems are the same."""
    names = [Path(f).stem for f in filenames]
    if len(set(names)) != len(names):
        names = [f"{i:05d}_{name}" for i, name in enumerate(names)]
    return names
