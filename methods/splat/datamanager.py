"""splatfacto's whole-image datamanager with the training views kept editable (EditableViews), as `wys` has them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Tuple, Type

import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.data.datamanagers.full_images_datamanager import FullImageDatamanager, FullImageDatamanagerConfig

from nerf_edit.errors import UsageError
from nerf_edit.scene.views import EditableViews


@dataclass
class WYSSplatDataManagerConfig(FullImageDatamanagerConfig):
    """splatfacto's datamanager (a whole view per step) over training views kept editable in memory."""

    _target: Type = field(default_factory=lambda: WYSSplatDataManager)


class WYSSplatDataManager(EditableViews, FullImageDatamanager):
    """Each step trains on one whole view, taken from `image_batch` (so an edit written there is trained on from the
    next step on) with its relevance target (`relevance`, `relevance_valid` [H, W, 1]) for the splat model's loss."""

    config: WYSSplatDataManagerConfig

    def setup_train(self):
        super().setup_train()
        images = [data["image"] for data in self.cached_train]  # dataset order, [H, W, 3] each (uint8 or float)
        if len({tuple(image.shape) for image in images}) != 1:
            raise UsageError("wys-splat needs all training images at one resolution: resize the dataset (e.g. "
                             "ns-process-data) so every image has the same size")
        stacked = torch.stack([image.cpu() for image in images])
        if stacked.dtype == torch.uint8:
            stacked = stacked.float() / 255.0
        self.hold_views({"image": stacked[..., :3].float()},  # [N, H, W, 3] in [0, 1]
                        self.train_dataparser_outputs.image_filenames)

    def next_train(self, step: int) -> Tuple[Cameras, Dict]:
        camera, data = super().next_train(step)  # the next view of splatfacto's camera order, and its other data
        index = camera.metadata["cam_idx"]
        for key in ("image", "relevance", "relevance_valid"):
            data[key] = self.image_batch[key][index].to(self.device)
        return camera, data
