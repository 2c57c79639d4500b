"""The chain of edits a run belongs to, and how a run continues the run it loads (`--load-dir`).

`<run>/edit_history.json` holds the chain: one step per edit run, oldest first, each with its run folder, the run it
continued from, prompt, editor, localiser, settings and the views it changed. A run that continues another copies
that run's chain: as a *new edit* it appends a step (the other run's result is its starting point); as a *resume*
it appends a step with the same prompt and settings that carries on the other run's work.

Undo is continuing from an earlier run of the chain: every run keeps its own edits and starting views on disk.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from nerf_edit.core.io import atomic_write
from nerf_edit.errors import UsageError

HISTORY_FILE = "edit_history.json"
CONTINUE_CHOICES = ("auto", "resume", "new-edit")
# Pipeline settings that change what an edit does (besides the prompt, the editor and its EditorConfig).
EDIT_SETTINGS = ("lower_bound", "upper_bound", "use_relevance", "normalize_rendered_relevance")


@dataclass
class EditStep:
    """One run of the chain."""

    run: str  # the run folder
    continued_from: Optional[str]  # the run folder it loaded (--load-dir's run), None for a fresh start
    continued_as: str  # "start" (from scratch or a reconstruction), "new-edit" or "resume"
    prompt: str
    editor: str
    localizer: str
    settings: dict  # the editing settings: EditorConfig's fields and EDIT_SETTINGS
    views_changed: List[str] = field(default_factory=list)

    def same_edit(self, other: "EditStep") -> bool:
        """The same instruction made the same way (what `--pipeline.continue-as auto` resumes)."""
        return (self.prompt.strip(), self.editor, self.settings) == (other.prompt.strip(), other.editor, other.settings)


def edit_step(pipeline_config, run: Path, continued_from: Optional[Path], continued_as: str) -> EditStep:
    """This run's step from its pipeline config (WYSPipelineConfig)."""
    editing = dataclasses.asdict(pipeline_config.editing)
    settings = {**_plain(editing), **{name: getattr(pipeline_config, name) for name in EDIT_SETTINGS}}
    return EditStep(run=str(run), continued_from=str(continued_from) if continued_from else None,
                    continued_as=continued_as, prompt=pipeline_config.prompt, editor=pipeline_config.editor,
                    localizer=pipeline_config.editing.localizer, settings=settings)


def read_history(run: Path) -> List[EditStep]:
    """The chain a run wrote ([] when it wrote none: a reconstruction, or a run older than the history file)."""
    path = Path(run) / HISTORY_FILE
    if not path.is_file():
        return []
    try:
        steps = json.loads(path.read_text())["chain"]
        return [EditStep(**step) for step in steps]
    except (ValueError, KeyError, TypeError) as error:
        raise UsageError(f"{str(path)!r} is not an edit history ({type(error).__name__}): move it away to continue "
                         f"without the chain's record") from error


def write_history(run: Path, chain: List[EditStep]) -> None:
    """Atomically: a kill leaves the previous version or this one."""
    text = json.dumps({"chain": [dataclasses.asdict(step) for step in chain]}, indent=2)
    atomic_write(Path(run) / HISTORY_FILE, lambda path: path.write_text(text))


def previous_step(previous_run: Path, pipeline_config=None) -> Optional[EditStep]:
    """The edit the loaded run made: the last step of its history, else one made from its `pipeline_config` (the
    pipeline settings of its config.yml, for a wys run older than the history file; the caller reads it); None for
    a run that made no edit (wys-reconstruct, nerfacto)."""
    chain = read_history(previous_run)
    if chain:
        return chain[-1]
    config = pipeline_config
    if config is None or not getattr(config, "makes_edits", False) or not getattr(config, "prompt", ""):
        return None
    return edit_step(config, previous_run, None, "start")


def decide(continue_as: str, previous: Optional[EditStep], this: EditStep) -> str:
    """How this run continues the loaded one: "start" (it made no edit), "resume" or "new-edit"."""
    if previous is None:
        return "start"
    if continue_as == "auto":
        return "resume" if this.same_edit(previous) else "new-edit"
    return continue_as


def announce(mode: str, previous_run: Path, previous: Optional[EditStep], this: EditStep) -> str:
    """The one start-up line saying what this run does with the one it loads."""
    if mode == "start":
        return f"Editing the reconstruction {previous_run} with {this.prompt!r}"
    if mode == "resume":
        return (f"Resuming {previous_run}: same prompt {this.prompt!r} and settings "
                f"(--pipeline.continue-as new-edit edits on top of it instead)")
    reason = "its prompt was " + repr(previous.prompt) if previous.prompt.strip() != this.prompt.strip() else \
        "same prompt, other settings"
    return (f"New edit {this.prompt!r} on top of {previous_run} ({reason}): its result is this run's starting "
            f"point (--pipeline.continue-as resume resumes it instead)")


def _plain(value):
    """JSON-safe: tuples as lists, everything else as it is (EditorConfig holds numbers, strings and tuples)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value

