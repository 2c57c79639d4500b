"""End-to-end: `wys-splat` and `wys-splat-global` with the oracle editor, continuing a `wys-splat-reconstruct` run of
the synthetic scene (with its seed point cloud), on the CPU renderer; then `ns-export gaussian-splat` of the edit.

The oracle (oracle_editor.py) knows the answer: relevance = the red ball, edit = the ball turns blue, and the
background gets brighter, as IP2P over-edits. On held-out views: the relevance per Gaussian must render the ball,
wys-splat must keep the background at least as the reconstruction had it (its irrelevant Gaussians are frozen),
wys-splat-global must not; the frozen Gaussians must be the reconstruction's, bit for bit.
"""

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from wys_runs import (
    HOLD_OUT,
    PROMPT,
    QUIET,
    check_every_finished_edit_kept,
    check_ns_render_video,
    cli,
    evaluate,
    killed_then_resumed,
)

from nerf_edit.eval.synthetic import make_scene
from nerf_edit_methods.configs import method_config
from nerf_edit_methods.splat.configs import LIGHT_CPU_SPLAT_ARGS

pytestmark = pytest.mark.slow

ORACLE = ["--pipeline.editor", "oracle_editor:OracleEditor"]
# Short CPU runs: colours learn at 10x splatfacto's rate (0.0025, set for 30000 steps). A continued run takes its
# checkpoint's learning rates, so the reconstruction gets the same setting.
SHORT_RUN = ["--optimizers.features-dc.optimizer.lr", "0.025"]
GAUSSIANS = ("means", "scales", "quats", "features_dc", "features_rest", "opacities", "relevance")


def train(method: str, scene: Path, output_dir: Path, timestamp: str, args) -> Path:
    from nerfstudio.scripts.train import main as train_main

    config = method_config(method, LIGHT_CPU_SPLAT_ARGS + SHORT_RUN + QUIET + [
        "--data", str(scene), "--output-dir", str(output_dir), "--timestamp", timestamp, "--pipeline.prompt", PROMPT,
        *args] + HOLD_OUT)
    train_main(config)
    return config.get_base_dir()


def gaussians(run: Path) -> dict:
    """The model's state in a run's (only) checkpoint: gauss_params.* [N, ...] and, once frozen, `frozen` [N]."""
    return gaussians_at(run, "only")


def gaussians_at(run: Path, which: str) -> dict:
    """gauss_params.* [N, ...] and `frozen` [N] of a run's `only` checkpoint or its `latest` one."""
    checkpoints = sorted((run / "nerfstudio_models").glob("step-*.ckpt"))
    if which == "only":
        assert len(checkpoints) == 1, checkpoints
    state = torch.load(checkpoints[-1], map_location="cpu", weights_only=False)["pipeline"]
    return {key[len("_model."):].replace("gauss_params.", ""): value for key, value in state.items()
            if key.startswith("_model.")}


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return make_scene(tmp_path_factory.mktemp("scene") / "synthetic", num_views=24, size=64, seed=0, points=3000)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    return tmp_path_factory.mktemp("outputs")


@pytest.fixture(scope="module")
def base_run(scene, outputs):
    """The scene before editing, offline (what `ns-train splatfacto` gives), from 3000 seed points: 300 iterations."""
    return train("wys-splat-reconstruct", scene, outputs, "base", ["--max-num-iterations", "300"])


def edit_args(base_run):
    return ORACLE + ["--load-dir", str(base_run / "nerfstudio_models"), "--max-num-iterations", "200",
                     "--pipeline.edit-rate", "4", "--pipeline.relevance-warmup-steps", "40"]


@pytest.fixture(scope="module")
def wys_run(scene, outputs, base_run):
    return train("wys-splat", scene, outputs, "edited", edit_args(base_run))


