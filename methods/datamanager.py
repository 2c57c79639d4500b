"""A datamanager whose training images (and relevance targets) live in memory and can be replaced by edits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Tuple, Type

import torch
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig

from nerf_edit.errors import UsageError
from nerf_edit.scene.views import EditableViews


@dataclass
class WYSDataManagerConfig(VanillaDataManagerConfig):
    """Vanilla datamanager over all training images, kept editable in memory."""

    _target: Type = field(default_factory=lambda: WYSDataManager)


class WYSDataManager(EditableViews, VanillaDataManager):
    """Rays from editable views (EditableViews): pixel sampling draws from `image_batch`, so an edit written there
    is trained on from the next step on, and relevance targets reach the model as batch["relevance"]."""

    config: WYSDataManagerConfig

    def setup_train(self):
        super().setup_train()
        batch = next(self.iter_train_image_dataloader)
        if not isinstance(batch.get("image"), torch.Tensor):
            raise UsageError("the wys datamanager needs all training images at one resolution: resize the dataset "
                             "(e.g. ns-process-data) so every image has the same size")
        order = torch.argsort(batch["image_idx"])  # the cache collates in random order; index by dataset order
        self.hold_views({key: value[order.to(value.device)] for key, value in batch.items()
                         if isinstance(value, torch.Tensor)}, self.train_dataparser_outputs.image_filenames)

    def next_train(self, step: int) -> Tuple[RayBundle, Dict]:
        self.train_count += 1
        assert self.train_pixel_sampler is not None
        batch = self.train_pixel_sampler.sample(self.image_batch)
        ray_bundle = self.train_ray_generator(batch["indices"])
        return ray_bundle, batch
