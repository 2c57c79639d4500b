"""nerfstudio's Trainer with checkpoints written atomically (a kill at any moment leaves a loadable run), and
`ns-train wys*` ending through the library's one exit path (`exits_on_user_error`): every user error, wherever
it is found (settings, data, checkpoint, editor), is one `error:` line with exit status 2, and Ctrl-C one
`interrupted:` line with exit status 130."""

from __future__ import annotations

import pickle
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Type

import torch
from nerfstudio.configs.base_config import LocalWriterConfig, LoggingConfig
from nerfstudio.engine.trainer import Trainer, TrainerConfig
from nerfstudio.utils import writer

from nerf_edit.core.io import atomic_write
from nerf_edit.errors import UsageError, exits_on_user_error
from nerf_edit_methods.validate import check_trainer_config, remove_unused_run_folder


class RunLocalWriter(writer.LocalWriter):
    """nerfstudio's progress table counting this run's iterations. A run continued with --load-dir from step S
    trains steps S .. S+N-1 but nerfstudio shows the absolute step against N (`1040 (231.11%)`) and an ETA of
    (N − step) iterations, negative and printed as nearly a day. Here a row shows `k (k/N %)`, k counted from S, and
    the ETA counts to S+N (`count_this_run` sets both)."""

    def write_stats_log(self, step: int) -> None:
        start = writer.GLOBAL_BUFFER.get("run_start", 0)
        absolute = {key: writer.GLOBAL_BUFFER[key] for key in ("step", "max_iter")}
        writer.GLOBAL_BUFFER["step"], writer.GLOBAL_BUFFER["max_iter"] = absolute["step"] - start, absolute["max_iter"] - start
        try:
            super().write_stats_log(step - start)
        finally:
            writer.GLOBAL_BUFFER.update(absolute)


def count_this_run(start_step: int, iterations: int) -> None:
    """The progress table and its ETA count this run's `iterations` from `start_step` (after nerfstudio's writer
    set-up, which counts them from 0)."""
    writer.GLOBAL_BUFFER["run_start"] = start_step
    writer.GLOBAL_BUFFER["max_iter"] = start_step + iterations


def run_logging() -> LoggingConfig:
    return LoggingConfig(local_writer=LocalWriterConfig(enable=True, _target=RunLocalWriter))


@dataclass
class WYSTrainerConfig(TrainerConfig):
    """TrainerConfig whose trainer never leaves a torn checkpoint behind and counts progress from where it starts."""

    _target: Type = field(default_factory=lambda: WYSTrainer)
    logging: LoggingConfig = field(default_factory=run_logging)
    """nerfstudio's logging; the progress table counts this run's iterations (RunLocalWriter)."""

    def __post_init__(self) -> None:
        """ns-train reads --load-config before it calls anything of ours: a missing file is caught here, when tyro
        builds the config from the command line (the registered defaults have no load_config)."""
        with exits_on_user_error():
            if self.load_config is not None and not Path(self.load_config).is_file():
                raise UsageError(f"--load-config {str(self.load_config)!r} is not a file: pass the config.yml of an "
                                 f"earlier run")

    def set_timestamp(self) -> None:
        """ns-train calls this first, before it prints the config, writes the run folder and builds anything: every
        setting is checked here, and a bad one stops with one `error:` line, exit status 2 (validate.py)."""
        with exits_on_user_error():
            check_trainer_config(self)
        super().set_timestamp()


