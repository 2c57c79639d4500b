"""End-to-end: `wys` and `wys-global` with an oracle editor on the synthetic scene, from a trained checkpoint.

Random IP2P weights mean nothing, so the proof uses an editor whose right answer is known (oracle_editor.py):
relevance = the red ball, edit = ball turns blue + IP2P-like over-editing of the background. After training,
on held-out views: the rendered relevance must find the ball, wys must keep the background, wys-global must not.
"""

import os

import numpy as np
import pytest
import torch
from wys_runs import (
    away_from_objects,
    check_every_finished_edit_kept,
    check_ns_render_video,
    evaluate,
    held_out_views,
    killed_then_resumed,
    psnr,
    train,
)

from nerf_edit.core.masks import mask_iou
from nerf_edit.eval.synthetic import make_scene
from nerf_edit.scene.history import read_history
from nerf_edit_methods.configs import LIGHT_CPU_ARGS
from nerf_edit_methods.pipeline import WYSPipeline

# trains four runs in this process (one torch thread, as every test process)
pytestmark = pytest.mark.slow

ORACLE = ["--pipeline.editor", "oracle_editor:OracleEditor"]
HAT = ["--pipeline.editor", "hat_oracle:HatOracleEditor", "--pipeline.prompt", "put a purple hat on the red ball"]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return make_scene(tmp_path_factory.mktemp("scene") / "synthetic", num_views=24, size=64, seed=0)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    return tmp_path_factory.mktemp("outputs")


@pytest.fixture(scope="module")
def base_run(scene, outputs):
    """The scene before editing (what `ns-train nerfacto` gives a user): reconstruction only, no edits. 200
    iterations: its held-out background is 21.6 dB from the photos (24.0 at 300), and the edit runs below, which go
    on training on the photos outside their masks, reach 25.8 dB (threshold 22)."""
    return train("wys", scene, outputs, "base", ORACLE + ["--max-num-iterations", "200", "--pipeline.edit-start-step", "1000000"])


def edit_args(base_run):
    """120 steps, an edit every 4th after the 30 of the relevance warm-up: 22 edits, every one of the 18 training
    views at least once. Measured on held-out views (2026-12-03): relevance IoU 0.969 (threshold 0.8), background
    25.8 dB for wys against 16.6 for wys-global (wys must win by 4), the ball's b - r 0.39 and 0.43 (threshold 0.2);
    at 180 steps: 0.973, 26.7 / 16.5 dB, 0.44 / 0.42, for 40% more time."""
    return ORACLE + ["--load-dir", str(base_run / "nerfstudio_models"), "--max-num-iterations", "120",
                     "--pipeline.edit-rate", "4", "--pipeline.relevance-warmup-steps", "30"]


@pytest.fixture(scope="module")
def wys_run(scene, outputs, base_run):
    return train("wys", scene, outputs, "edited", edit_args(base_run))


@pytest.fixture(scope="module")
def global_run(scene, outputs, base_run):
    return train("wys-global", scene, outputs, "edited", edit_args(base_run))


@pytest.fixture(scope="module")
def metrics(scene, base_run, wys_run, global_run):
    results = {name: evaluate(run, scene) for name, run in (("base", base_run), ("wys", wys_run), ("wys-global", global_run))}
    for name, values in results.items():
        print(f"{name:10s} " + "  ".join(f"{k} {v:.3f}" for k, v in values.items()))
    return results


def test_relevance_field_finds_the_object_on_held_out_views(metrics):
    assert metrics["wys"]["views"] == 6
    assert metrics["wys"]["relevance_iou"] >= 0.8


def test_wys_keeps_the_background_and_global_does_not(metrics):
    assert metrics["wys"]["background_psnr"] >= 22.0
    assert metrics["wys"]["background_psnr"] >= metrics["wys-global"]["background_psnr"] + 4.0
    # and wys loses little against the unedited reconstruction
    assert metrics["wys"]["background_psnr"] >= metrics["base"]["background_psnr"] - 1.5


def test_the_object_changed_colour(metrics):
    assert metrics["base"]["ball_blue_minus_red"] < -0.3  # red before
    assert metrics["wys"]["ball_blue_minus_red"] > 0.2  # blue after
    assert metrics["wys-global"]["ball_blue_minus_red"] > 0.2


