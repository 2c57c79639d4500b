"""When a 3D edit run edits, which views and how strongly (WYS / instruct-nerf2nerf's iterative dataset update).

Two schedules: `rate` (WYS, instruct-nerf2nerf: `edit_count` updates of `edit_batch` views every `edit_rate ·
edit_batch` steps, every view once per cycle in a seeded random order) and `sweep` (instruct-gs2gs,
igs2gs_pipeline.py ~106-147: every `sweep_every` steps a sweep edits every view once, one update per step, in index
order). One seeded `random.Random` draws the view order and the noise levels, in the order the run asks for them, so
a seed gives the same run. Settings are read from the pipeline config: `edit_schedule`, `edit_rate`, `edit_count`,
`edit_batch`, `sweep_every`, `relevance_warmup_steps`, `edit_start_step`, `lower_bound`, `upper_bound`, `seed`.
"""

from __future__ import annotations

import random
from typing import List, Optional, Sequence


class EditSchedule:
    """Steps are the trainer's; the first one seen is this run's start (a run continued with --load-dir starts at
    its checkpoint's step)."""

    def __init__(self, config, num_views: int):
        self.config = config
        self.num_views = num_views
        self.rng = random.Random(config.seed)
        self.order: List[int] = []  # the views still to edit this cycle, for pop()
        self.sweep: List[int] = []  # the views still to edit in this sweep, in index order
        self.start_step: Optional[int] = None
        self.first_edit_step: Optional[int] = None  # None until relevance is ready (or not used)

    def started(self, step: int) -> bool:
        """Whether relevance and edits may begin at `step`: `edit_start_step` steps after this run's start."""
        if self.start_step is None:
            self.start_step = step
        return step >= self.start_step + self.config.edit_start_step

    def warm_up_from(self, step: int) -> None:
        """Relevance targets were (re)computed at `step`: the first edit waits while the field trains on them."""
        self.first_edit_step = step + self.config.relevance_warmup_steps

    def begin_at(self, step: int) -> bool:
        """Edits begin at `step` unless they already have (or wait for a warm-up); True when they begin now."""
        if self.first_edit_step is not None:
            return False
        self.first_edit_step = step
        return True

    def editing(self, step: int) -> bool:
        """Whether `step` is past the warm-up (edits are being made)."""
        return self.first_edit_step is not None and step >= self.first_edit_step

    def updates_due(self, step: int, paused: bool = False) -> int:
        """How many dataset updates (of `edit_batch` views each) to make at `step`: `edit_count` every
        `edit_rate · edit_batch` steps from the first edit step on, none while paused."""
        config = self.config
        if paused or not self.editing(step):
            return 0
        since = step - self.first_edit_step
        if config.edit_schedule == "sweep":
            if since % config.sweep_every == 0:
                self.sweep = list(range(self.num_views))
            return 1 if self.sweep else 0
        due = since % (config.edit_rate * config.edit_batch) == 0
        return config.edit_count if due else 0

    def next_views(self) -> List[int]:
        """The next `edit_batch` views (fewer at a sweep's end): every view once per cycle, in a seeded random order,
        or a sweep's next views in index order."""
        count = min(self.config.edit_batch, len(self.sweep)) if self.sweep else self.config.edit_batch
        return [self.next_view() for _ in range(count)]

    def next_view(self) -> int:
        if self.sweep:
            return self.sweep.pop(0)
        if not self.order:
            self.order = list(range(self.num_views))
            self.rng.shuffle(self.order)
        return self.order.pop()

    def strength(self) -> float:
        """The next edit's noise level, drawn in [lower_bound, upper_bound]."""
        return self.rng.uniform(self.config.lower_bound, self.config.upper_bound)

    def resume(self, edited: Sequence[int]) -> None:
        """A resumed run edits the views without an edit first, so the interrupted cycle finishes before any view
        is edited twice."""
        self.order = resume_order(self.num_views, edited, self.rng)


def resume_order(num_views: int, edited: Sequence[int], rng: random.Random) -> List[int]:
    """The order views are edited in after a resume, for `list.pop()` (which takes from the end): the views without
    an edit yet come first."""
    edited = set(edited)
    done = [i for i in range(num_views) if i in edited]
    pending = [i for i in range(num_views) if i not in edited]
    rng.shuffle(done)
    rng.shuffle(pending)
    return done + pending
