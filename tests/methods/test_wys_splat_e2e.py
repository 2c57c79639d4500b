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
import wys_runs
from wys_runs import (
    SHORT_SPLAT_RUN,
    check_every_finished_edit_kept,
    check_ns_render_video,
    cli,
    evaluate,
    killed_then_resumed,
)

from nerf_edit.eval.synthetic import make_scene
from nerf_edit_methods.splat.configs import LIGHT_CPU_SPLAT_ARGS

pytestmark = pytest.mark.slow

ORACLE = ["--pipeline.editor", "oracle_editor:OracleEditor"]
HAT = ["--pipeline.editor", "hat_oracle:HatOracleEditor", "--pipeline.prompt", "put a purple hat on the red ball"]
# The reconstruction below stops at step 300: past a stop_split_at of 250, where splatfacto would never densify again
# (gsplat default.py ~162). Refinement every 25 steps and an opacity reset every 100 (4 x 25) put a refinement and
# a reset inside the edit phase of a CPU run (pause after a reset: 18 views + 25 steps).
PAST_STOP_SPLIT = ["--pipeline.model.stop-split-at", "250", "--pipeline.model.refine-every", "25",
                   "--pipeline.model.reset-alpha-every", "4"]
GAUSSIANS = ("means", "scales", "quats", "features_dc", "features_rest", "opacities", "relevance")


def train(method: str, scene: Path, output_dir: Path, timestamp: str, args) -> Path:
    return wys_runs.train(method, scene, output_dir, timestamp, args, cpu_args=LIGHT_CPU_SPLAT_ARGS + SHORT_SPLAT_RUN)


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
    base_rows = {bytes(row.numpy().tobytes()) for row in base["features_dc"]}
    trained = [bytes(row.numpy().tobytes()) not in base_rows for row in edited["features_dc"][~frozen]]
    assert sum(trained) > 0.5 * len(trained)  # the rest did train


def test_ns_render_writes_the_edited_splats_and_their_relevance(wys_run, tmp_path):
    """`ns-render` of a wys-splat run on the CPU renderer: the video shows the edited scene and the relevance per
    Gaussian, frame by frame what the model renders."""
    check_ns_render_video(wys_run, tmp_path / "edited.mp4")