def test_every_edit_is_on_disk(wys_run, scene):
    from PIL import Image

    edited = sorted((wys_run / "edits" / "images").glob("*.png"))
    relevance = sorted((wys_run / "edits" / "relevance").glob("*.npy"))
    assert len(edited) == 18  # every training view was edited at least once (22 edits over 18 views)
    assert len(relevance) == 18
    for path in edited[:3]:
        assert Image.open(path).size == (64, 64)
    assert not list((wys_run / "edits").rglob(".*"))  # no temporary files


def test_checkpoint_holds_the_relevance_field_and_no_ip2p(wys_run):

    from nerf_edit_methods.compat import allow_nerfstudio_checkpoints

    allow_nerfstudio_checkpoints()
    (checkpoint,) = (wys_run / "nerfstudio_models").glob("*.ckpt")
    state = torch.load(checkpoint, map_location="cpu")  # weights_only, torch's default since 2.6
    keys = state["pipeline"].keys()
    assert any(k.startswith("_model.relevance_field.") for k in keys)
    assert not any("unet" in k or "vae" in k or "text_encoder" in k for k in keys)
    assert "relevance_field" in state["optimizers"]


def test_a_second_edit_in_3d_keeps_the_first_on_held_out_views(scene, outputs, wys_run, monkeypatch):
    """wys turned the ball blue; a new edit on top of that run turns the cube green (an oracle by import path that
    knows the scene's cube masks: by colour alone the cube and the now blue ball are alike; it over-edits the rest
    of each view towards green). On held-out views of the second run: the ball is as blue as after the first run,
    the cube is green, and away from both objects the renders are as close to the scene's photos as the first run's
    (measured 2026-12-07, 120 steps: ball b - r 0.425 -> 0.423, cube g - max(r, b) -0.328 -> 0.372). The cube
    oracle's relevance reads the original views alone and says so, so no view is rendered for its relevance
    targets."""
    monkeypatch.setenv("CUBE_ORACLE_SCENE", str(scene))
    # The official edit region (the rendered relevance alone): where the edit acts is the relevance field's alone,
    # so the field's reset for a new instruction is what lets the second edit happen (the last control below).
    cube_edit = ["--pipeline.editor", "cube_oracle:CubeOracleEditor", "--pipeline.prompt", "turn the blue cube green",
                 "--pipeline.edit-region", "rendered"]
    second = train("wys", scene, outputs, "cube_green", edit_args(wys_run) + cube_edit)
    # the base is a wys run that made no edit; wys_run resumed it (same prompt), this run is a new edit on top
    assert [step.continued_as for step in read_history(second)] == ["start", "resume", "new-edit"]
    before, _, photos, labels = held_out_views(wys_run, scene)
    after, relevance, _, _ = held_out_views(second, scene)
    ball, cube = labels == 1, labels == 2

    def blue(rgb):  # mean b - r inside the ball
        return float(rgb[ball][:, 2].mean() - rgb[ball][:, 0].mean())

    def green(rgb):  # mean g - max(r, b) inside the cube
        return float(rgb[cube][:, 1].mean() - np.maximum(rgb[cube][:, 0], rgb[cube][:, 2]).mean())

    away = away_from_objects(labels)
    background = psnr(before[away], photos[away]), psnr(after[away], photos[away])  # against the scene's photos
    print(f"ball blue {blue(before):.3f} -> {blue(after):.3f}, cube green {green(before):.3f} -> {green(after):.3f}, "
          f"background PSNR {background[0]:.2f} -> {background[1]:.2f} dB (between the runs "
          f"{psnr(after[away], before[away]):.1f} dB)")
    assert blue(before) > 0.3 and blue(after) > blue(before) - 0.1  # the first edit is kept
    assert green(before) < 0 and green(after) > 0.2  # the second is made
    assert background[1] >= background[0] - 0.5  # the background is no further from the photos than it was
    # The control: the same stacked edit made globally (no relevance, no mask). The oracle's drift towards green
    # reaches the ball there, so the first edit is lost: the mask is what kept it above.
    control = train("wys-global", scene, outputs, "cube_green_global", edit_args(wys_run) + cube_edit)
    unmasked, _, _, _ = held_out_views(control, scene)
    print(f"control (wys-global on top): ball blue {blue(unmasked):.3f}, cube green {green(unmasked):.3f}")
    assert blue(unmasked) < blue(before) - 0.1 and green(unmasked) > 0.2
    # and the new instruction's relevance field finds the cube, not the ball
    assert mask_iou(relevance >= 0.5, cube) >= 0.7 and mask_iou(relevance >= 0.5, ball) < 0.1
    # The second control: the same stacked edit with the relevance field NOT reset for the new instruction (the first
    # one's weights and Adam's moments kept): the second edit does not show (measured 2026-12-07: cube green -0.271
    # against 0.372 with the reset, the ball 0.336 against 0.423).
    monkeypatch.setattr(WYSPipeline, "reset_relevance_field", lambda self: None)
    stale = train("wys", scene, outputs, "cube_green_no_reset", edit_args(wys_run) + cube_edit)
    unreset, _, _, _ = held_out_views(stale, scene)
    print(f"control (no relevance reset): ball blue {blue(unreset):.3f}, cube green {green(unreset):.3f}")
    assert green(unreset) < 0.2 < green(after)


