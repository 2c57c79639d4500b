"""nerf-edit-eval-action: held-out action accuracy of IP2P-architecture models (before/after EditAction fine-tuning).

    nerf-edit-eval-action --data data/action_pairs --models tiny outputs/editaction

For each held-out pair the true instruction and K negatives are scored by the model's mean denoising error over M
(t, ε) draws shared by all candidates (Diffusion Classifier); the lowest wins. Every model answers the same
questions (same negatives, same draws). With --fid: FID between each model's edits of the held-out "before"
images and the true "after" images (torchmetrics), only where the Inception weights are already on disk.
"""

from __future__ import annotations

from nerf_edit.validate import UsageError

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import List

import torch

from nerf_edit.action.accuracy import action_accuracy
from nerf_edit.action.data import load_pair_image, read_pairs
from nerf_edit.io import atomic_write
from nerf_edit.loading import load_ip2p_pipeline
from nerf_edit_scripts.cli import run

# torchmetrics' FID uses torch-fidelity's FeatureExtractorInceptionV3, which downloads this file on first use.
FID_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"


def fid_weights_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS


def check_fid_available() -> None:
    """ValueError (one line) unless FID can run offline: never start a download that would hang."""
    try:
        import torch_fidelity  # noqa: F401
        from torchmetrics.image.fid import FrechetInceptionDistance  # noqa: F401
    except ImportError:
        raise UsageError("--fid needs torchmetrics and torch-fidelity: pip install torchmetrics torch-fidelity") from None
    if not fid_weights_path().is_file():
        raise UsageError(f"--fid needs the Inception weights at {fid_weights_path()} (not present, and nothing is "
                         f"downloaded here): copy {FID_WEIGHTS} from a networked machine's torch hub cache, "
                         f"or drop --fid")


def edit_fid(pipe, pairs, resolution: int, steps: int, seed: int) -> float:
    """FID between the model's edits of the pairs' before images and their after images."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    fid = FrechetInceptionDistance(feature=2048, normalize=True)
    for pair in pairs:
        before = (load_pair_image(pair.before, resolution)[None] + 1) / 2
        after = (load_pair_image(pair.after, resolution)[None] + 1) / 2
        edited = pipe(pair.instruction, image=before, num_inference_steps=steps, guidance_scale=7.5,
                      image_guidance_scale=1.0, output_type="pt", generator=torch.Generator().manual_seed(seed)).images
        fid.update(after.float(), real=True)
        fid.update(edited.float().cpu(), real=False)
    return float(fid.compute())


@dataclass
class EvaluateAction:
    """Action accuracy (Diffusion-Classifier reading) of each model on the held-out pairs; optional FID."""

    data: Path
    """Pair folder with pairs.jsonl and a held-out split."""
    models: List[str] = field(default_factory=lambda: ["timbrooks/instruct-pix2pix"])
    """Models to compare (hub id, local folder from nerf-edit-train-action, or `tiny`)."""
    negatives: int = 3
    """K wrong instructions per pair (chance = 1/(K+1)), drawn from the data's other instructions."""
    draws: int = 16
    """M (t, ε) draws per pair, shared by all candidates."""
    resolution: int = 256
    """Images are resized to this square size (use the training resolution)."""
    timestep_fraction: float = 1.0
    """Draw t from the first fraction of the schedule (1: all of it; low noise carries most of the signal)."""
    seed: int = 0
    """Seed of the negatives and draws (the same questions for every model)."""
    fid: bool = False
    """Also FID of edits vs. true after images (needs the Inception weights on disk; inference at s_I 1, s_T 7.5)."""
    fid_steps: int = 100
    """Denoising steps of the FID edits (the paper: 100)."""
    device: str = "cpu"
    """Device of the models."""
    output: Path = Path("eval/action_accuracy.json")
    """JSON of the results."""

    def main(self) -> dict:
        if self.negatives < 1 or self.draws < 1:
            raise UsageError(f"--negatives and --draws must be >= 1, got {self.negatives} and {self.draws}")
        if self.resolution < 16 or self.resolution % 8:
            raise UsageError(f"--resolution must be >= 16 and a multiple of 8, got {self.resolution}")
        everything = read_pairs(self.data)
        heldout = [pair for pair in everything if pair.split == "heldout"]
        if not heldout:
            raise UsageError(f"{str(self.data)!r} has no held-out pairs (split `heldout`)")
        if self.fid:
            check_fid_available()
        vocabulary = [pair.instruction for pair in everything]
        results = {}
        print(f"{'model':40s} {'action accuracy':>16s}  (chance {1 / (self.negatives + 1):.3f}, "
              f"{len(heldout)} pairs, K={self.negatives}, M={self.draws})")
        for model in self.models:
            pipe = load_ip2p_pipeline(model, device=self.device)
            result = action_accuracy(pipe, heldout, vocabulary, self.negatives, self.draws, self.resolution, self.seed,
                                     self.timestep_fraction)
            results[model] = result.summary()
            if self.fid:
                results[model]["fid"] = edit_fid(pipe, heldout, self.resolution, self.fid_steps, self.seed)
            extra = f"  FID {results[model]['fid']:.2f}" if self.fid else ""
            print(f"{model:40s} {result.accuracy:16.3f}  ({result.correct}/{result.total}){extra}", flush=True)
        atomic_write(self.output, lambda tmp: tmp.write_text(json.dumps(results, indent=2)))
        return results


def entrypoint() -> None:
    run(EvaluateAction)


if __name__ == "__main__":
    entrypoint()
