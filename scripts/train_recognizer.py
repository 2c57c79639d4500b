"""nerf-edit-train-recognizer: fine-tune a TimeSformer action recogniser on the video segments of action pairs,
for EditAction's accuracy (`nerf-edit-eval-action --recognizer OUTPUT`).

    nerf-edit-train-recognizer --data data/mpii_pairs --videos MPII-Cooking/videos --output outputs/recognizer_lc \
        --model facebook/timesformer-base-finetuned-ssv2
    accelerate launch --num_processes 4 -m nerf_edit_scripts.train_recognizer --data ... --batch-size 4   # 4 GPUs
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import tyro

from nerf_edit.action.recognizer import RecognizerTrainConfig, train_recognizer
from nerf_edit_scripts.cli import run


@dataclass
class TrainRecognizer:
    """Fine-tune TimeSformer (transformers) to name the action of each pair's source segment; writes the model and
    its video processor (save_pretrained), checkpoints and tensorboard logs."""

    config: Annotated[RecognizerTrainConfig, tyro.conf.arg(name="")] = field(default_factory=RecognizerTrainConfig)
    """Data, model, optimisation, checkpoints (flags without a prefix)."""

    def main(self) -> None:
        train_recognizer(self.config)

    @property
    def interrupted(self) -> str:
        """What a Ctrl-C leaves (checkpoints are written atomically: the newest complete one is intact)."""
        return (f"continue with the same command and --resume latest (newest checkpoint in "
                f"{self.config.output / 'checkpoints'})")


def entrypoint() -> None:
    run(TrainRecognizer)


if __name__ == "__main__":
    entrypoint()
