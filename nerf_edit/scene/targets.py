"""Relevance targets of a 3D edit run: every training view's relevance for the current instruction (WYS: the
original view's, conditioned on its render), what the relevance field is trained on."""

from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

import torch

from nerf_edit.core.progress import Progress
from nerf_edit.editing.editor import Editor
from nerf_edit.scene.store import EditStore
from nerf_edit.scene.views import EditableViews

# index of a training view -> its render: {"rgb": [H, W, 3], "relevance": [H, W, 1], ...}
RenderView = Callable[[int], Dict[str, torch.Tensor]]


class RelevanceTargets:
    """The targets of `views` for one prompt at a time, computed by `editor` in batches of `batch` views, kept in
    `views` (what trains the field) and in `store` (what a resume restores). Their noise comes from their own
    generator seeded with `seed`, never from torch's global one: the targets then do not depend on what else drew
    random numbers before (or, with --pipeline.overlap-edits, at the same time on another thread), and an editor
    that draws image by image (IP2P's) gives each view the same target whatever `batch` is."""

    def __init__(self, views: EditableViews, editor: Editor, render: RenderView, device: torch.device,
                 store: Optional[EditStore] = None, batch: int = 1, terminal: bool = False, seed: int = 0):
        """`render(index)` renders a training view on `device` (the scene's)."""
        self.views, self.editor, self.render, self.device, self.store = views, editor, render, device, store
        self.generator = torch.Generator().manual_seed(seed)
        self.batch, self.terminal = batch, terminal
        self.ready = False  # every view has a target
        self.prompt: Optional[str] = None  # the prompt they are for (None: not known yet)

    def needed_for(self, prompt: str) -> bool:
        """Whether the targets must be (re)computed before edits with `prompt`. Targets already there whose prompt
        is not known (given from outside) are taken as this prompt's."""
        if self.ready and self.prompt is None:
            self.prompt = prompt
        return not self.ready or prompt != self.prompt

    def restored(self, prompt: str) -> None:
        """Targets were put back from a previous run's store, for `prompt`."""
        self.ready = self.views.has_all_relevance_targets()
        self.prompt = prompt if self.ready else None

    def compute(self, prompt: str) -> None:
        """Every view's target for `prompt`, `batch` views per editor call. An editor whose relevance reads the
        original view alone (`relevance_reads_conditioning = False`, colorkey) gets no render: rendering is the
        larger part of this on a CPU."""
        renders_needed = self.editor.relevance_reads_conditioning
        count = self.views.num_views
        with Progress("Relevance maps of the training views", count, "views", terminal=self.terminal,
                      announce=True) as progress:
            for first in range(0, count, self.batch):
                indices = list(range(first, min(first + self.batch, count)))
                renders = (torch.stack([self.render(index)["rgb"] for index in indices]) if renders_needed
                           else None)
                self.save(indices, self.of_views(indices, renders, prompt))
                progress.advance(len(indices))
        self.ready, self.prompt = True, prompt

    def of_views(self, indices: Sequence[int], renders: Optional[torch.Tensor], prompt: str) -> torch.Tensor:
        """The editor's relevance of the original views, conditioned on their renders [K, H, W, 3] (None: on the
        originals themselves, the editor's default). -> [K, H, W] on the CPU"""
        originals = self.views.original_images[list(indices)]
        if renders is None:
            return self.editor.relevance(bchw(originals.to(self.device)), prompt, generator=self.generator).cpu()
        return self.editor.relevance(bchw(originals.to(renders)), prompt, conditioning=bchw(renders),
                                     generator=self.generator).cpu()

    def save(self, indices: Sequence[int], relevance: torch.Tensor) -> None:
        """relevance [K, H, W] as the targets of views `indices`, in memory and on disk."""
        for index, target in zip(indices, relevance):
            self.views.set_relevance_target(index, target)
            if self.store is not None:
                self.store.save_relevance(self.views.names[index], target)


def bchw(images: torch.Tensor) -> torch.Tensor:
    """[K, H, W, 3] -> [K, 3, H, W] (a single view [H, W, 3] -> [1, 3, H, W])"""
    if images.ndim == 3:
        images = images[None]
    return images.permute(0, 3, 1, 2).float()
