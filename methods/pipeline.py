"""The WYS pipeline: relevance targets for every view, then iterative relevance-guided dataset updates."""

from __future__ import annotations

import dataclasses
import inspect
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Dict, List, Literal, Optional, Sequence, Type

import torch
from nerfstudio.data.datamanagers.base_datamanager import DataManagerConfig
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes
from nerfstudio.models.base_model import ModelConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from nerfstudio.utils.rich_utils import CONSOLE
from nerfstudio.viewer.viewer_elements import ViewerButton, ViewerCheckbox, ViewerSlider, ViewerText

from nerf_edit.config.editor import EditorConfig
from nerf_edit.core.progress import Progress
from nerf_edit.editing.editor import Editor, IP2PEditor, check_prompt
from nerf_edit.errors import EditorError, UsageError, usage_exit
from nerf_edit.registry import editor_class
from nerf_edit_methods.datamanager import WYSDataManager, WYSDataManagerConfig
from nerf_edit_methods.edit_store import EditStore, resume_order
from nerf_edit_methods.edit_worker import EditJob, EditWorker
from nerf_edit_methods.history import EditStep, announce, decide, edit_step, previous_step, read_history, write_history
from nerf_edit_methods.model import WYSModelConfig
from nerf_edit_methods.validate import check_pipeline_config, exit_on_usage_error


@dataclass
class WYSPipelineConfig(VanillaPipelineConfig):
    """Watch Your Steps: edit a trained scene where the instruction is relevant, and nowhere else."""

    _target: Type = field(default_factory=lambda: WYSPipeline)
    makes_edits: ClassVar[bool] = True  # False: reconstruction only (wys-reconstruct), no prompt or editor
    datamanager: DataManagerConfig = field(default_factory=WYSDataManagerConfig)
    model: ModelConfig = field(default_factory=WYSModelConfig)
    prompt: str = ""
    """The edit instruction, e.g. "turn the ball blue" (required)."""
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
            exit_on_usage_error(check_pipeline_config, self, str(kwargs.get("device", "cpu")))
        return super().setup(**kwargs)


