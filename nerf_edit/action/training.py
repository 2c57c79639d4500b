"""What EditAction's two trainers share (the IP2P fine-tuning in `train.py`, the TimeSformer action recogniser in
`recognizer.py`): accelerate set-up, seeded global batches, atomic `save_state` checkpoints, resume, and writing a
`save_pretrained` result into the output folder so that a half-written one never loads.

Every random draw of a step is made for the *global* batch from a generator seeded by (seed, step), and each
process takes its slice: a resumed run continues exactly as the uninterrupted one, and N processes with batch B/N
compute what one process with batch B does.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import torch

from nerf_edit.errors import UsageError
from nerf_edit.validate import check_at_least

CHECKPOINTS_DIR = "checkpoints"


@dataclass
class CheckpointedRun:
    """Checkpoints, resume, logging and device of a training run (flags shared by both trainers)."""

    checkpoint_every: int = 500
    """Save the full training state (accelerate save_state) every this many steps, and at the end."""
    checkpoints_total_limit: Optional[int] = 3
    """Keep only this many newest checkpoints (None keeps all)."""
    resume: Optional[str] = None
    """`latest` (newest checkpoint in OUTPUT/checkpoints, a fresh start when there is none) or a checkpoint folder."""
    stop_after: Optional[int] = None
    """Stop (with a checkpoint) after this many steps in this invocation, e.g. to fit a cluster's time limit."""
    log_with: Literal["tensorboard", "none"] = "tensorboard"
    """Loss logging (OUTPUT/logs; `tensorboard --logdir OUTPUT/logs`); skipped with a note where not installed."""
    log_every: int = 10
    """Steps between plain progress lines when stdout is not a terminal."""
    cpu: bool = False
    """Train on the CPU even where a GPU exists."""

    def check_run(self) -> None:
        """UsageError (one line) on run settings that cannot work."""
        check_at_least("--checkpoint-every", self.checkpoint_every, 1)
        check_at_least("--log-every", self.log_every, 1)
        if self.stop_after is not None:
            check_at_least("--stop-after", self.stop_after, 1)
        if self.checkpoints_total_limit is not None:  # 0 would delete the checkpoint just written
            check_at_least("--checkpoints-total-limit", self.checkpoints_total_limit, 1)


def step_generator(seed: int, micro_step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + micro_step)


def global_indices(seed: int, micro_step: int, global_batch: int, count: int) -> list[int]:
    """The item indices of a global micro-batch: consecutive slices of per-epoch permutations (seeded by epoch)."""
    permutations: dict[int, torch.Tensor] = {}
    indices = []
    for position in range(micro_step * global_batch, (micro_step + 1) * global_batch):
        epoch, offset = divmod(position, count)
        if epoch not in permutations:
            permutations[epoch] = torch.randperm(count, generator=torch.Generator().manual_seed(seed * 7919 + epoch))
        indices.append(int(permutations[epoch][offset]))
    return indices


def _checkpoint_step(path: Path) -> Optional[int]:
    step = path.name.split("-", 1)[1] if "-" in path.name else ""
    return int(step) if step.isdigit() else None


def find_checkpoint(output: Path, resume: str) -> Optional[Path]:
    """The checkpoint folder to resume from (None: fresh start); UsageError when an explicit one is not one."""
    if resume == "latest":
        found = [p for p in (Path(output) / CHECKPOINTS_DIR).glob("checkpoint-*") if _checkpoint_step(p) is not None]
        return max(found, key=_checkpoint_step) if found else None
    path = Path(resume)
    if not path.is_dir() or not path.name.startswith("checkpoint-") or _checkpoint_step(path) is None:
        raise UsageError(f"--resume {resume!r} is not a checkpoint folder (OUTPUT/{CHECKPOINTS_DIR}/checkpoint-<step>): "
                         f"pass one, or `latest`")
    return path


def tracker(log_with: str) -> Optional[str]:
    """accelerate's `log_with` for the requested logger, None (with a note) where it is not installed."""
    if log_with != "tensorboard":
        return None
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        print("note: tensorboard is not installed; losses are not logged (pip install tensorboard)")
        return None
    return "tensorboard"


def make_accelerator(output: Path, gradient_accumulation_steps: int, mixed_precision: str, cpu: bool,
                     log_with: Optional[str]):
    """A fresh accelerate state for this run: accelerate keeps one per process, so a second run in the same
    process (a sweep, a test) would otherwise inherit the first one's settings."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import ProjectConfiguration

    AcceleratorState._reset_state(True)
    return Accelerator(
        gradient_accumulation_steps=gradient_accumulation_steps,
        mixed_precision=mixed_precision,
        log_with=log_with,
        project_config=ProjectConfiguration(project_dir=str(output), logging_dir=str(Path(output) / "logs")),
        cpu=cpu,
    )


def reset_accelerate_state() -> None:
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)


def save_checkpoint(accelerator, output: Path, step: int, total_limit: Optional[int]) -> None:
    """accelerate's full training state at `step`, complete or absent (written aside, then renamed); the oldest
    beyond `total_limit` are removed."""
    folder = Path(output) / CHECKPOINTS_DIR / f"checkpoint-{step}"
    temporary = folder.with_name(f".{folder.name}.tmp")
    if accelerator.is_main_process and temporary.exists():
        shutil.rmtree(temporary)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(temporary))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(temporary, folder)
        if total_limit is not None:
            older = sorted((p for p in folder.parent.glob("checkpoint-*") if _checkpoint_step(p) is not None),
                           key=_checkpoint_step)
            for stale in older[: max(0, len(older) - total_limit)]:
                shutil.rmtree(stale)
    accelerator.wait_for_everyone()


def resume(accelerator, output: Path, resume_flag: Optional[str], resume_from: Optional[Path]) -> int:
    """Load `resume_from` into the prepared objects. -> the step training continues from (0: a fresh start)"""
    if resume_from is not None:
        accelerator.load_state(str(resume_from))
        step = _checkpoint_step(resume_from)
        accelerator.print(f"resumed from {resume_from} at step {step}")
        return step
    if resume_flag:
        accelerator.print(f"no checkpoint in {Path(output) / CHECKPOINTS_DIR}: starting from step 0")
    return 0


def move_into(temporary: Path, output: Path, last: str) -> None:
    """Move every entry of `temporary` into `output`, replacing what is there, the entry named `last` (the file
    that makes the folder loadable, e.g. model_index.json or config.json) last of all; `temporary` is removed."""
    (output / last).unlink(missing_ok=True)
    for entry in sorted(temporary.iterdir(), key=lambda p: p.name == last):
        target = output / entry.name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(entry, target)
    temporary.rmdir()
