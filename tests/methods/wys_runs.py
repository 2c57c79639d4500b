"""Helpers of the 3D tests: train wys runs in-process on the synthetic scene, and measure them on held-out views."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

from nerf_edit.core.masks import dilate, mask_iou
from nerf_edit.eval.synthetic import load_object_masks
from nerf_edit_methods.configs import LIGHT_CPU_ARGS, method_config

PROMPT = "turn the red ball blue"
# Every 4th view is held out (6 of 24), so the metrics are on cameras the edits never saw.
HOLD_OUT = ["nerfstudio-data", "--eval-mode", "interval", "--eval-interval", "4"]
QUIET = ["--steps-per-eval-batch", "1000000", "--steps-per-eval-image", "1000000", "--steps-per-eval-all-images", "1000000"]

# Short CPU splat runs: colours learn at 10x splatfacto's rate (0.0025, set for 30000 steps). A continued run takes
# its checkpoint's learning rates, so the reconstruction gets the same setting.
SHORT_SPLAT_RUN = ["--optimizers.features-dc.optimizer.lr", "0.025"]


def cli(name: str) -> str:
    """A console script of this environment (its bin folder need not be on PATH)."""
    return str(Path(sys.executable).parent / name)


def train(method: str, scene: Path, output_dir: Path, timestamp: str, args: Sequence[str],
          cpu_args: Sequence[str] = LIGHT_CPU_ARGS, data: Sequence[str] = HOLD_OUT) -> Path:
    """ns-train METHOD in this process (`cpu_args`: the backend's light CPU settings; `data`: the dataparser
    subcommand, last); returns the run folder."""
    from nerfstudio.scripts.train import main as train_main

    config = method_config(
        method,
        [*cpu_args, *QUIET, "--data", str(scene), "--output-dir", str(output_dir), "--timestamp", timestamp,
         "--pipeline.prompt", PROMPT, *args, *data],
    )
    train_main(config)
    return config.get_base_dir()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def held_out_renders(run_dir: Path) -> Tuple[np.ndarray, np.ndarray, np.ndarray, List[Path]]:
    """A finished run's renders of the held-out cameras (loaded from its checkpoint, as ns-render does): rgb
    [N, H, W, 3] and relevance [N, H, W], with the photos there [N, H, W, 3] and their files."""
    from PIL import Image

    from nerf_edit_scripts.evaluate_scene import load_run, render_cameras

    _, pipeline = load_run(run_dir / "config.yml")
    outputs = pipeline.datamanager.dataparser.get_dataparser_outputs(split="test")
    rgbs, relevances = render_cameras(pipeline, outputs.cameras)
    photos = np.stack([np.asarray(Image.open(f).convert("RGB"), dtype=np.float32) / 255 for f in outputs.image_filenames])
    return rgbs.permute(0, 2, 3, 1).numpy(), relevances.numpy(), photos, list(outputs.image_filenames)


def held_out_views(run_dir: Path, scene: Path) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`held_out_renders` of a generated scene, with the photos' ground-truth labels [N, H, W] (0 background, 1
    ball, 2 cube) in place of their files."""
    rgbs, relevances, photos, files = held_out_renders(run_dir)
    masks = load_object_masks(scene)
    labels = np.stack([masks[str(Path(f).relative_to(scene))] for f in files])
    return rgbs, relevances, photos, labels


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


# Mean |decoded - rendered| per channel in [0, 1] that H.264 at ns-render's quality leaves: measured 0.008-0.010 on
# a briefly trained run, while the next frame of the path differs by 0.045-0.062 and the other output by ~0.28.
VIDEO_TOLERANCE = 0.025