class WYSPipeline(VanillaPipeline):
    config: WYSPipelineConfig
    datamanager: WYSDataManager

    def __init__(
        self,
        config: WYSPipelineConfig,
        device: str,
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        grad_scaler=None,
    ):
        super().__init__(config, device, test_mode, world_size, local_rank, grad_scaler)
        self.training_run = test_mode == "val"  # ns-train; ns-render/ns-eval need no editor
        self.editor: Optional[Editor] = None
        self.edit_store: Optional[EditStore] = None
        self.relevance_ready = False
        self.first_edit_step: Optional[int] = None
        self.edits_done = 0
        self._rng = random.Random(config.seed)
        self._generator = torch.Generator().manual_seed(config.seed)
        self._view_order: List[int] = []
        self._worker: Optional[EditWorker] = None  # --pipeline.overlap-edits
        self._in_flight = None
        self._start_step: Optional[int] = None
        self._optimizers = None  # the trainer's (nerfstudio Optimizers), for resetting the relevance field's state
        self._relevance_prompt: Optional[str] = None  # the prompt the relevance targets were computed for
        self._active_prompt = config.prompt  # what edits use: the config's until a prompt is applied in the viewer
        self._requested_prompt: Optional[str] = None  # applied in the viewer (its thread), taken at the next step
        self.run_dir: Optional[Path] = None
        self.history: List[EditStep] = []  # the edit chain this run belongs to, this run's step last
        # Plain lines only where nerfstudio's live table does not own the terminal.
        self._edit_log = Progress("Dataset update", unit="views", every=config.edit_log_every,
                                  line=lambda done, total, rate, elapsed, status:
                                  f"Dataset update: {done} views edited ({rate:.2f} views/s)",
                                  enabled=not CONSOLE.is_terminal, terminal=False)
        # Viewer controls (nerfstudio finds ViewerElements on the pipeline).
        # The text box is a draft: every keystroke changes it, and a prompt change recomputes every view's
        # relevance, so a prompt takes effect only when applied (and only if the editor can use it).
        self.viewer_prompt = ViewerText("Edit prompt", config.prompt, hint="press 'Apply prompt' to edit with it")
        self.viewer_apply_prompt = ViewerButton("Apply prompt", cb_hook=lambda _: self.request_prompt(
            self.viewer_prompt.value))
        editing = config.editing
        self.viewer_guidance = ViewerSlider("Text guidance", editing.guidance_scale, 0.0, 20.0, 0.5)
        self.viewer_image_guidance = ViewerSlider("Image guidance", editing.image_guidance_scale, 0.0, 5.0, 0.1)
        self.viewer_tau = ViewerSlider("Relevance threshold τ", editing.tau, 0.0, 1.0, 0.05)
        self.viewer_pause = ViewerCheckbox("Pause edits", False)
        self.viewer_reset = ViewerButton("Reset edits", cb_hook=lambda _: self.reset_edits())
        if self.training_run and config.makes_edits:
            self.editor = self._make_editor()

    # ----------------------------------------------------------------------------------------- set-up
    def _make_editor(self) -> Editor:
        """The editor (settings were checked in WYSPipelineConfig.setup, see validate.py; what only loading can
        tell still stops with one line)."""
        config = self.config
        # A copy: the viewer's sliders change the editor's settings, never the run's saved config.
        editing = dataclasses.replace(config.editing)
        if editing.device == "auto":
            editing.device = str(self.device)
        try:
            cls = editor_class(config.editor)
            if editing.localizer != "auto" and not issubclass(cls, IP2PEditor):
                raise UsageError(f"editor {config.editor!r} does not take --pipeline.editing.localizer "
                                 f"{editing.localizer}: use --pipeline.editor relevance or zone, or leave the "
                                 f"localizer on auto")
            editor = cls(editing)
        except UsageError as error:
            raise usage_exit(error) from None
        return editor

    def get_training_callbacks(self, training_callback_attributes: TrainingCallbackAttributes) -> List[TrainingCallback]:
        trainer = training_callback_attributes.trainer
        self._optimizers = training_callback_attributes.optimizers
        if trainer is not None and self.training_run:
            self.run_dir = Path(trainer.base_dir)
            self.edit_store = EditStore.for_run(trainer.base_dir)
            load_dir = trainer.config.load_dir
            if self.config.makes_edits:
                self.start_chain(Path(load_dir).parent if load_dir is not None else None)
            elif load_dir is not None:
                self.restore_edits(EditStore.for_run(Path(load_dir).parent))
        return super().get_training_callbacks(training_callback_attributes)

    def start_chain(self, previous_run: Optional[Path]) -> None:
        """This run's place in its edit chain: a fresh start, a resume of `previous_run` or a new edit on top of it
        (`--pipeline.continue-as`), said in one line; writes edit_history.json."""
        this = edit_step(self.config, self.run_dir, previous_run, "start")
        chain: List[EditStep] = []
        if previous_run is not None:
            previous = previous_step(previous_run)
            this.continued_as = decide(self.config.continue_as, previous, this)
            chain = read_history(previous_run) or ([previous] if previous is not None else [])
            CONSOLE.print(f"[green]{announce(this.continued_as, previous_run, previous, this)}")
            if this.continued_as == "resume":
                this.views_changed = list(chain[-1].views_changed)
                self.restore_edits(EditStore.for_run(previous_run), targets_prompt=previous.prompt)
            elif this.continued_as == "new-edit":
                self.rebase_on(EditStore.for_run(previous_run))
        self.history = [*chain, this]
        self.write_history()

    def rebase_on(self, previous: EditStore) -> None:
        """A new edit on top of another run: the views it left (its edits, else the views it started from) become
        this run's original views, and are kept in this run's edits/base/."""
        names = self.view_names()
        views = previous.result_views()
        for index, name in enumerate(names):
            if name in views:
                self.datamanager.set_original(index, views[name])
                if self.edit_store is not None:
                    self.edit_store.save_base(name, views[name])
        CONSOLE.print(f"[green]Starting from {sum(name in views for name in names)} edited views of {previous.root}")

    def write_history(self) -> None:
        if self.run_dir is not None and self.history:
            write_history(self.run_dir, self.history)

    def view_names(self) -> List[str]:
        names = [Path(f).stem for f in self.datamanager.train_dataparser_outputs.image_filenames]
        if len(set(names)) != len(names):
            names = [f"{i:05d}_{name}" for i, name in enumerate(names)]
        return names

    def restore_edits(self, previous: EditStore, targets_prompt: Optional[str] = None) -> None:
        """Resume: put back the edited views and relevance targets a previous run wrote (for `targets_prompt`, by
        default this run's prompt: another one is recomputed before the first edit), and keep them here."""
        names = self.view_names()
        edited, targets = previous.restore_into(self.datamanager, names, copy_to=self.edit_store)
        if not edited and not targets:
            return
        self.relevance_ready = self.datamanager.has_all_relevance_targets()
        self._relevance_prompt = (targets_prompt or self.config.prompt) if self.relevance_ready else None
        self._view_order = resume_order(len(names), edited, self._rng)
        CONSOLE.print(f"[green]Restored {len(edited)} edited views and {targets} relevance targets from {previous.root}")

    # ----------------------------------------------------------------------------------------- training
    def get_train_loss_dict(self, step: int):
        if self.training_run and self.editor is not None:
            self.update_dataset(step)
        return super().get_train_loss_dict(step)

    def update_dataset(self, step: int) -> None:
        """The schedule, called before every training step: relevance targets once editing starts, then an edit of
        `edit_count` views every `edit_rate` steps from the first edit step on (unless paused in the viewer)."""
        if self._start_step is None:
            self._start_step = step
        self._take_requested_prompt()
        if step < self._start_step + self.config.edit_start_step:
            return
        if self.config.use_relevance and self.relevance_ready and self._relevance_prompt is None:
            self._relevance_prompt = self._prompt()  # targets given from outside (tests): take them as this prompt's
        if self.config.use_relevance and (not self.relevance_ready or self._prompt() != self._relevance_prompt):
            # At the start, and whenever the prompt changes (viewer): every target is the new instruction's, the
            # field starts afresh, and edits wait until it has trained on them.
            self.reset_relevance_field()
            self.compute_relevance_targets()
            self.first_edit_step = step + self.config.relevance_warmup_steps
            self._edit_log.restart_clock()
        if self.first_edit_step is None:
            self.first_edit_step = step
            self._edit_log.restart_clock()
        self._enter_editing()
        if self.viewer_pause.value or step < self.first_edit_step:
            return
        if (step - self.first_edit_step) % (self.config.edit_rate * self.config.edit_batch) == 0:
            for _ in range(self.config.edit_count):
                views = [self.next_view() for _ in range(self.config.edit_batch)]
                if self.config.overlap_edits:
                    self._overlapped_update(views)
                else:
                    self.edit_views(views)

    def _enter_editing(self) -> None:
        """The editing phase trains with in2n's losses (the model's start_editing) and fixed camera poses (official
        WYS/in2n: camera optimiser lr 1e-30): edited views that disagree with each other must not be explained
        away by moving the cameras."""
        self.model.start_editing()
        for parameter in self.model.camera_optimizer.parameters():
            parameter.requires_grad_(False)
            parameter.grad = None

    def next_view(self) -> int:
        """The next view to edit: every view once per cycle, in a seeded random order."""
        if not self._view_order:
            self._view_order = list(range(len(self.datamanager.original_images)))
            self._rng.shuffle(self._view_order)
        return self._view_order.pop()

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

    def _prompt(self) -> str:
        return self._active_prompt

    def request_prompt(self, prompt: str) -> None:
        """The viewer's "Apply prompt" (its thread): the prompt edits use from the next training step on."""
        self._requested_prompt = prompt

    def _take_requested_prompt(self) -> None:
        """At a step boundary: a prompt applied in the viewer becomes the edits' prompt if the editor can use it;
        else one line says why and edits go on with the prompt they had (training never stops for a typo)."""
        requested, self._requested_prompt = self._requested_prompt, None
        if requested is None or requested.strip() == self._active_prompt.strip():
            return
        try:
            check_prompt(self.editor, requested)
        except EditorError as error:
            CONSOLE.print(f"[yellow]Prompt {requested!r} not applied: {error}; edits go on with "
                          f"{self._active_prompt!r}", soft_wrap=True)  # one line, also in logs
            return
        self._active_prompt = requested.strip()
        CONSOLE.print(f"[green]Prompt applied: {self._active_prompt!r}", soft_wrap=True)
        if self.history:  # the run's record: the prompt it edits with now
            self.history[-1].prompt = self._active_prompt
            self.write_history()

    def _sync_editor_settings(self) -> None:
        """Viewer sliders act on the next edit."""
        settings = getattr(self.editor, "config", None)
        if isinstance(settings, EditorConfig):
            settings.guidance_scale = float(self.viewer_guidance.value)
            settings.image_guidance_scale = float(self.viewer_image_guidance.value)
            settings.tau = float(self.viewer_tau.value)

    def compute_relevance_targets(self) -> None:
        """Relevance of every training view: the original image's latent, conditioned on the rendered view
        (`edit_batch` views per editor call). An editor whose relevance reads the original view alone says so
        (`relevance_reads_conditioning = False`, colorkey): then no view is rendered for it, the larger part of
        this on a CPU."""
        assert self.editor is not None
        names = self.view_names()
        batch = self.config.edit_batch
        prompt = self._prompt()
        renders_needed = getattr(self.editor, "relevance_reads_conditioning", True)
        with Progress("Relevance maps of the training views", len(names), "views", terminal=CONSOLE.is_terminal,
                      announce=True) as progress:
            for first in range(0, len(names), batch):
                indices = list(range(first, min(first + batch, len(names))))
                renders = (torch.stack([self.render_train_view(index)["rgb"] for index in indices])
                           if renders_needed else None)
                self._save_relevance_targets(indices, self._relevance_targets(indices, renders, prompt))
                progress.advance(len(indices))
        self.relevance_ready = True
        self._relevance_prompt = prompt

    def reset_relevance_field(self) -> None:
        """A new instruction's field starts from scratch, as on a reconstruction: the weights and their optimiser
        state (Adam's moments of the old instruction's field would push the fresh one back)."""
        self.model.reset_relevance_field(self.config.seed)
        optimizer = getattr(self._optimizers, "optimizers", {}).get("relevance_field")
        if optimizer is not None:
            optimizer.state.clear()

    def _relevance_targets(self, indices: Sequence[int], renders: Optional[torch.Tensor], prompt: str) -> torch.Tensor:
        """The editor's relevance of the original views, conditioned on their renders [K, H, W, 3] (None: on the
        originals themselves, the editor's default). -> [K, H, W]"""
        assert self.editor is not None
        originals = self.datamanager.original_images[list(indices)]
        if renders is None:
            return self.editor.relevance(_bchw(originals.to(self.device)), prompt).cpu()
        return self.editor.relevance(_bchw(originals.to(renders)), prompt, conditioning=_bchw(renders)).cpu()

    def _save_relevance_targets(self, indices: Sequence[int], relevance: torch.Tensor) -> None:
        names = self.view_names()
        for index, target in zip(indices, relevance):
            self.datamanager.set_relevance_target(index, target)
            if self.edit_store is not None:
                self.edit_store.save_relevance(names[index], target)

    def edit_mask(self, rendered_relevance: torch.Tensor) -> torch.Tensor:
        """Pixels an edit may change: the rendered relevance [H, W], min-max normalised per view (official WYS,
        in2n_pipeline.py ~172-174) unless turned off, at or above τ. -> [H, W] bool"""
        relevance = rendered_relevance.float()
        if self.config.normalize_rendered_relevance:
            low, high = relevance.min(), relevance.max()
            relevance = (relevance - low) / (high - low).clamp_min(1e-12)
        return relevance >= float(self.viewer_tau.value)

    def edit_view(self, index: int, strength: Optional[float] = None) -> None:
        """Render a training view and its relevance, edit it where relevant, and put it back into training."""
        self.edit_views([index], strength)

    def edit_views(self, indices: Sequence[int], strength: Optional[float] = None) -> None:
        """Render training views with their relevance, edit them where relevant in one editor call, and put them
        back into training (`strength`: the edits' noise level, drawn in [lower_bound, upper_bound] unless given).

        As the official code: the edit starts from the noised render, is conditioned on the original view, and
        outside the mask the view is the original photo (in2n_pipeline.py ~213: edited·M + original·(1 − M)), so
        the render's blur and floaters are never fed back into training."""
        self.apply_edits(self.run_edits(self.prepare_edits(indices, strength)))

    def prepare_edits(self, indices: Sequence[int], strength: Optional[float] = None) -> "EditJob":
        """What an update needs from the NeRF (main thread, at a step boundary): the views rendered, their masks."""
        assert self.editor is not None
        self._sync_editor_settings()
        renders, masks = [], []
        for index in indices:
            outputs = self.render_train_view(index)
            renders.append(outputs["rgb"].clamp(0, 1))  # [H, W, 3]
            if self.config.use_relevance:
                masks.append(self.edit_mask(outputs["relevance"][..., 0]))  # [H, W]
        if strength is None:
            strength = self._rng.uniform(self.config.lower_bound, self.config.upper_bound)
        renders = torch.stack(renders)  # [K, H, W, 3]
        return EditJob(list(indices), renders, torch.stack(masks) if masks else None, strength, self._prompt())

    def run_edits(self, job: "EditJob") -> "EditJob":
        """The editor's work (no NeRF involved, so it may run in a worker thread): edits and relevance targets."""
        assert self.editor is not None
        originals = self.datamanager.original_images[job.indices].to(job.renders)  # [K, H, W, 3]
        # Editors written before `background` joined the interface still plug in: the composite below holds.
        background = {"background": _bchw(originals)} if _takes_background(self.editor) else {}
        result = self.editor.edit(_bchw(job.renders), job.prompt, conditioning=_bchw(originals), mask=job.masks,
                                  strength=job.strength, generator=self._generator, **background)
        edited = result.images.permute(0, 2, 3, 1).to(job.renders)  # [K, H, W, 3]
        allowed = result.mask if result.mask is not None else job.masks  # what the editor changed, else was given
        if allowed is not None:
            # Any editor, plug-ins included: outside the mask the training view is the photo, bit for bit.
            edited = torch.where(allowed.to(edited.device)[..., None], edited, originals)
        job.edited = edited
        job.allowed = allowed.to(edited.device) if allowed is not None else None
        if self.config.use_relevance:
            job.relevance = self._relevance_targets(job.indices, job.renders, job.prompt)
        return job

    def apply_edits(self, job: "EditJob") -> None:
        """Put finished edits into training and on disk (main thread, at a step boundary)."""
        names = self.view_names()
        for k, (index, edited) in enumerate(zip(job.indices, job.edited)):
            self.datamanager.set_view(index, edited)
            if self.edit_store is not None:
                self.edit_store.save_image(names[index], edited)
                if job.allowed is not None:
                    self.edit_store.save_mask(names[index], job.allowed[k])
            if self.history and names[index] not in self.history[-1].views_changed:
                self.history[-1].views_changed.append(names[index])
            self.edits_done += 1
            self._edit_log.advance()
        if job.relevance is not None:
            self._save_relevance_targets(job.indices, job.relevance)
        self.write_history()

    def _overlapped_update(self, views: Sequence[int]) -> None:
        """Apply the edits started at the previous edit step (waiting for them if needed), then start these."""
        self.finish_overlapped_edits()
        job = self.prepare_edits(views)
        self._worker = self._worker or EditWorker(self.editor_device())
        self._in_flight = self._worker.submit(self.run_edits, job)

    def finish_overlapped_edits(self) -> None:
        """Wait for the edits in flight, if any, and put them into training."""
        if self._in_flight is not None:
            job = self._worker.result(self._in_flight)
            self._in_flight = None
            self.apply_edits(job)

    def editor_device(self) -> torch.device:
        return torch.device(getattr(self.editor, "device", self.device))

    def reset_edits(self) -> None:
        """Viewer button: back to the original views (the dataset on disk was never touched)."""
        self.datamanager.reset_views()
        if self.edit_store is not None:
            self.edit_store.clear_images()
        if self.history:
            self.history[-1].views_changed.clear()
            self.write_history()
        CONSOLE.print("[yellow]Edits reset: training on the original views again")


def _takes_background(editor: Editor) -> bool:
    parameters = inspect.signature(editor.edit).parameters
    return "background" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def _bchw(images: torch.Tensor) -> torch.Tensor:
    """[K, H, W, 3] -> [K, 3, H, W] (a single view [H, W, 3] -> [1, 3, H, W])"""
    if images.ndim == 3:
        images = images[None]
    return images.permute(0, 3, 1, 2).float()
