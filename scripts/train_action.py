"""nerf-edit-train-action: EditAction fine-tuning of InstructPix2Pix on before/after action pairs.

    nerf-edit-train-action --data data/action_pairs --output outputs/editaction --model timbrooks/instruct-pix2pix
    accelerate launch --num_processes 4 -m nerf_edit_scripts.train_action --data ... --batch-size 16   # 4 GPUs

The result is a diffusers IP2P folder: `nerf-edit-image --model OUTPUT`, `ns-train wys --pipeline.editing.model OUTPUT`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import tyro

from nerf_edit.action.train import ActionTrainConfig, train_editaction
from nerf_edit_scripts.cli import run


@dataclass
class TrainAction:
    """Fine-tune an IP2P-architecture model with EditAction's losses (L_static + λ_action·L_action + λ_reg·L_reg,
    cross-attention frozen); writes a diffusers pipeline folder, checkpoints and tensorboard logs."""

    config: Annotated[ActionTrainConfig, tyro.conf.arg(name="")] = field(default_factory=ActionTrainConfig)
    """Data, model, losses, optimisation, checkpoints (flags without a prefix)."""

    def main(self) -> None:
        train_editaction(self.config)

    @property
    def interrupted(self) -> str:
        """What a Ctrl-C leaves (checkpoints are written atomically: the newest complete one is intact)."""
        return (f"continue with the same command and --resume latest (newest checkpoint in "
                f"{self.config.output / 'checkpoints'})")


def entrypoint() -> None:
    run(TrainAction)


if __name__ == "__main__":
    entrypoint()
