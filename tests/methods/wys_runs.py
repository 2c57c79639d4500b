"""Helpers of the 3D tests: train wys runs in-process on the synthetic scene, and measure them on held-out views."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

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


def held_out_views(run_dir: Path, scene: Path) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A finished run's renders of the held-out cameras (loaded from its checkpoint, as ns-render does): rgb
    [N, H, W, 3] and relevance [N, H, W], with the scene's photos there [N, H, W, 3] and their ground-truth
    labels [N, H, W] (0 background, 1 ball, 2 cube)."""
    from PIL import Image

    from nerf_edit_scripts.evaluate_scene import load_run, render_cameras

    _, pipeline = load_run(run_dir / "config.yml")
    outputs = pipeline.datamanager.dataparser.get_dataparser_outputs(split="test")
    rgbs, relevances = render_cameras(pipeline, outputs.cameras)
    masks = load_object_masks(scene)
    photos = np.stack([np.asarray(Image.open(f).convert("RGB"), dtype=np.float32) / 255 for f in outputs.image_filenames])
    labels = np.stack([masks[str(Path(f).relative_to(scene))] for f in outputs.image_filenames])
    return rgbs.permute(0, 2, 3, 1).numpy(), relevances.numpy(), photos, labels


def away_from_objects(labels: np.ndarray) -> np.ndarray:
    """[N, H, W] labels -> [N, H, W] bool: the background, 2 pixels away from both objects' edges."""
    return ~dilate(torch.from_numpy(labels > 0), 2).numpy()


def evaluate(run_dir: Path, scene: Path) -> Dict[str, float]:
    """Render the held-out views of a finished run and compare to the original scene's images: relevance IoU vs
    the ball's ground-truth mask, background PSNR outside the objects, ball colour."""
    rgbs, relevances, photos, labels = held_out_views(run_dir, scene)
    away = away_from_objects(labels)
    ious: List[float] = []
    background: List[float] = []
    ball_blue_minus_red: List[float] = []
    for rgb, relevance, photo, label, outside in zip(rgbs, relevances, photos, labels, away):
        ball = label == 1
        ious.append(float(mask_iou(relevance >= 0.5, ball)))
        background.append(psnr(rgb[outside], photo[outside]))
        if ball.sum() > 0:
            ball_blue_minus_red.append(float(rgb[ball][:, 2].mean() - rgb[ball][:, 0].mean()))
    return {
        "relevance_iou": float(np.mean(ious)),
        "background_psnr": float(np.mean(background)),
        "ball_blue_minus_red": float(np.mean(ball_blue_minus_red)),
        "views": len(ious),
    }
