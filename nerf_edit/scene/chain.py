"""A 3D edit run's place in its edit chain (`--load-dir`, `--pipeline.continue-as`): its history file, and what it
takes over from the run it continues (that run's result as its starting views, or its edits to resume)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Optional, Tuple

from nerf_edit.scene.history import EditStep, announce, decide, edit_step, previous_step, read_history, write_history
from nerf_edit.scene.store import EditStore
from nerf_edit.scene.views import EditableViews


class EditChain:
    """The chain of `run_dir` (None: a run with no folder, e.g. built in code), over `views`, with this run's
    `store`; `say` prints the one line each decision gets."""

    def __init__(self, run_dir: Optional[Path], views: EditableViews, store: Optional[EditStore] = None,
                 say: Callable[[str], None] = print):
        self.run_dir, self.views, self.store, self.say = run_dir, views, store, say
        self.history: List[EditStep] = []  # the chain this run belongs to, this run's step last

    @property
    def this(self) -> Optional[EditStep]:
        return self.history[-1] if self.history else None

    def start(self, config, previous_run: Optional[Path], previous_config=None) -> Tuple[str, Optional[EditStep]]:
        """This run's step from its pipeline `config`: a fresh start, a resume of `previous_run` or a new edit on
        top of it (`previous_config`: that run's pipeline settings, for a run older than the history file); a new
        edit's starting views are set here. Writes edit_history.json. -> (how it continues, the previous step)"""
        this = edit_step(config, self.run_dir, previous_run, "start")
        chain: List[EditStep] = []
        previous = None
        if previous_run is not None:
            previous = previous_step(previous_run, previous_config)
            this.continued_as = decide(config.continue_as, previous, this)
            chain = read_history(previous_run) or ([previous] if previous is not None else [])
            self.say(announce(this.continued_as, previous_run, previous, this))
            if this.continued_as == "resume":
                this.views_changed = list(chain[-1].views_changed)
            elif this.continued_as == "new-edit":
                self.rebase_on(EditStore.for_run(previous_run))
        self.history = [*chain, this]
        self.write()
        return this.continued_as, previous

    def rebase_on(self, previous: EditStore) -> None:
        """A new edit on top of another run: the views it left (its edits, else the views it started from) become
        this run's original views, and are kept in this run's edits/base/."""
        views = previous.result_views()
        for index, name in enumerate(self.views.names):
            if name in views:
                self.views.set_original(index, views[name])
                if self.store is not None:
                    self.store.save_base(name, views[name])
        self.say(f"Starting from {sum(name in views for name in self.views.names)} edited views of {previous.root}")

    def restore(self, previous: EditStore) -> Tuple[List[int], int]:
        """Resume: put back the starting views, edited views and relevance targets `previous` holds, and keep them
        in this run's store. -> (indices of the views with an edit, number of relevance targets)"""
        edited, targets = previous.restore_into(self.views, self.views.names, copy_to=self.store)
        if edited or targets:
            self.say(f"Restored {len(edited)} edited views and {targets} relevance targets from {previous.root}")
        return edited, targets

    def record_view(self, name: str) -> None:
        if self.this is not None and name not in self.this.views_changed:
            self.this.views_changed.append(name)

    def record_prompt(self, prompt: str) -> None:
        """The run's record: the prompt it edits with now."""
        if self.this is not None:
            self.this.prompt = prompt
            self.write()

    def clear_views(self) -> None:
        if self.this is not None:
            self.this.views_changed.clear()
            self.write()

    def write(self) -> None:
        if self.run_dir is not None and self.history:
            write_history(self.run_dir, self.history)
