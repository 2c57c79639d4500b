"""The WYS pipeline: nerfstudio's VanillaPipeline composed with the edit loop's parts (`nerf_edit.scene`).

Each training step, before the model's loss (`update_dataset`): the viewer's settings are taken (controls.py), the
schedule says whether relevance targets are due (a new instruction: the field restarts and warms up on them) and
how many dataset updates to make, and the update edits that many views. The parts:
  controls  ViewerControls (this plug-in): prompt, sliders, pause, reset -> EditSettings at a step boundary
  schedule  EditSchedule: which views, when, how strongly
  targets   RelevanceTargets: every view's relevance for the instruction (what trains the relevance field)
  updates   DatasetUpdate: render, edit where the rendered relevance allows (wys.ops), put back
  chain     EditChain: the run's history; the run it resumes or edits on top of (--load-dir)
A backend (nerfacto here, splatfacto in splat/pipeline.py) overrides `render_train_view` and
`reset_relevance_field`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Dict, List, Literal, Optional, Type

import torch
from nerfstudio.data.datamanagers.base_datamanager import DataManagerConfig
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes
from nerfstudio.models.base_model import ModelConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from nerfstudio.utils.rich_utils import CONSOLE

from nerf_edit.config.editor import EditorConfig
from nerf_edit.core.progress import Progress
from nerf_edit.editing.editor import Editor, editor_class
from nerf_edit.scene.chain import EditChain
from nerf_edit.scene.schedule import EditSchedule
from nerf_edit.scene.settings import EditSettings
from nerf_edit.scene.store import EditStore
from nerf_edit.scene.targets import RelevanceTargets
from nerf_edit.scene.update import DatasetUpdate
from nerf_edit.wys.ops import edit_region
from nerf_edit_methods.controls import ViewerControls
from nerf_edit_methods.datamanager import WYSDataManager, WYSDataManagerConfig
from nerf_edit_methods.model import WYSModelConfig
from nerf_edit_methods.validate import check_pipeline_config, read_run_config

# The targets' noise stream is not the edits' (same --pipeline.seed): a view's edit must not start from the very
# noise its relevance target was estimated with.
TARGETS_SEED_OFFSET = 1_000_003


@dataclass
class WYSPipelineConfig(VanillaPipelineConfig):
    """Watch Your Steps: edit a trained scene where the instruction is relevant, and nowhere else."""

    _target: Type = field(default_factory=lambda: WYSPipeline)
    makes_edits: ClassVar[bool] = True  # False: reconstruction only (wys-reconstruct), no prompt or editor
    datamanager: DataManagerConfig = field(default_factory=WYSDataManagerConfig)
    model: ModelConfig = field(default_factory=WYSModelConfig)
    prompt: str = ""
    """The edit instruction, e.g. "turn the ball blue" (required)."""
    edit_schedule: Literal["rate", "sweep"] = "rate"
    """When views are edited: `rate` (WYS, instruct-nerf2nerf: `edit_count` updates every `edit_rate` steps, views in
    a seeded random order) or `sweep` (instruct-gs2gs: every `sweep_every` steps, every view once, one per step, in
    index order)."""
    sweep_every: int = 2500
    """With `edit_schedule sweep`: steps from one sweep's start to the next (instruct-gs2gs's gs_steps,
    igs2gs_pipeline.py ~49)."""
    edit_rate: int = 10
    """Edit training views every this many steps."""
    edit_count: int = 1
    """Dataset updates at each edit step (each of `edit_batch` views)."""
    edit_batch: int = 1
    """Views rendered and edited together in one batched IP2P call, every edit_batch·edit_rate steps (so the edits
    per iteration stay the same). A batch shares one noise level; each view gets the noise it would get alone."""
    overlap_edits: bool = False
    """Edit in a worker thread (its own CUDA stream on a GPU) while training goes on: the views are rendered at an
    edit step, and their edits go into training at the next edit step (edit_batch·edit_rate steps later; the
    worker is waited for if it is not done). Deterministic; a kill loses at most the edits in flight."""
    lower_bound: float = 0.02
    """Least noise level of an edit's starting point (fraction of the diffusion timesteps)."""
    upper_bound: float = 0.98
    """Greatest noise level of an edit's starting point."""
    normalize_rendered_relevance: bool = True
    """Min-max normalise each view's rendered relevance before the editing.tau threshold (official WYS,
    in2n_pipeline.py ~172); off thresholds the raw rendered relevance."""
    edit_region: Literal["rendered", "rendered+target"] = "rendered+target"
    """Where a view's edit may act: `rendered`, its rendered relevance >= τ (official WYS, in2n_pipeline.py ~172-176:
    relevance sits only on surfaces the scene already has, so an instruction that adds something, a hat or glasses,
    is cut off); `rendered+target`, also the view's own relevance target >= τ (the editor's relevance of that view,
    refreshed at each of its edits), which marks where a new object will stand. The union may let an edit spill
    where one view's 2D relevance is wrong; the views then disagree there and the scene averages them."""
    relevance_warmup_steps: int = 100
    """Steps the relevance field trains on fresh targets before the first edit."""
    use_relevance: bool = True
    """Guide edits by the relevance field; off gives instruct-nerf2nerf's global updates."""
    edit_start_step: int = 0
    """Steps of plain reconstruction before relevance and edits begin (0 when starting from --load-dir)."""
    editor: str = "relevance"
    """Editor: `relevance` (WYS), `zone` (ZONE layer blending), `global` (plain IP2P), `colorkey` (a rule-based
    demonstration editor, not IP2P: "turn the red ball blue" recolours red to blue), or `package.module:Class`."""
    editing: EditorConfig = field(default_factory=EditorConfig)
    """The editor's settings (model, device, steps, guidance, τ, localizer, ZONE's): the 2D editor's, with the
    3D method's values set in methods/configs.py. `device auto` is the NeRF's device (e.g. cuda:1 keeps IP2P off
    the training GPU); `localizer` also decides what trains the relevance field."""
    seed: int = 0
    """Seed of the edit order, noise levels and diffusion noise."""
    edit_log_every: int = 10
    """When the output is not a terminal (logs), print a progress line every this many edited views."""
    continue_as: Literal["auto", "resume", "new-edit"] = "auto"
    """With --load-dir of a wys run: `resume` it (its edited views and relevance targets come back, its edit goes on),
    or make a `new-edit` on top of it (its result becomes this run's starting views, relevance is recomputed for
    this prompt, the edit order starts afresh); `auto` resumes when the prompt and settings are the run's, else
    edits on top. A reconstruction (wys-reconstruct, nerfacto) is always the start of a new chain."""

    def setup(self, **kwargs):
        """Check every setting (and the data folder) before the datamanager, model or editor is built."""
        if kwargs.get("test_mode", "val") == "val":  # ns-train; ns-render/ns-eval load finished runs, no editor
            check_pipeline_config(self, str(kwargs.get("device", "cpu")))
        return super().setup(**kwargs)


