"""nerf-edit-eval-scene: evaluate a finished wys run against the scene it started from, on held-out cameras.

Renders the original scene (the run's --load-dir checkpoint, or --original) and the edited scene on the
dataparser's held-out cameras, writes both frame sets, and runs nerf-edit-eval's metrics on them. On scenes with
ground-truth object masks (masks.json, as the synthetic generator writes) it also reports the IoU of the rendered
relevance (>= tau) with the target object, and measures the background outside that object.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import torch

from nerf_edit import validate
from nerf_edit.core.io import atomic_save_image
from nerf_edit.core.masks import mask_iou
from nerf_edit.errors import RunNotFoundError, UsageError
from nerf_edit.eval.metrics import CLIP_MODEL_ID, ClipEmbedder, edit_metrics
from nerf_edit_scripts.cli import run
from nerf_edit_scripts.shared import check_clip_model, load_run, read_run_config, write_results


@torch.no_grad()
def render_cameras(pipeline, cameras) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """RGB [N, 3, H, W] and, when the model has one, relevance [N, H, W], for each camera."""
    rgbs, relevances = [], []
    for index in range(len(cameras)):
        outputs = pipeline.model.get_outputs_for_camera(cameras[index : index + 1].to(pipeline.device))
        rgbs.append(outputs["rgb"].clamp(0, 1).permute(2, 0, 1).cpu())
        if "relevance" in outputs:
            relevances.append(outputs["relevance"][..., 0].cpu())
    return torch.stack(rgbs), torch.stack(relevances) if relevances else None


def ground_truth_masks(data: Path, image_filenames, label: int) -> Optional[torch.Tensor]:
    """[N, H, W] bool masks of object `label` for the given images, if the scene ships masks.json."""
    from nerf_edit.eval.synthetic import MASKS_FILE, load_object_masks

    if not (data / MASKS_FILE).is_file():
        return None
    masks = load_object_masks(data)
    return torch.stack([torch.from_numpy(masks[str(Path(f).relative_to(data))] == label) for f in image_filenames])


def reconstruction_checkpoints(run: Path) -> Path:
    """The checkpoints the run's edit chain started from (edit_history.json's first step's --load-dir)."""
    from nerf_edit.scene.history import read_history

    chain = read_history(run)
    first = chain[0].continued_from if chain else None
    if first is None:
        raise UsageError(f"--original reconstruction: {str(run)!r} has no edit chain that started from a "
                         f"reconstruction (no edit_history.json, or its first run trained from scratch): pass "
                         f"--original PATH/nerfstudio_models")
    return Path(first) / "nerfstudio_models"


@dataclass
class EvaluateScene:
    """Evaluate a finished wys run against the original scene on held-out cameras."""

    run: Path
    """Folder of the finished wys run (holds config.yml)."""
    original: Optional[Path] = None
    """What the edit is compared with: default the run it continued from (its --load-dir; in an edit chain the
    previous edit), `reconstruction` (the scene before the chain's first edit, from edit_history.json), or a
    checkpoint folder."""
    instruction: Optional[str] = None
    """The edit instruction (default: the run's --pipeline.prompt)."""
    source_caption: Optional[str] = None
    """Caption of the original scene (with --target-caption: CLIP directional similarity)."""
    target_caption: Optional[str] = None
    """Caption of the edited scene."""
    object_label: int = 1
    """Label of the edited object in masks.json (synthetic scenes)."""
    tau: float = 0.5
    """Rendered relevance at or above tau counts as the edit region."""
    clip_model: str = CLIP_MODEL_ID
    """CLIP weights: hub id, local directory, or `tiny`."""
    output: Optional[Path] = None
    """Folder for frames, results.json and results.png (default: <run>/eval)."""

    def validate(self) -> Path:
        """Every setting, before any run is loaded (one UsageError line each); returns the original's checkpoints."""
        from nerf_edit_methods.validate import check_checkpoint_dir

        if not self.run.is_dir():
            raise RunNotFoundError(f"--run {str(self.run)!r} is not a folder: pass the folder of a finished ns-train "
                                   f"run (it holds config.yml)")
        config = read_run_config(self.run, "--run")
        check_checkpoint_dir(self.run / "nerfstudio_models", "--run's checkpoints")
        # eval_setup points load_dir at the run's own checkpoints: read the --load-dir it was trained from first.
        original_dir = self.original or getattr(config, "load_dir", None)
        if self.original is not None and str(self.original) == "reconstruction":
            original_dir = reconstruction_checkpoints(self.run)
        if original_dir is None:
            raise UsageError("the run was not started from a checkpoint (--load-dir): pass --original "
                                      "PATH/nerfstudio_models")
        name = "--original" if self.original else "the run's --load-dir"
        check_checkpoint_dir(Path(original_dir), name)
        read_run_config(Path(original_dir).parent, name)
        if self.instruction is not None:
            validate.check_text("--instruction", self.instruction, "turn the ball blue")
        if (self.source_caption is None) != (self.target_caption is None):
            raise UsageError("pass both --source-caption and --target-caption (CLIP directional similarity) or neither")
        validate.check_at_least("--object-label", self.object_label, 1)
        validate.check_range("--tau", self.tau, 0, 1)
        check_clip_model(self.clip_model)
        validate.check_output_dir(self.output or self.run / "eval", "--output")
        return Path(original_dir)

    def main(self) -> dict:
        original_dir = self.validate()
        config_path = self.run / "config.yml"
        config, edited = load_run(config_path)
        _, original = load_run(Path(original_dir).parent / "config.yml")
        outputs = edited.datamanager.dataparser.get_dataparser_outputs(split="test")
        edited_rgb, relevance = render_cameras(edited, outputs.cameras)
        original_rgb, _ = render_cameras(original, outputs.cameras)
        output = self.output or self.run / "eval"
        for i in range(len(edited_rgb)):
            atomic_save_image(output / "edited" / f"{i:05d}.png", edited_rgb[i])
            atomic_save_image(output / "original" / f"{i:05d}.png", original_rgb[i])
            if relevance is not None:
                atomic_save_image(output / "relevance" / f"{i:05d}.png", relevance[i])
        truth = ground_truth_masks(Path(config.pipeline.datamanager.data), outputs.image_filenames, self.object_label)
        edit_region = truth if truth is not None else (relevance >= self.tau if relevance is not None else None)
        instruction = self.instruction or getattr(config.pipeline, "prompt", "") or "edit"
        results = edit_metrics(ClipEmbedder(self.clip_model), edited_rgb, original_rgb, instruction,
                               self.source_caption, self.target_caption, edit_region)
        if truth is not None and relevance is not None:
            predicted = relevance >= self.tau
            results["relevance_iou"] = float(mask_iou(predicted, truth))  # pooled over every held-out pixel
        write_results(results, output / "results.json")
        return results


def entrypoint() -> None:
    run(EvaluateScene)


if __name__ == "__main__":
    entrypoint()
