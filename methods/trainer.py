"""nerfstudio's Trainer with checkpoints written atomically, so a kill at any moment leaves a loadable run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Type

import torch

from nerfstudio.engine.trainer import Trainer, TrainerConfig

from nerf_edit.io import atomic_write


@dataclass
class WYSTrainerConfig(TrainerConfig):
    """TrainerConfig whose trainer never leaves a torn checkpoint behind."""

    _target: Type = field(default_factory=lambda: WYSTrainer)


class WYSTrainer(Trainer):
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
