"""Helpers of the 3D tests: train wys runs in-process on the synthetic scene, and measure them on held-out views."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import torch

from nerf_edit.core.masks import dilate, mask_iou
from nerf_edit_methods.configs import LIGHT_CPU_ARGS, method_config
from nerf_edit_scripts.make_scene import load_object_masks

PROMPT = "turn the red ball blue"
# Every 4th view is held out (6 of 24), so the metrics are on cameras the edits never saw.
HOLD_OUT = ["nerfstudio-data", "--eval-mode", "interval", "--eval-interval", "4"]
QUIET = ["--steps-per-eval-batch", "1000000", "--steps-per-eval-image", "1000000", "--steps-per-eval-all-images", "1000000"]


def cli(name: str) -> str:
    """A console script of this environment (its bin folder need not be on PATH)."""
    return str(Path(sys.executable).parent / name)


def train(method: str, scene: Path, output_dir: Path, timestamp: str, args: Sequence[str]) -> Path:
    """ns-train METHOD in this process; returns the run folder."""
    from nerfstudio.scripts.train import main as train_main

    config = method_config(
        method,
        LIGHT_CPU_ARGS + QUIET + ["--data", str(scene), "--output-dir", str(output_dir), "--timestamp", timestamp,
                                  "--pipeline.prompt", PROMPT, *args] + HOLD_OUT,
    )
    train_main(config)
    return config.get_base_dir()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def evaluate(run_dir: Path, scene: Path) -> Dict[str, float]:
    """Render the held-out views of a finished run (loaded from its checkpoint, as ns-render does) and compare to
    the original scene's images: relevance IoU vs the ball's ground-truth mask, background PSNR outside the
    objects, ball colour."""
    from PIL import Image

    from nerf_edit_scripts.evaluate_scene import load_run, render_cameras

    _, pipeline = load_run(run_dir / "config.yml")
    outputs = pipeline.datamanager.dataparser.get_dataparser_outputs(split="test")
    rgbs, relevances = render_cameras(pipeline, outputs.cameras)
    masks = load_object_masks(scene)
    ious: List[float] = []
    background: List[float] = []
    ball_blue_minus_red: List[float] = []
    for index, filename in enumerate(outputs.image_filenames):
        labels = masks[str(Path(filename).relative_to(scene))]
        ball = labels == 1
        original = np.asarray(Image.open(filename), dtype=np.float32) / 255
        rgb = rgbs[index].permute(1, 2, 0).numpy()
        relevance = relevances[index].numpy() >= 0.5
        ious.append(float(mask_iou(relevance, ball)))
        outside = ~dilate(torch.from_numpy(labels > 0)[None], 2)[0].numpy()  # away from both objects' edges
        background.append(psnr(rgb[outside], original[outside]))
        if ball.sum() > 0:
            ball_blue_minus_red.append(float(rgb[ball][:, 2].mean() - rgb[ball][:, 0].mean()))
    return {
        "relevance_iou": float(np.mean(ious)),
        "background_psnr": float(np.mean(background)),
        "ball_blue_minus_red": float(np.mean(ball_blue_minus_red)),
        "views": len(ious),
    }
