"""The dataset update of a 3D edit run: training views rendered, edited where relevant, and put back into training.

An update of K views is a job in three parts, so the editor's part may run beside training:
  prepare (main thread, at a step boundary): the views rendered, their edit masks;
  run     (the editor; on a worker thread with --pipeline.overlap-edits): the edits and new relevance targets;
  apply   (main thread, at a step boundary): the edits into training, on disk and into the chain's record.
As the official code: the edit starts from the noised render, is conditioned on the original view, and outside
the mask the view is the original photo (in2n_pipeline.py ~213), so the render's blur and floaters are never fed
back into training (the editor's `keep_background`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import torch

from nerf_edit.core.progress import Progress
from nerf_edit.editing.editor import Editor
from nerf_edit.scene.chain import EditChain
from nerf_edit.scene.settings import EditSettings
from nerf_edit.scene.targets import RelevanceTargets, RenderView, bchw
from nerf_edit.scene.views import EditableViews
from nerf_edit.scene.worker import EditWorker

# (a view's rendered relevance [H, W], its relevance target [H, W] or None, τ) -> the pixels its edit may change [H, W]
EditMask = Callable[[torch.Tensor, Optional[torch.Tensor], float], torch.Tensor]


@dataclass
class EditJob:
    """One dataset update of K views, from render to result."""

    indices: List[int]
    renders: torch.Tensor  # [K, H, W, 3] the views as the scene renders them
    masks: Optional[torch.Tensor]  # [K, H, W] bool, where the edits may act (None: the editor decides)
    strength: float  # the noise level the edits start from
    prompt: str
    edited: Optional[torch.Tensor] = None  # [K, H, W, 3] results, the photo outside the masks
    relevance: Optional[torch.Tensor] = None  # [K, H, W] new relevance targets
    allowed: Optional[torch.Tensor] = None  # [K, H, W] bool, where each edit was allowed to change the view


class DatasetUpdate:
    """Edits views of `views` with `editor`: `render(index)` renders a training view, `edit_mask` (None: no
    relevance, the editor decides) cuts its mask; with `targets` each edit also refreshes the views' relevance
    targets. Edits go into `chain`'s record and its store; `seed` seeds the diffusion noise."""

    def __init__(self, views: EditableViews, editor: Editor, render: RenderView, edit_mask: Optional[EditMask],
                 targets: Optional[RelevanceTargets], chain: EditChain, seed: int, log: Progress):
        self.views, self.editor, self.render, self.edit_mask = views, editor, render, edit_mask
        self.targets, self.chain, self.log = targets, chain, log
        self.generator = torch.Generator().manual_seed(seed)
        self.done = 0  # views edited by this run
        self.worker: Optional[EditWorker] = None  # --pipeline.overlap-edits
        self.in_flight = None

    def edit(self, indices: Sequence[int], settings: EditSettings, strength: float) -> None:
        """Edit views `indices` now, in one editor call."""
        self.apply(self.run(self.prepare(indices, settings, strength)))

    def prepare(self, indices: Sequence[int], settings: EditSettings, strength: float) -> EditJob:
        """What an update needs from the scene: the views rendered, their masks (`settings.tau`)."""
        settings.apply_to(self.editor.config)
        renders, masks = [], []
        for index in indices:
            outputs = self.render(index)
            renders.append(outputs["rgb"].clamp(0, 1))  # [H, W, 3]
            if self.edit_mask is not None:
                masks.append(self.edit_mask(outputs["relevance"][..., 0], self.target_of(index), settings.tau))
        return EditJob(list(indices), torch.stack(renders), torch.stack(masks) if masks else None, strength,
                       settings.prompt)

    def target_of(self, index: int) -> Optional[torch.Tensor]:
        """View `index`'s relevance target [H, W], None where it has none yet."""
        batch = self.views.image_batch
        return batch["relevance"][index, ..., 0] if bool(batch["relevance_valid"][index].any()) else None

    def run(self, job: EditJob) -> EditJob:
        """The editor's work (nothing of the scene, so it may run on a worker thread): edits and new targets."""
        originals = bchw(self.views.original_images[job.indices].to(job.renders))  # [K, 3, H, W]
        result = self.editor.edit(bchw(job.renders), job.prompt, conditioning=originals, mask=job.masks,
                                  strength=job.strength, generator=self.generator, background=originals)
        job.edited = result.images.permute(0, 2, 3, 1).to(job.renders)  # [K, H, W, 3]
        job.allowed = None if result.mask is None else result.mask.to(job.edited.device)
        if self.targets is not None:
            job.relevance = self.targets.of_views(job.indices, job.renders, job.prompt)
        return job

    def apply(self, job: EditJob) -> None:
        """Put finished edits into training and on disk."""
        store = self.chain.store
        for k, (index, edited) in enumerate(zip(job.indices, job.edited)):
            name = self.views.names[index]
            self.views.set_view(index, edited)
            if store is not None:
                store.save_image(name, edited)
                if job.allowed is not None:
                    store.save_mask(name, job.allowed[k])
            self.chain.record_view(name)
            self.done += 1
            self.log.advance()
        if job.relevance is not None:
            self.targets.save(job.indices, job.relevance)
        self.chain.write()

    def overlap(self, indices: Sequence[int], settings: EditSettings, strength: float, device: torch.device) -> None:
        """--pipeline.overlap-edits: apply the edits started at the previous edit step (waiting for them if
        needed), then start these on the worker (its own CUDA stream on `device` on a GPU)."""
        self.finish()
        job = self.prepare(indices, settings, strength)
        self.worker = self.worker or EditWorker(device)
        self.in_flight = self.worker.submit(self.run, job)

    def discard(self) -> None:
        """Wait for the edits in flight, if any, and drop their edited views (a reset of the edits was asked for
        after they started: they must not come back). Their refreshed relevance targets are kept, as a reset keeps
        the targets of edits that landed before it: the run stays the sequential run's."""
        if self.in_flight is not None:
            job = self.worker.result(self.in_flight)
            self.in_flight = None
            if job.relevance is not None:
                self.targets.save(job.indices, job.relevance)

    def finish(self) -> None:
        """Wait for the edits in flight, if any, and put them into training."""
        if self.in_flight is not None:
            job = self.worker.result(self.in_flight)
            self.in_flight = None
            self.apply(job)
