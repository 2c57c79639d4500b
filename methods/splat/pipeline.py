"""`wys-splat`: the WYS edit schedule (WYSPipeline: relevance targets, warm-up, dataset updates, viewer controls, edit
store, resume) on the splat model. What differs is the backend: a view is rendered from its camera (not from rays),
the relevance field is a value per Gaussian, and once it has trained the irrelevant Gaussians are frozen."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Dict, Type

import torch
from nerfstudio.data.datamanagers.base_datamanager import DataManagerConfig
from nerfstudio.models.base_model import ModelConfig
from nerfstudio.utils.rich_utils import CONSOLE

from nerf_edit_methods.pipeline import WYSPipeline, WYSPipelineConfig
from nerf_edit_methods.splat.datamanager import WYSSplatDataManagerConfig
from nerf_edit_methods.splat.model import WysSplatModel, WysSplatModelConfig


@dataclass
class WYSSplatPipelineConfig(WYSPipelineConfig):
    """Watch Your Steps on Gaussian splatting: edit where the instruction is relevant, and freeze the rest."""

    _target: Type = field(default_factory=lambda: WYSSplatPipeline)
    datamanager: DataManagerConfig = field(default_factory=WYSSplatDataManagerConfig)
    model: ModelConfig = field(default_factory=WysSplatModelConfig)
    freeze_irrelevant: bool = True
    """At the first edit, freeze the Gaussians whose relevance is below freeze-threshold: they get no updates and are
    neither densified nor pruned, so the background stays the reconstruction's exactly. Off: every Gaussian trains
    (plain masked image supervision)."""
    freeze_threshold: float = 0.5
    """Relevance below which a Gaussian is frozen: every Gaussian starts at 0.5 and the warm-up moves each seen one
    towards its relevance (on the synthetic scene after 40 steps: background 0.05-0.35, the object above 0.9);
    Gaussians no view showed keep 0.5 and stay free."""


class WYSSplatPipeline(WYSPipeline):
    config: WYSSplatPipelineConfig
    model: WysSplatModel

    @torch.no_grad()
    def render_train_view(self, index: int) -> Dict[str, torch.Tensor]:
        """Render training camera `index` (with its optimised pose) in eval mode: rgb [H, W, 3], relevance [H, W, 1]."""
        camera = self.datamanager.train_dataset.cameras[index : index + 1].to(self.device)
        camera.metadata = {**(camera.metadata or {}), "cam_idx": index}
        camera.camera_to_worlds = self.model.camera_optimizer.apply_to_camera(camera)
        was_training = self.model.training
        self.model.eval()
        try:
            return self.model.get_outputs_for_camera(camera)
        finally:
            self.model.train(was_training)

    def reset_relevance_field(self) -> None:
        """A new instruction's relevance starts at 0.5 everywhere with fresh optimiser state, nothing frozen, and
        trains alone (no Gaussian moves or is densified) until the first edit."""
        self.model.reset_relevance()
        optimizer = getattr(self._optimizers, "optimizers", {}).get("relevance")
        if optimizer is not None:
            optimizer.state.clear()
        self.model.relevance_only = True

    def update_dataset(self, step: int) -> None:
        super().update_dataset(step)
        if not self.schedule.editing(step):
            return
        self.model.relevance_only = False
        # Freeze once per instruction, at its first edit: the set lives in the checkpoint, so a resumed run keeps
        # it; a run resumed from a checkpoint written before its first edit has none yet and freezes now.
        if self.config.freeze_irrelevant and self.config.use_relevance and not self.model.has_frozen_set:
            frozen = self.model.freeze_irrelevant(self.config.freeze_threshold)
            CONSOLE.print(f"[green]Frozen {frozen} of {self.model.num_points} Gaussians (relevance below "
                          f"{self.config.freeze_threshold}): they stay the reconstruction's")


@dataclass
class WYSSplatReconstructPipelineConfig(WYSSplatPipelineConfig):
    """Reconstruction only (splatfacto through the splat model, offline): no prompt, no editor."""

    makes_edits: ClassVar[bool] = False
