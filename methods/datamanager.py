"""A datamanager whose training images (and relevance targets) live in memory and can be replaced by edits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Tuple, Type

import torch
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig

from nerf_edit.errors import UsageError, usage_exit


@dataclass
class WYSDataManagerConfig(VanillaDataManagerConfig):
    """Vanilla datamanager over all training images, kept editable in memory."""

    _target: Type = field(default_factory=lambda: WYSDataManager)


class EditableViews:
    """The training views an edit schedule writes, for any datamanager (rays: WYSDataManager; whole images: the
    splat one). `image_batch` holds every view in dataset order: image [N, H, W, 3] (current, possibly edited),
    relevance [N, H, W, 1] and relevance_valid [N, H, W, 1]; `original_images` keeps the unedited views."""

    image_batch: Dict[str, torch.Tensor]
    original_images: torch.Tensor

    def hold_views(self, image_batch: Dict[str, torch.Tensor]) -> None:
        """Keep `image_batch` (image [N, H, W, 3] in [0, 1], dataset order) editable, with no relevance target yet."""
        self.image_batch = image_batch
        self.original_images = image_batch["image"].clone()  # [N, H, W, 3]
        num_images, height, width = self.original_images.shape[:3]
        image_batch["relevance"] = torch.zeros(num_images, height, width, 1)
        image_batch["relevance_valid"] = torch.zeros(num_images, height, width, 1, dtype=torch.bool)

    # ------------------------------------------------------------------ what the pipeline writes (the only way in)
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



class WYSDataManager(EditableViews, VanillaDataManager):
    """Rays from editable views (EditableViews): pixel sampling draws from `image_batch`, so an edit written there
    is trained on from the next step on, and relevance targets reach the model as batch["relevance"]."""

    config: WYSDataManagerConfig

    def setup_train(self):
        super().setup_train()
        batch = next(self.iter_train_image_dataloader)
        if not isinstance(batch.get("image"), torch.Tensor):
            raise usage_exit(UsageError("the wys datamanager needs all training images at one resolution: resize the "
                                  "dataset (e.g. ns-process-data) so every image has the same size"))
        order = torch.argsort(batch["image_idx"])  # the cache collates in random order; index by dataset order
        self.hold_views({key: value[order.to(value.device)] for key, value in batch.items()
                         if isinstance(value, torch.Tensor)})
        self.hold_views(self.image_batch)

    def next_train(self, step: int) -> Tuple[RayBundle, Dict]:
        self.train_count += 1
        assert self.train_pixel_sampler is not None
        batch = self.train_pixel_sampler.sample(self.image_batch)
        ray_bundle = self.train_ray_generator(batch["indices"])
        return ray_bundle, batch
