"""From a user's own photos to an edited scene, as the README says: JPEG photos without poses (4:3, one of them
stored turned with an EXIF orientation tag, as phones do) -> `ns-process-data images` (real COLMAP, on the CPU,
exhaustive matching) -> `wys-reconstruct` and `wys-splat-reconstruct` at `--downscale-factor 4` -> an oracle edit
("turn the red ball blue") on both backends, checked on held-out photos against the no-edit reconstructions.

The photos (nerf_edit.eval.synthetic.make_photo_capture) are of a textured tabletop COLMAP can match; nothing of
their cameras is told to anything here. The truth on a held-out view is its photo: the ball is its red pixels.
"""

import subprocess
from pathlib import Path

import pytest
import torch
from oracle_editor import red_region
from waiting import HANG_GUARD
from wys_runs import SHORT_SPLAT_RUN, cli, held_out_renders, psnr, train

from nerf_edit.core.masks import dilate, mask_iou
from nerf_edit.eval.synthetic import make_photo_capture
from nerf_edit_methods.configs import LIGHT_CPU_ARGS
from nerf_edit_methods.splat.configs import LIGHT_CPU_SPLAT_ARGS

pytestmark = pytest.mark.slow

ORACLE = ["--pipeline.editor", "oracle_editor:OracleEditor"]
# The dataparser's own settings (a subcommand, last): every 4th photo held out, the photos at a quarter size.
DATA = ["nerfstudio-data", "--eval-mode", "interval", "--eval-interval", "4", "--downscale-factor", "4"]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """16 photos 240x180, photo 5 turned with EXIF orientation 6, through ns-process-data as the README says."""
    root = tmp_path_factory.mktemp("capture")
    photos = make_photo_capture(root / "photos", count=16, width=240, height=180, seed=0, rotated=(5,))
    processed = subprocess.run(
        [cli("ns-process-data"), "images", "--data", str(photos), "--output-dir", str(root / "scene"), "--no-gpu",
         "--matching-method", "exhaustive", "--no-same-dimensions"], capture_output=True, text=True,
        timeout=HANG_GUARD)
    assert processed.returncode == 0, processed.stdout[-3000:] + processed.stderr[-3000:]
    assert "matched 16 images" in " ".join(processed.stdout.split()), processed.stdout[-2000:]
    return root / "scene"


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    return tmp_path_factory.mktemp("outputs")


BACKENDS = {"wys": ("wys-reconstruct", LIGHT_CPU_ARGS, 300, 120),
            "wys-splat": ("wys-splat-reconstruct", LIGHT_CPU_SPLAT_ARGS + SHORT_SPLAT_RUN, 300, 200)}


@pytest.fixture(scope="module")
def runs(scene, outputs):
    """Per backend: (the reconstruction, the edit continued from it)."""
    done = {}
    for method, (reconstruct, backend_args, steps, edit_steps) in BACKENDS.items():
        base = train(reconstruct, scene, outputs, "base", ["--max-num-iterations", str(steps)], backend_args, DATA)
        edited = train(method, scene, outputs, "edited",
                       ORACLE + ["--load-dir", str(base / "nerfstudio_models"), "--max-num-iterations",
                                 str(edit_steps), "--pipeline.edit-rate", "4", "--pipeline.relevance-warmup-steps",
                                 "40"], backend_args, DATA)
        done[method] = (base, edited)
    return done


def measure(base: Path, edited: Path) -> dict:
    before, _, photos, _ = held_out_renders(base)
    after, relevance, _, _ = held_out_renders(edited)
    ball = red_region(torch.from_numpy(photos).permute(0, 3, 1, 2)).numpy()  # [N, H, W]: the truth
    away = ~dilate(torch.from_numpy(ball), 3).numpy()

    def blue(rgb):
        return float(rgb[ball][:, 2].mean() - rgb[ball][:, 0].mean())

    return {"views": len(photos), "relevance_iou": float(mask_iou(relevance >= 0.5, ball)),
            "blue_gain": blue(after) - blue(before), "background": psnr(after[away], photos[away]),
            "background_control": psnr(before[away], photos[away])}


@pytest.fixture(scope="module")
def metrics(runs):
    results = {method: measure(*pair) for method, pair in runs.items()}
    for method, values in results.items():
        print(f"{method:10s} " + "  ".join(f"{key} {value:.3f}" for key, value in values.items()))
    return results


def test_colmap_registered_every_photo_and_the_views_keep_their_shape(scene):
    import json

    from PIL import Image

    transforms = json.loads((scene / "transforms.json").read_text())
    assert len(transforms["frames"]) == 16 and transforms.get("ply_file_path")
    sizes = {Image.open(scene / "images_4" / Path(frame["file_path"]).name).size for frame in transforms["frames"]}
    assert sizes == {(60, 45)}  # the EXIF-turned photo upright like the others, 4:3, a quarter of 240x180


@pytest.mark.parametrize("method", sorted(BACKENDS))
def test_the_edit_finds_the_ball_changes_it_and_keeps_the_background(metrics, method):
    values = metrics[method]
    assert values["views"] == 4
    assert values["relevance_iou"] >= 0.7
    assert values["blue_gain"] >= 0.3
    assert values["background"] >= values["background_control"] - 1.0


def test_the_splat_edit_turns_the_ball_as_blue_as_the_nerf_edit(metrics):
    """On a user's photos the freeze decision is taken from evidence (the traced relevance), so the frozen
    Gaussians do not cover the ball: its blue on wys-splat is within 20 % of wys's (issue: +0.29 against +0.84)."""
    assert metrics["wys-splat"]["blue_gain"] >= 0.8 * metrics["wys"]["blue_gain"]
