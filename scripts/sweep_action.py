"""Pick EditAction's λ_action / λ_reg / learning rate the way the paper did: short runs ranked by held-out action
accuracy (the paper ranked 1000-step runs per λ).

    python scripts/sweep_action.py --data data/action_pairs --model tiny --resolution 64 --steps 200 \
        --lambda-action 0 1 5 --lambda-reg 0 1 --learning-rate 1e-3

Every run starts from the same model with the same seed and draws; the table (best first) is printed and written
as JSON to OUTPUT/sweep.json. Runs go to OUTPUT/run_<λa>_<λr>_<lr>/.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import List

from nerf_edit.action.accuracy import action_accuracy
from nerf_edit.action.data import read_pairs
from nerf_edit.action.train import ActionTrainConfig, train_editaction
from nerf_edit.core.io import atomic_write
from nerf_edit.models.loading import load_ip2p_pipeline
from nerf_edit_scripts.cli import run


@dataclass
class SweepAction:
    """Train one short run per (λ_action, λ_reg, learning rate) and rank them by held-out action accuracy."""

    data: Path
    """Pair folder with a held-out split."""
    output: Path = Path("outputs/editaction_sweep")
    """Folder of the runs and sweep.json."""
    model: str = "tiny"
    """Starting weights (hub id, local folder, or `tiny`)."""
    lambda_action: List[float] = field(default_factory=lambda: [0.0, 1.0, 5.0])
    """λ_action values to try."""
    lambda_reg: List[float] = field(default_factory=lambda: [0.0, 1.0])
    """λ_reg values to try."""
    learning_rate: List[float] = field(default_factory=lambda: [1e-3])
    """Learning rates to try."""
    steps: int = 200
    """Steps per run (the paper: 1000)."""
    batch_size: int = 8
    """Pairs per step."""
    resolution: int = 64
    """Training and evaluation image size."""
    negatives: int = 3
    """K negatives of the accuracy reading."""
    draws: int = 16
    """M (t, ε) draws of the accuracy reading."""
    action_timestep_fraction: float = 1.0
    """Passed to the trainer (L_action's t range)."""
    action_error: str = "sum"
    """Trainer's --action-error: `sum` (Eq. 5's squared norm) or `mean` (per latent element)."""
    negative_rule: str = "disjoint"
    """Trainer's --negatives: `disjoint` or `any`."""
    eval_timestep_fraction: float = 1.0
    """t range of the accuracy reading."""
    cpu: bool = False
    """Train on the CPU even where a GPU exists."""

    def main(self) -> list:
        everything = read_pairs(self.data)
        heldout = [pair for pair in everything if pair.split == "heldout"]
        vocabulary = [pair.instruction for pair in everything]
        start = action_accuracy(load_ip2p_pipeline(self.model), heldout, vocabulary, self.negatives, self.draws,
                                self.resolution, timestep_fraction=self.eval_timestep_fraction).accuracy
        print(f"start: held-out action accuracy {start:.3f}")
        rows = []
        for lambda_action, lambda_reg, lr in itertools.product(self.lambda_action, self.lambda_reg, self.learning_rate):
            folder = self.output / f"run_{lambda_action:g}_{lambda_reg:g}_{lr:g}"
            train_editaction(ActionTrainConfig(
                data=self.data, output=folder, model=self.model, resolution=self.resolution, steps=self.steps,
                batch_size=self.batch_size, learning_rate=lr, lambda_action=lambda_action, lambda_reg=lambda_reg,
                checkpoint_every=self.steps, checkpoints_total_limit=1, log_with="none", cpu=self.cpu,
                negatives=self.negative_rule, action_timestep_fraction=self.action_timestep_fraction,
                action_error=self.action_error))
            accuracy = action_accuracy(load_ip2p_pipeline(str(folder)), heldout, vocabulary, self.negatives,
                                       self.draws, self.resolution,
                                       timestep_fraction=self.eval_timestep_fraction).accuracy
            rows.append({"lambda_action": lambda_action, "lambda_reg": lambda_reg, "learning_rate": lr,
                         "action_accuracy": accuracy})
            print(f"λ_action {lambda_action:g}  λ_reg {lambda_reg:g}  lr {lr:g}: {accuracy:.3f}", flush=True)
        rows.sort(key=lambda row: -row["action_accuracy"])
        print("\n| λ_action | λ_reg | lr | held-out action accuracy |\n|---|---|---|---|")
        for row in rows:
            print(f"| {row['lambda_action']:g} | {row['lambda_reg']:g} | {row['learning_rate']:g} | "
                  f"{row['action_accuracy']:.3f} |")
        atomic_write(self.output / "sweep.json", lambda tmp: tmp.write_text(json.dumps(
            {"start": start, "runs": rows}, indent=2)))
        return rows


def entrypoint() -> None:
    run(SweepAction)


if __name__ == "__main__":
    entrypoint()
