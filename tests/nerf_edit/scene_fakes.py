"""Small stand-ins for the 3D loop's part tests: views held in memory, a planted editor, a pipeline config."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from nerf_edit.config.editor import EditorConfig
from nerf_edit.editing.editor import Editor, EditRequest, EditResult
from nerf_edit.scene.views import EditableViews

OVER_EDIT = 0.2


class Views(EditableViews):
    """`count` random views of `size`², named view_0..."""

    def __init__(self, count: int = 5, size: int = 12, seed: int = 0):
        images = torch.rand(count, size, size, 3, generator=torch.Generator().manual_seed(seed))
        self.hold_views({"image": images}, [Path(f"images/view_{i}.png") for i in range(count)])


class PlantedEditor(Editor):
    """Relevance: the left half of the image. The edit: 1 − conditioning inside the ball of its mask and
    OVER_EDIT brighter everywhere else, as IP2P over-edits; the caller's mask is honoured by the interface."""

    def __init__(self, config=None, reads_conditioning: bool = True):
        super().__init__(config or EditorConfig())
        self.relevance_reads_conditioning = reads_conditioning
        self.relevance_calls, self.requests = [], []

    def relevance(self, images, instruction, conditioning=None, generator=None):
        self.relevance_calls.append((images.clone(), None if conditioning is None else conditioning.clone(), instruction))
        relevance = torch.zeros(images.shape[0], *images.shape[-2:])
        relevance[..., : images.shape[-1] // 2] = 1.0
        return relevance

    def run(self, request: EditRequest) -> EditResult:
        self.requests.append(request)
        edited = (request.images + OVER_EDIT).clamp(0, 1)  # over-edits what it is handed (the render)
        return EditResult(images=edited, mask=request.mask)


@dataclass
class LoopConfig:
    """The pipeline settings the parts read."""

    prompt: str = "turn the left half blue"
    edit_rate: int = 2
    edit_count: int = 1
    edit_batch: int = 1
    edit_schedule: str = "rate"
    sweep_every: int = 2500
    relevance_warmup_steps: int = 3
    edit_start_step: int = 0
    lower_bound: float = 0.02
    upper_bound: float = 0.98
    seed: int = 0
    editor: str = "tests:PlantedEditor"
    continue_as: str = "auto"
    use_relevance: bool = True
    normalize_rendered_relevance: bool = True
    makes_edits: bool = True
    editing: EditorConfig = field(default_factory=EditorConfig)