@pytest.fixture(scope="module")
def hat_run(scene, outputs, base_run):
    """"put a purple hat on the red ball" by an oracle that knows the scene with the hat (hat_oracle.py): relevance
    where the hat changes each view plus the ball; 240 steps, edits as the other runs' (the hat must grow new
    geometry: at 120 steps it had not, gain -0.03 of 0.21)."""
    previous = os.environ.get("HAT_ORACLE_SCENE")
    os.environ["HAT_ORACLE_SCENE"] = str(scene)
    try:
        return train("wys", scene, outputs, "hat",
                     HAT + ["--load-dir", str(base_run / "nerfstudio_models"), "--max-num-iterations", "240",
                            "--pipeline.edit-rate", "4", "--pipeline.relevance-warmup-steps", "30"])
    finally:
        os.environ.pop("HAT_ORACLE_SCENE") if previous is None else os.environ.update(HAT_ORACLE_SCENE=previous)


def test_an_instruction_that_adds_an_object_grows_it_on_held_out_views(scene, base_run, hat_run):
    """The hat stands where the scene has no surface, so the rendered relevance cannot mark it; each view's own
    target does (--pipeline.edit-region rendered+target). On held-out views the hat's pixels get at least half the
    purple the truth has there, and the background away from the objects stays within 1 dB of the no-edit control
    (measured 2026-12-06: gain 0.166 of 0.206, background 26.55 dB against 21.52; with --pipeline.edit-region
    rendered, 400 steps: see docs/testing.md)."""
    from hat_oracle import hat_metrics

    edited, control = hat_metrics(hat_run, scene), hat_metrics(base_run, scene)
    print(f"hat: gain {edited['gain']:.3f} of {edited['truth']:.3f}, background {edited['background']:.2f} dB "
          f"(control: gain {control['gain']:.3f}, background {control['background']:.2f} dB)")
    assert edited["gain"] >= 0.5 * edited["truth"] and control["gain"] < 0.25 * edited["truth"]
    assert edited["background"] >= control["background"] - 1.0


def test_kill_and_resume_keeps_every_finished_edit(scene, outputs, base_run):
    """kill -9 a wys run mid-way; the resumed run restores every edit that was on disk and goes on editing."""
    killed, _, saved, after, stdout = killed_then_resumed("wys", LIGHT_CPU_ARGS, scene, outputs,
                                                          base_run / "nerfstudio_models",
                                                          ["--pipeline.relevance-warmup-steps", "0"])
    assert len(list((killed / "edits" / "relevance").glob("*.npy"))) == 18
    check_every_finished_edit_kept(saved, after, stdout)


def test_ns_render_writes_the_edited_scene_and_its_relevance(wys_run, tmp_path):
    check_ns_render_video(wys_run, tmp_path / "edited.mp4")


def test_scene_evaluation_driver_compares_with_the_original_scene(wys_run, global_run, tmp_path):
    from nerf_edit_scripts.evaluate_scene import EvaluateScene

    wys = EvaluateScene(run=wys_run, clip_model="tiny", output=tmp_path / "wys").main()
    plain = EvaluateScene(run=global_run, clip_model="tiny", output=tmp_path / "global").main()
    print("driver:", {k: round(v, 3) for k, v in wys.items() if isinstance(v, float)})
    assert wys["frames"] == 6 and len(list((tmp_path / "wys" / "edited").glob("*.png"))) == 6
    assert wys["relevance_iou"] >= 0.8
    # the original is the run's --load-dir checkpoint: wys leaves its background alone, the global editor does not
    assert wys["background_psnr"] >= plain["background_psnr"] + 4.0
    assert (tmp_path / "wys" / "results.json").is_file() and (tmp_path / "wys" / "results.png").is_file()