@pytest.fixture(scope="module")
def metrics(scene, base_run, wys_run, outputs):
    global_run = train("wys-splat-global", scene, outputs, "edited", edit_args(base_run))
    results = {name: evaluate(run, scene) for name, run in (("base", base_run), ("wys-splat", wys_run),
                                                             ("wys-splat-global", global_run))}
    for name, values in results.items():
        print(f"{name:17s} " + "  ".join(f"{k} {v:.3f}" for k, v in values.items()))
    return results


def test_relevance_per_gaussian_renders_the_object_on_held_out_views(metrics):
    assert metrics["wys-splat"]["views"] == 6
    assert metrics["wys-splat"]["relevance_iou"] >= 0.8


def test_frozen_background_keeps_the_reconstructions_background_and_the_global_edit_does_not(metrics):
    """Measured (2026-12-03): background 26.981 dB for wys-splat, 26.991 for the reconstruction, 16.27 for
    wys-splat-global. The frozen Gaussians render as before; what moves the background's pixels by a hundredth of a dB
    is the edited ball's Gaussians' soft edges (2-6 px from the ball, where its colour changed from red to blue:
    at 3 px and more from the objects wys-splat is at or above the reconstruction)."""
    base, wys, global_ = metrics["base"], metrics["wys-splat"], metrics["wys-splat-global"]
    assert wys["background_psnr"] >= base["background_psnr"] - 0.05  # the no-edit control
    assert wys["background_psnr"] >= global_["background_psnr"] + 4.0


def test_the_ball_turns_blue(metrics):
    assert metrics["wys-splat"]["ball_blue_minus_red"] - metrics["base"]["ball_blue_minus_red"] >= 0.3


def test_frozen_gaussians_are_the_reconstructions_bit_for_bit(base_run, wys_run):
    """The checkpoint keeps the frozen mask; every frozen Gaussian is a row of the reconstruction, every parameter
    equal, in the reconstruction's order (no Gaussian moved or was densified before the freeze)."""
    base, edited = gaussians(base_run), gaussians(wys_run)
    frozen = edited["frozen"]
    assert frozen.dtype == torch.bool and frozen.shape == edited["means"].shape[:1]
    assert 0.1 * len(frozen) <= int(frozen.sum()) < len(frozen)  # a background frozen, the object free
    rows = {bytes(row.numpy().tobytes()): index for index, row in enumerate(base["means"])}
    matched = torch.tensor([rows.get(bytes(row.numpy().tobytes()), -1) for row in edited["means"][frozen]])
    assert (matched >= 0).all() and (matched.diff() > 0).all()
    for name in GAUSSIANS[:-1]:
        assert torch.equal(edited[name][frozen], base[name][matched]), name
    free = ~frozen
    assert not torch.equal(edited["features_dc"][free], base["features_dc"][free])  # the rest did train


def test_ns_render_writes_the_edited_splats_and_their_relevance(wys_run, tmp_path):
    """`ns-render` of a wys-splat run on the CPU renderer: the video shows the edited scene and the relevance per
    Gaussian, frame by frame what the model renders."""
    check_ns_render_video(wys_run, tmp_path / "edited.mp4")


def test_kill_and_resume_keeps_every_edit_and_the_frozen_gaussians(scene, outputs, base_run):
    """kill -9 a wys-splat run after its Gaussians were frozen; the resumed run restores every edit on disk and the
    frozen set from the checkpoint (no second freeze: the same Gaussians, still the reconstruction's bit for bit)."""
    killed, resumed, saved, after, stdout = killed_then_resumed(
        "wys-splat", LIGHT_CPU_SPLAT_ARGS + SHORT_RUN, scene, outputs, base_run / "nerfstudio_models",
        ["--pipeline.relevance-warmup-steps", "10"])
    check_every_finished_edit_kept(saved, after, stdout)
    assert "Frozen" not in stdout  # the resumed run took the frozen set from its checkpoint
    before_kill, final, base = gaussians_at(killed, "latest"), gaussians(resumed), gaussians(base_run)
    assert final["frozen"].any() and torch.equal(final["frozen"], before_kill["frozen"])
    rows = {bytes(row.numpy().tobytes()): index for index, row in enumerate(base["means"])}
    matched = [rows[bytes(row.numpy().tobytes())] for row in final["means"][final["frozen"]]]  # KeyError: moved
    for name in ("scales", "quats", "features_dc", "opacities"):
        assert torch.equal(final[name][final["frozen"]], base[name][matched]), name