def check_ns_render_video(run_dir: Path, video: Path) -> None:
    """`ns-render interpolate` of a finished run with rgb and relevance side by side: every frame of the video is
    the run's model rendered here on the same path (eval cameras, one step between them; relevance through
    nerfstudio's default colormap), up to H.264, and the two halves are told apart."""
    import subprocess

    import mediapy
    from nerfstudio.cameras.camera_paths import get_interpolated_camera_path
    from nerfstudio.utils.colormaps import ColormapOptions, apply_colormap
    from waiting import HANG_GUARD

    from nerf_edit_scripts.evaluate_scene import load_run

    result = subprocess.run(
        [cli("ns-render"), "interpolate", "--load-config", str(run_dir / "config.yml"), "--rendered-output-names",
         "rgb", "relevance", "--interpolation-steps", "1", "--frame-rate", "4", "--output-path", str(video)],
        capture_output=True, text=True, timeout=HANG_GUARD,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    frames = mediapy.read_video(str(video)).astype(np.float32) / 255  # [N, H, 2W, 3]: rgb | relevance
    _, pipeline = load_run(run_dir / "config.yml")
    path = get_interpolated_camera_path(pipeline.datamanager.eval_dataset.cameras, steps=1, order_poses=False)
    width = int(path.width[0])
    assert frames.shape == (len(path), int(path.height[0]), 2 * width, 3) and len(path) >= 5
    for index in range(len(path)):
        with torch.no_grad():
            outputs = pipeline.model.get_outputs_for_camera(path[index : index + 1].to(pipeline.device))
        rgb, relevance = (apply_colormap(outputs[name], ColormapOptions()).cpu().numpy() for name in ("rgb", "relevance"))
        shown_rgb, shown_relevance = frames[index, :, :width], frames[index, :, width:]
        errors = [np.abs(shown_rgb - rgb).mean(), np.abs(shown_relevance - relevance).mean(),
                  np.abs(shown_rgb - relevance).mean()]
        print(f"frame {index}: |video - rendered| rgb {errors[0]:.4f}, relevance {errors[1]:.4f}; "
              f"rgb half vs relevance {errors[2]:.4f}")
        assert errors[0] <= VIDEO_TOLERANCE and errors[1] <= VIDEO_TOLERANCE
        assert errors[2] > 4 * VIDEO_TOLERANCE  # the check tells the two outputs apart


def killed_then_resumed(method: str, cpu_args: Sequence[str], scene: Path, outputs: Path, load_dir: Path,
                        extra: Sequence[str] = (), before_first_edit: bool = False,
                        resume_extra: Sequence[str] = ()) -> Tuple[Path, Path, dict, dict, str]:
    """`ns-train METHOD` (the originals-only oracle, an edit every 2nd step) from `load_dir`, killed with SIGKILL
    once 6 edits and a checkpoint are on disk (`before_first_edit`: once every relevance target and a checkpoint
    are, the warm-up not over), then resumed from its checkpoints for 6 steps (with `resume_extra`). -> (killed run,
    resumed run, the killed run's edited views {name: uint8 array}, the resumed run's, the resumed run's stdout)"""
    import os
    import signal
    import subprocess
    import time

    from PIL import Image
    from waiting import HANG_GUARD, wait_for

    def edited_views(run: Path) -> dict:
        return {p.name: np.asarray(Image.open(p)) for p in (run / "edits" / "images").glob("*.png")}

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    # the kill and the restore are the subject here, not the relevance's conditioning: no renders for the targets
    common = [*cpu_args, *QUIET, "--pipeline.editor", "oracle_editor:OriginalsOnlyOracleEditor", "--data", str(scene),
              "--output-dir", str(outputs), "--pipeline.prompt", PROMPT, "--pipeline.edit-rate", "2", *extra]
    killed = outputs / scene.name / method / "killed"
    process = subprocess.Popen(
        [cli("ns-train"), method, *common, "--timestamp", "killed", "--load-dir", str(load_dir),
         "--max-num-iterations", "100000", "--steps-per-save", "10", *HOLD_OUT],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    folder, count, what = ("relevance", 18, "every relevance target") if before_first_edit else ("images", 6, "6 edits")
    try:
        wait_for(lambda: len(list((killed / "edits" / folder).glob("*.*"))) >= count
                 and list((killed / "nerfstudio_models").glob("*.ckpt")), f"{what} and a checkpoint", process, 0.5)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    time.sleep(0.5)
    saved = edited_views(killed)  # every file on disk must be a whole, readable PNG (written then renamed)
    resumed = outputs / scene.name / method / "resumed"
    result = subprocess.run(
        [cli("ns-train"), method, *common, "--timestamp", "resumed", "--load-dir", str(killed / "nerfstudio_models"),
         "--max-num-iterations", "6", *resume_extra, *HOLD_OUT],
        env=env, capture_output=True, text=True, timeout=HANG_GUARD,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return killed, resumed, saved, edited_views(resumed), " ".join(result.stdout.split())


def check_every_finished_edit_kept(saved: dict, after: dict, stdout: str, views: int = 18) -> None:
    """The resumed run restored every edit the killed one had on disk, and went on editing."""
    assert len(saved) >= 6
    assert f"Restored {len(saved)} edited views and {views} relevance targets" in stdout
    assert set(saved) <= set(after)  # nothing lost
    assert len(after) > len(saved)  # and editing went on: 6 steps at one edit per 2 steps edit new views too
    kept = [name for name in saved if np.array_equal(saved[name], after[name])]
    assert len(kept) >= len(saved) - 3  # only views re-edited in the 6 resumed steps differ