def test_kill_and_resume_keeps_every_edit_and_the_frozen_gaussians(scene, outputs, base_run):
    """kill -9 a wys-splat run after its Gaussians were frozen; the resumed run restores every edit on disk and the
    frozen set from the checkpoint (no second freeze: the same Gaussians, still the reconstruction's bit for bit)."""
    killed, resumed, saved, after, stdout = killed_then_resumed(
        "wys-splat", LIGHT_CPU_SPLAT_ARGS + SHORT_SPLAT_RUN, scene, outputs, base_run / "nerfstudio_models",
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
    written = (edited["opacities"][:, 0] >= -5.5373).numpy()  # ns-export leaves out those fainter than 1/255
    assert len(vertices) == int(written.sum()) >= 0.95 * len(written)
    dc = np.stack([vertices[f"f_dc_{i}"] for i in range(3)], axis=-1)  # [N, 3] SH degree-0 coefficients
    xyz = np.stack([vertices[axis] for axis in "xyz"], axis=-1)
    np.testing.assert_array_equal(xyz, edited["means"].numpy()[written])
    np.testing.assert_array_equal(dc, edited["features_dc"].numpy()[written])
    relevant = torch.sigmoid(edited["relevance"][:, 0]).numpy()[written] > 0.75  # the ball's Gaussians
    opacity = 1 / (1 + np.exp(-np.asarray(vertices["opacity"])))
    blue_over_red = (dc[relevant, 2] - dc[relevant, 0]) * opacity[relevant]
    # as the views show them (faint Gaussians hardly do): blue over red, where the reconstruction had red
    assert relevant.sum() > 20 and blue_over_red.sum() / opacity[relevant].sum() > 0.3
    rows = {bytes(row.numpy().tobytes()): index for index, row in enumerate(base["means"])}
    frozen = edited["frozen"].numpy()[written]
    matched = [rows[bytes(row.tobytes())] for row in xyz[frozen]]
    np.testing.assert_array_equal(dc[frozen], base["features_dc"].numpy()[matched])  # the reconstruction's


def test_export_of_the_relevant_gaussians_alone(wys_run, tmp_path):
    """nerf-edit-export-relevant: the Gaussians at or above τ (the ball's, now blue) in one .ply, the others with
    --invert; together they are the run's Gaussians ns-export would write (those fainter than 1/255 left out), each
    once, with its own parameters."""
    from plyfile import PlyData

    from nerf_edit_scripts.export_relevant import LOW_OPACITY_LOGIT, ExportRelevant

    edited = gaussians(wys_run)
    written = edited["opacities"][:, 0] >= LOW_OPACITY_LOGIT  # as ns-export: Gaussians fainter than 1/255 left out
    relevant = torch.sigmoid(edited["relevance"][:, 0]) >= 0.5  # [N]
    for invert in (False, True):
        export = ExportRelevant(load_config=wys_run / "config.yml", output_dir=tmp_path, invert=invert)
        export.validate()  # what the command checks first: a wys-splat run with checkpoints
        export.main()
    inside, outside = (PlyData.read(str(tmp_path / name))["vertex"] for name in ("relevant.ply", "irrelevant.ply"))
    assert not list(tmp_path.glob(".*.tmp"))
    assert 20 < len(inside) == int((relevant & written).sum()) and len(outside) == int((~relevant & written).sum())
    for vertices, rows in ((inside, relevant & written), (outside, ~relevant & written)):
        xyz = np.stack([vertices[axis] for axis in "xyz"], axis=-1)
        np.testing.assert_array_equal(xyz, edited["means"][rows].numpy())  # the same Gaussians, in the run's order
        dc = np.stack([vertices[f"f_dc_{i}"] for i in range(3)], axis=-1)
        np.testing.assert_array_equal(dc, edited["features_dc"][rows].numpy())
    dc = np.stack([inside[f"f_dc_{i}"] for i in range(3)], axis=-1)
    opacity = 1 / (1 + np.exp(-np.asarray(inside["opacity"])))
    assert ((dc[:, 2] - dc[:, 0]) * opacity).sum() / opacity.sum() > 0.3  # the exported part is the blue ball


@pytest.fixture(scope="module")
def hat_run(scene, outputs, base_run):
    """"put a purple hat on the red ball" (hat_oracle.py), continued from the 300-step reconstruction past its
    stop_split_at, 300 steps with refinements at edit-phase steps 50, 75, 150, 175, ... and resets at 100, 200."""
    import os

    previous = os.environ.get("HAT_ORACLE_SCENE")
    os.environ["HAT_ORACLE_SCENE"] = str(scene)
    try:
        return train("wys-splat", scene, outputs, "hat",
                     HAT + PAST_STOP_SPLIT + ["--load-dir", str(base_run / "nerfstudio_models"), "--max-num-iterations",
                                              "300", "--pipeline.edit-rate", "4", "--pipeline.relevance-warmup-steps",
                                              "40"])
    finally:
        os.environ.pop("HAT_ORACLE_SCENE") if previous is None else os.environ.update(HAT_ORACLE_SCENE=previous)


def test_an_added_object_grows_from_new_gaussians_on_held_out_views(scene, base_run, hat_run):
    """The hat stands where the reconstruction has no Gaussian: seeded copies of the ball's and the edit phase's
    densification grow it (measured 2026-12-06: gain 0.202 of 0.206, background 26.57 dB against the
    reconstruction's 26.86). Without seeds and edit-phase refinement (--pipeline.refine-in-edit False
    --pipeline.seed-relevant 0) the free Gaussians alone reach 0.124 (60 %): the bar here is 75 %."""
    from hat_oracle import hat_metrics

    edited, control = hat_metrics(hat_run, scene), hat_metrics(base_run, scene)
    print(f"hat: gain {edited['gain']:.3f} of {edited['truth']:.3f}, background {edited['background']:.2f} dB "
          f"(control: gain {control['gain']:.3f}, background {control['background']:.2f} dB)")
    assert edited["gain"] >= 0.75 * edited["truth"] and control["gain"] < 0.25 * edited["truth"]
    assert edited["background"] >= control["background"] - 1.0


def test_the_edit_phase_densifies_past_stop_split_at_and_the_frozen_rows_stay(base_run, hat_run):
    """The checkpoint it continued is past stop_split_at, yet the Gaussian count changed in the edit phase (seeds,
    growth, pruning of free Gaussians), across refinements and opacity resets (the run's edit phase reached step
    ~260 of a 100-step reset period), and every frozen Gaussian is the reconstruction's, bit for bit."""
    base, edited = gaussians(base_run), gaussians(hat_run)
    base_step = int(next((base_run / "nerfstudio_models").glob("*.ckpt")).stem.split("-")[1])
    assert base_step >= 250 and int(edited["edit_start"]) >= base_step
    assert len(edited["means"]) != len(base["means"])
    frozen = edited["frozen"]
    assert 0.5 * len(base["means"]) < int(frozen.sum()) < len(frozen)
    rows = {bytes(row.numpy().tobytes()): index for index, row in enumerate(base["means"])}
    matched = torch.tensor([rows.get(bytes(row.numpy().tobytes()), -1) for row in edited["means"][frozen]])
    assert (matched >= 0).all() and (matched.diff() > 0).all()
    for name in GAUSSIANS[:-1]:
        assert torch.equal(edited[name][frozen], base[name][matched]), name  # opacities too: no reset reached them


def test_a_run_killed_before_its_first_edit_freezes_once_when_resumed(scene, outputs, base_run):
    """Killed during the relevance warm-up (every target on disk, no edit yet, nothing frozen), the resumed run
    takes the targets back, freezes at its first edit, once, from the traced relevance, and its frozen Gaussians are
    the reconstruction's, bit for bit."""
    killed, resumed, saved, after, stdout = killed_then_resumed(
        "wys-splat", LIGHT_CPU_SPLAT_ARGS + SHORT_SPLAT_RUN, scene, outputs / "early", base_run / "nerfstudio_models",
        ["--pipeline.relevance-warmup-steps", "100000"], before_first_edit=True)
    assert saved == {} and "frozen" not in gaussians_at(killed, "latest")
    assert stdout.count("Frozen") == 1 and "Restored 0 edited views and 18 relevance targets" in stdout
    final, base = gaussians(resumed), gaussians(base_run)
    rows = {bytes(row.numpy().tobytes()): index for index, row in enumerate(base["means"])}
    matched = [rows[bytes(row.numpy().tobytes())] for row in final["means"][final["frozen"]]]  # KeyError: moved
    assert len(matched) > 0.5 * len(base["means"])
    for name in ("scales", "quats", "features_dc", "opacities"):
        assert torch.equal(final[name][final["frozen"]], base[name][matched]), name


def test_a_second_edit_on_top_keeps_the_first_where_it_does_not_act(scene, outputs, wys_run):
    """A two-step chain on wys-splat: the blue ball's run, then "turn the blue cube green" (the cube oracle, which
    over-edits the rest towards green) as a new edit on top: the relevance is traced anew, the set frozen anew (the
    ball now among the frozen), and on held-out views the ball stays as blue as the first run left it."""
    import os

    from wys_runs import held_out_views

    previous = os.environ.get("CUBE_ORACLE_SCENE")
    os.environ["CUBE_ORACLE_SCENE"] = str(scene)
    try:
        second = train("wys-splat", scene, outputs, "cube_green",
                       edit_args(wys_run) + ["--pipeline.editor", "cube_oracle:CubeOracleEditor",
                                             "--pipeline.prompt", "turn the blue cube green"])
    finally:
        os.environ.pop("CUBE_ORACLE_SCENE") if previous is None else os.environ.update(CUBE_ORACLE_SCENE=previous)
    before, _, _, labels = held_out_views(wys_run, scene)
    after, _, _, _ = held_out_views(second, scene)
    ball, cube = labels == 1, labels == 2
    blue = [float(rgb[ball][:, 2].mean() - rgb[ball][:, 0].mean()) for rgb in (before, after)]
    green = [float(rgb[cube][:, 1].mean() - np.maximum(rgb[cube][:, 0], rgb[cube][:, 2]).mean()) for rgb in (before, after)]
    print(f"ball blue {blue[0]:.3f} -> {blue[1]:.3f}, cube green {green[0]:.3f} -> {green[1]:.3f}")
    assert blue[0] > 0.2 and blue[1] > blue[0] - 0.05 and green[1] > green[0] + 0.2
    first, now = gaussians(wys_run), gaussians(second)
    ball_gaussians = {bytes(row.numpy().tobytes()) for row in first["means"][torch.sigmoid(first["relevance"][:, 0]) >= 0.5]}
    frozen_now = {bytes(row.numpy().tobytes()) for row in now["means"][now["frozen"]]}
    assert len(ball_gaussians & frozen_now) >= 0.5 * len(ball_gaussians)  # the first edit's Gaussians, frozen now
