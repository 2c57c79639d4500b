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
from nerf_edit_methods.splat.ops import clone_relevant


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
    """Relevance below which a Gaussian is frozen, the relevance traced from the training views' targets (the mean
    of the targets over the pixels it covers, weighted by how much it covers them). With 0/1 targets a Gaussian on
    the object traces to ~1, one of the background to ~0; 0.5 splits what covers the object mostly from what
    covers the background mostly. Gaussians no training view shows (traced weight 0) are frozen too: no edit can
    be about them, and they stay the reconstruction's."""
    refine_in_edit: bool = True
    """From the instruction's first edit the free Gaussians densify again (a refinement window counted from that
    step, splatfacto's period) and the learning-rate schedules restart: a run continued from a finished
    reconstruction (past splatfacto's stop_split_at) could otherwise never grow what an edit adds."""
    seed_relevant: float = 0.25
    """At the first edit, seed this many new Gaussians per relevant one: jittered copies of relevant free Gaussians
    (ops.clone_relevant), from which an object the instruction adds (a hat on a head) can grow; 0 seeds none."""


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
        # Once per instruction, at its first edit: the set lives in the checkpoint, so a resumed run keeps it; a run
        # resumed from a checkpoint written before its first edit has none yet and decides now.
        if self.config.freeze_irrelevant and self.config.use_relevance and not self.model.has_frozen_set:
            self.freeze_from_evidence()
        if self.config.refine_in_edit and self.model.edit_start is None:
            self.model.start_edit_phase(step, self._optimizers)
        # At every edit step, not only the first: the targets change as views are edited again, and a channel a
        # later target needs back must not have died on the way.
        self.model.unclamp_free_colors()

    def freeze_from_evidence(self) -> None:
        """Trace each Gaussian's relevance from the training views' targets (deterministic, whatever the warm-up),
        set its relevance to it, freeze those below freeze_threshold and those no view shows, and seed new
        Gaussians from the relevant ones (seed_relevant)."""
        views = self.datamanager
        trace = self.model.trace_relevance(views.train_dataset.cameras, views.image_batch["relevance"],
                                           views.image_batch["relevance_valid"],
                                           camera_indices=range(views.num_views))
        relevance = torch.where(trace.unseen, torch.zeros_like(trace.relevance), trace.relevance)
        self.model.set_relevance(relevance)
        total, tau = self.model.num_points, self.config.freeze_threshold
        frozen = self.model.freeze_irrelevant(tau)
        relevant = self.model.relevance.detach() >= tau
        added = clone_relevant(self.model.gauss_params, self.model.optimizers, self.model.strategy_state, relevant,
                               round(self.config.seed_relevant * int(relevant.sum())),
                               generator=torch.Generator().manual_seed(self.config.seed))
        CONSOLE.print(f"[green]Frozen {frozen} of {total} Gaussians (traced relevance below {tau}, "
                      f"{int(trace.unseen.sum())} of them seen by no training view): they stay the reconstruction's; "
                      f"{len(added)} new Gaussians seeded from the {int(relevant.sum())} relevant ones")


@dataclass
class WYSSplatReconstructPipelineConfig(WYSSplatPipelineConfig):
    """Reconstruction only (splatfacto through the splat model, offline): no prompt, no editor."""

    makes_edits: ClassVar[bool] = False