def test_export_writes_the_edited_splats_with_the_frozen_ones_unchanged(base_run, wys_run, tmp_path):
    """`ns-export gaussian-splat` of the edited run: the .ply holds every Gaussian, the relevant ones now blue,
    the frozen ones with the reconstruction's colours."""
    from plyfile import PlyData

    done = subprocess.run([cli("ns-export"), "gaussian-splat", "--load-config", str(wys_run / "config.yml"),
                           "--output-dir", str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    vertices = PlyData.read(str(tmp_path / "splat.ply"))["vertex"]
    edited, base = gaussians(wys_run), gaussians(base_run)
    assert len(vertices) == len(edited["means"])
    dc = np.stack([vertices[f"f_dc_{i}"] for i in range(3)], axis=-1)  # [N, 3] SH degree-0 coefficients
    xyz = np.stack([vertices[axis] for axis in "xyz"], axis=-1)
    np.testing.assert_array_equal(xyz, edited["means"].numpy())
    np.testing.assert_array_equal(dc, edited["features_dc"].numpy())
    relevant = torch.sigmoid(edited["relevance"][:, 0]).numpy() > 0.75  # the ball's Gaussians
    opacity = 1 / (1 + np.exp(-np.asarray(vertices["opacity"])))
    blue_over_red = (dc[relevant, 2] - dc[relevant, 0]) * opacity[relevant]
    # as the views show them (faint Gaussians hardly do): blue over red, where the reconstruction had red
    assert relevant.sum() > 20 and blue_over_red.sum() / opacity[relevant].sum() > 0.3
    rows = {bytes(row.numpy().tobytes()): index for index, row in enumerate(base["means"])}
    frozen = edited["frozen"].numpy()
    matched = [rows[bytes(row.tobytes())] for row in xyz[frozen]]
    np.testing.assert_array_equal(dc[frozen], base["features_dc"].numpy()[matched])  # the reconstruction's


def test_export_of_the_relevant_gaussians_alone(wys_run, tmp_path):
    """nerf-edit-export-relevant: the Gaussians at or above τ (the ball's, now blue) in one .ply, the others with
    --invert; together they are the run's Gaussians, each once, with its own parameters."""
    from plyfile import PlyData

    from nerf_edit_scripts.export_relevant import ExportRelevant

    edited = gaussians(wys_run)
    relevant = torch.sigmoid(edited["relevance"][:, 0]) >= 0.5  # [N]
    for invert in (False, True):
        export = ExportRelevant(load_config=wys_run / "config.yml", output_dir=tmp_path, invert=invert)
        export.validate()  # what the command checks first: a wys-splat run with checkpoints
        export.main()
    inside, outside = (PlyData.read(str(tmp_path / name))["vertex"] for name in ("relevant.ply", "irrelevant.ply"))
    assert not list(tmp_path.glob(".*.tmp"))
    assert 20 < len(inside) == int(relevant.sum()) and len(outside) == int((~relevant).sum())
    for vertices, rows in ((inside, relevant), (outside, ~relevant)):
        xyz = np.stack([vertices[axis] for axis in "xyz"], axis=-1)
        np.testing.assert_array_equal(xyz, edited["means"][rows].numpy())  # the same Gaussians, in the run's order
        dc = np.stack([vertices[f"f_dc_{i}"] for i in range(3)], axis=-1)
        np.testing.assert_array_equal(dc, edited["features_dc"][rows].numpy())
    dc = np.stack([inside[f"f_dc_{i}"] for i in range(3)], axis=-1)
    opacity = 1 / (1 + np.exp(-np.asarray(inside["opacity"])))
    assert ((dc[:, 2] - dc[:, 0]) * opacity).sum() / opacity.sum() > 0.3  # the exported part is the blue ball