class WYSPipeline(VanillaPipeline):
    config: WYSPipelineConfig
    datamanager: WYSDataManager

    def __init__(self, config: WYSPipelineConfig, device: str, test_mode: Literal["test", "val", "inference"] = "val",
                 world_size: int = 1, local_rank: int = 0, grad_scaler=None):
        super().__init__(config, device, test_mode, world_size, local_rank, grad_scaler)
        self.training_run = test_mode == "val"  # ns-train; ns-render/ns-eval need no editor
        self.editor: Optional[Editor] = None
        self._optimizers = None  # the trainer's (nerfstudio Optimizers): the relevance field's reset, the splat edit phase
        self.controls = ViewerControls(EditSettings.of(config.prompt, config.editing))
        self.chain = EditChain(None, self.datamanager, say=lambda line: CONSOLE.print(f"[green]{line}"))
        self.schedule = EditSchedule(config, self.datamanager.num_views) if self.training_run else None
        self.targets: Optional[RelevanceTargets] = None
        self.updates: Optional[DatasetUpdate] = None
        if self.training_run and config.makes_edits:
            self.editor = self._make_editor()
            self.targets = RelevanceTargets(self.datamanager, self.editor, lambda i: self.render_train_view(i),
                                            self.device, batch=config.edit_batch, terminal=CONSOLE.is_terminal,
                                            seed=config.seed + TARGETS_SEED_OFFSET)
            mask = self.edit_region if config.use_relevance else None
            self.updates = DatasetUpdate(self.datamanager, self.editor, lambda i: self.render_train_view(i), mask,
                                         self.targets if config.use_relevance else None, self.chain, config.seed,
                                         self._edit_log())

    def edit_region(self, rendered: torch.Tensor, target: Optional[torch.Tensor], tau: float) -> torch.Tensor:
        """A view's edit mask from its rendered relevance [H, W] (and its target [H, W], with `rendered+target`)."""
        target = target if self.config.edit_region == "rendered+target" else None
        return edit_region(rendered, tau, self.config.normalize_rendered_relevance, target)

    def _make_editor(self) -> Editor:
        """The editor, on a copy of the settings (the viewer's sliders change the editor's, never the run's saved
        config); they were checked in WYSPipelineConfig.setup (validate.py)."""
        editing = dataclasses.replace(self.config.editing)
        if editing.device == "auto":
            editing.device = str(self.device)
        return editor_class(self.config.editor)(editing)

    def _edit_log(self) -> Progress:
        """Plain lines only where nerfstudio's live table does not own the terminal."""
        return Progress("Dataset update", unit="views", every=self.config.edit_log_every, enabled=not CONSOLE.is_terminal,
                        terminal=False, line=lambda done, total, rate, elapsed, status:
                        f"Dataset update: {done} views edited ({rate:.2f} views/s)")

    # ------------------------------------------------------------------------------------------------- a run
    def get_training_callbacks(self, training_callback_attributes: TrainingCallbackAttributes) -> List[TrainingCallback]:
        trainer = training_callback_attributes.trainer
        self._optimizers = training_callback_attributes.optimizers
        if trainer is not None and self.training_run:
            self.chain.run_dir = Path(trainer.base_dir)
            self.chain.store = EditStore.for_run(trainer.base_dir)
            if self.editor is not None:
                self.targets.store = self.chain.store
            load_dir = trainer.config.load_dir
            previous_run = Path(load_dir).parent if load_dir is not None else None
            if self.config.makes_edits:
                self.start_chain(previous_run)
            elif previous_run is not None:
                self.resume(EditStore.for_run(previous_run), None)
        return super().get_training_callbacks(training_callback_attributes)

    def start_chain(self, previous_run: Optional[Path]) -> None:
        """This run's place in its edit chain (chain.py), said in one line; a resume takes its edits back."""
        previous_config = read_run_config(previous_run) if previous_run is not None else None
        continued_as, previous = self.chain.start(self.config, previous_run, previous_config)
        if continued_as == "resume":
            self.resume(EditStore.for_run(previous_run), previous.prompt)

    def resume(self, previous: EditStore, prompt: Optional[str]) -> None:
        """Put back the edited views and relevance targets `previous` holds (for `prompt`, by default this run's:
        another one is recomputed before the first edit); unedited views are edited first."""
        edited, targets = self.chain.restore(previous)
        if (edited or targets) and self.schedule is not None:
            if self.editor is not None:
                self.targets.restored(prompt or self.config.prompt)
            self.schedule.resume(edited)

    def get_train_loss_dict(self, step: int):
        if self.training_run:
            if self.controls.take_reset():  # also in a run that makes no edits but restored some (--load-dir)
                self.reset_edits()
            if self.editor is not None:
                self.update_dataset(step)
        return super().get_train_loss_dict(step)

    def update_dataset(self, step: int) -> None:
        """Called before every training step: the viewer's settings, relevance targets when the instruction is new
        (the field restarts and trains on them for the warm-up), then the dataset updates due at this step."""
        applied = self.controls.settings.prompt
        settings = self.controls.take(self.editor)
        if settings.prompt != applied:  # a prompt applied in the viewer: the run's record says so
            self.chain.record_prompt(settings.prompt)
        if not self.schedule.started(step):
            return
        if self.config.use_relevance and self.targets.needed_for(settings.prompt):
            # Edits still in flight (--pipeline.overlap-edits) are the old instruction's: they land first, as they
            # would have without overlap, and their refreshed targets must not overwrite the new instruction's.
            self.updates.finish()
            self.reset_relevance_field()
            self.targets.compute(settings.prompt)
            self.schedule.warm_up_from(step)
            self.updates.log.restart_clock()
        if self.schedule.begin_at(step):
            self.updates.log.restart_clock()
        self.model.start_editing()
        self.freeze_cameras()
        for _ in range(self.schedule.updates_due(step, settings.paused)):
            views, strength = self.schedule.next_views(), self.schedule.strength()
            if self.config.overlap_edits:
                self.updates.overlap(views, settings, strength, torch.device(getattr(self.editor, "device", self.device)))
            else:
                self.updates.edit(views, settings, strength)

    def edit_views(self, indices: List[int], strength: Optional[float] = None) -> None:
        """Edit views `indices` now in one editor call, with the viewer's current settings (`strength`: the noise
        level; drawn by the schedule unless given). For scripts and benchmarks; training edits by the schedule."""
        strength = self.schedule.strength() if strength is None else strength
        self.updates.finish()  # one thread at a time uses the editor and its generators
        self.updates.edit(indices, self.controls.settings, strength)

    def compute_relevance_targets(self) -> None:
        """Every view's relevance target for the current prompt, now."""
        self.updates.finish()
        self.targets.compute(self.controls.settings.prompt)

    def freeze_cameras(self) -> None:
        """While editing the cameras stay fixed (official WYS/in2n: camera optimiser lr 1e-30): edited views that
        disagree with each other must not be explained away by moving the cameras."""
        for parameter in self.model.camera_optimizer.parameters():
            parameter.requires_grad_(False)
            parameter.grad = None

    # ------------------------------------------------------------------------------------------------- the backend
    @torch.no_grad()
    def render_train_view(self, index: int) -> Dict[str, torch.Tensor]:
        """Render training camera `index` (with its optimised pose) in eval mode: rgb [H, W, 3], relevance [H, W, 1]."""
        camera = self.datamanager.train_dataset.cameras[index : index + 1].to(self.device)
        pose_correction = self.model.camera_optimizer(torch.tensor([index], device=self.device))
        bundle = camera.generate_rays(camera_indices=0, keep_shape=True, camera_opt_to_camera=pose_correction)
        was_training = self.model.training
        self.model.eval()
        try:
            return self.model.get_outputs_for_camera_ray_bundle(bundle)
        finally:
            self.model.train(was_training)

    def reset_relevance_field(self) -> None:
        """A new instruction's field starts from scratch, as on a reconstruction: the weights and their optimiser
        state (Adam's moments of the old instruction's field would push the fresh one back)."""
        self.model.reset_relevance_field(self.config.seed)
        optimizer = getattr(self._optimizers, "optimizers", {}).get("relevance_field")
        if optimizer is not None:
            optimizer.state.clear()

    def reset_edits(self) -> None:
        """The viewer's "Reset edits", at a step boundary: back to the original views (the dataset on disk was never
        touched); edits still in flight were started before the reset and are dropped."""
        if self.updates is not None:
            self.updates.discard()
        self.datamanager.reset_views()
        if self.chain.store is not None:
            self.chain.store.clear_images()
        self.chain.clear_views()
        CONSOLE.print("[yellow]Edits reset: training on the original views again")