class WYSTrainer(Trainer):
    def setup(self, test_mode="val") -> None:
        """nerfstudio's set-up (datamanager, model, editor, checkpoint), inside the one exit path; progress counts
        this run's iterations, as plain lines where the output is not a terminal (a log file)."""
        with exits_on_user_error(self.interrupted):
            if not sys.stdout.isatty():  # no cursor movement and redrawn rows in logs
                self.config.logging.local_writer.max_log_size = 0
            super().setup(test_mode=test_mode)
            count_this_run(self._start_step, self.config.max_num_iterations)

    def train(self) -> None:
        """nerfstudio's training loop, inside the one exit path."""
        with exits_on_user_error(self.interrupted):
            super().train()

    @property
    def interrupted(self) -> str:
        """What a Ctrl-C leaves."""
        return (f"the run keeps its last checkpoint in {str(self.checkpoint_dir)!r}: continue it with "
                f"--load-dir {str(self.checkpoint_dir)!r}")

    def _load_checkpoint(self) -> None:
        """As nerfstudio's, but a checkpoint that does not fit this model (other scene, other settings, copied
        without its config.yml so validate.py could not compare) stops with one line, and the run folder made for
        this run is removed again if nothing but its config is in it."""
        try:
            super()._load_checkpoint()
            rebind_optimizers(self.optimizers, self.pipeline.get_param_groups())
        except (RuntimeError, KeyError, EOFError, pickle.UnpicklingError) as error:
            # Only what a checkpoint that doesn't fit raises: torch's state_dict mismatch, an optimizer group this
            # model lacks (KeyError), a truncated or foreign file. Anything else is a bug and keeps its traceback.
            mismatch = not isinstance(error, RuntimeError) or "state_dict" in str(error) or "size mismatch" in str(error)
            if not mismatch or (self.config.load_dir is None and self.config.load_checkpoint is None):
                raise
            source = self.config.load_dir or self.config.load_checkpoint
            first = " ".join(str(error).split())[:300]
            remove_unused_run_folder(self.base_dir, self.config.output_dir)
            raise UsageError(f"the checkpoint in {str(source)!r} does not fit this model ({type(error).__name__}: "
                             f"{first}): continue from a nerfacto or wys run of the same scene with the same "
                             f"--pipeline.model settings") from None

    def save_checkpoint(self, step: int) -> None:
        """As nerfstudio's, but the file is written beside the checkpoint folder and renamed into it: killed
        mid-save, a run keeps its previous checkpoint (nerfstudio loads the highest step in the folder, and a
        half-written one would stop every resume and render)."""
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        checkpoint_path: Path = self.checkpoint_dir / f"step-{step:09d}.ckpt"
        pipeline = self.pipeline.module if hasattr(self.pipeline, "module") else self.pipeline
        state = {
            "step": step,
            "pipeline": pipeline.state_dict(),
            "optimizers": {k: v.state_dict() for (k, v) in self.optimizers.optimizers.items()},
            "schedulers": {k: v.state_dict() for (k, v) in self.optimizers.schedulers.items()},
            "scalers": self.grad_scaler.state_dict(),
        }
        # The temporary file must not be inside the folder: nerfstudio parses every file name there as a step.
        atomic_write(checkpoint_path, lambda tmp: torch.save(state, tmp), temporary_dir=self.checkpoint_dir.parent)
        if self.config.save_only_latest_checkpoint:
            for path in self.checkpoint_dir.glob("*.ckpt"):
                if path != checkpoint_path:
                    path.unlink()


def rebind_optimizers(optimizers, param_groups) -> None:
    """Point each optimiser at the model's parameters, keeping the moments it loaded.

    splatfacto's load_state_dict replaces its Gaussian parameters with new tensors of the checkpoint's size after
    nerfstudio 1.1.5's trainer built the optimisers on the old ones (trainer.py: setup_optimizers, then
    _load_checkpoint): they would step orphans, and gsplat's densification (strategy/ops.py) would grow the stale
    tensors. nerfacto's parameters are never replaced: nothing changes for it.
    `optimizers`: nerfstudio's Optimizers; `param_groups`: the pipeline's {name: [Parameter, ...]}."""
    for name, optimizer in optimizers.optimizers.items():
        params = list(param_groups.get(name, []))
        group = optimizer.param_groups[0]
        if len(params) != len(group["params"]) or all(a is b for a, b in zip(group["params"], params)):
            continue
        for old, new in zip(group["params"], params):
            if old in optimizer.state:
                optimizer.state[new] = optimizer.state.pop(old)
        group["params"] = params
        optimizers.parameters[name] = params
