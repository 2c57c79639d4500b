"""`make demo`'s settings, offline: wys-reconstruct, then wys --load-dir with the colorkey demonstration editor.

The pair runs with every download refused and an empty torch cache (conftest.offline_env), on the bundled scene
with every 4th view held out. The edit run must start from the reconstruction's checkpoint, and on the held-out
views the ball must turn blue while the background keeps the reconstruction's quality.
"""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SCENE, ns_train
from wys_runs import evaluate, psnr

from nerf_edit.core.masks import dilate
from nerf_edit_methods.history import read_history
from nerf_edit_scripts.evaluate_scene import EvaluateScene, load_run, render_cameras
from nerf_edit_scripts.make_scene import load_object_masks
from nerf_edit_scripts.report import Report

pytestmark = pytest.mark.slow  # trains the demo's two runs


def test_reconstruct_then_edit_offline_turns_the_held_out_ball_blue(demo_runs):
    (checkpoint,) = (demo_runs.base / "nerfstudio_models").glob("*.ckpt")
    base_step = int(re.search(r"step-(\d+)", checkpoint.name).group(1))
    (edited_checkpoint,) = (demo_runs.edited / "nerfstudio_models").glob("*.ckpt")
    assert int(re.search(r"step-(\d+)", edited_checkpoint.name).group(1)) > base_step  # went on from the base
    assert not (demo_runs.base / "edits" / "images").exists() or not any((demo_runs.base / "edits" / "images").iterdir())
    assert len(list((demo_runs.edited / "edits" / "images").glob("*.png"))) >= 20  # of the 30 training views

    base, edited = evaluate(demo_runs.base, SCENE), evaluate(demo_runs.edited, SCENE)
    print(f"demo runs ({', '.join(f'{k} {v:.0f} s' for k, v in demo_runs.seconds.items())}):\n"
          f"  base   {base}\n  edited {edited}")
    assert edited["views"] == 10
    assert base["ball_blue_minus_red"] < -0.3  # red before
    assert edited["ball_blue_minus_red"] > 0.2  # blue after, on views no edit saw
    assert edited["relevance_iou"] >= 0.7
    assert edited["background_psnr"] >= base["background_psnr"] - 1.5  # the rest of the scene is intact


# Two steps of a chain on the demo's reconstruction; colorkey edits by colour, so the second step names a colour the
# first did not make: the blue cube turns green, then the red ball yellow.
CUBE_GREEN = "turn the blue cube green"
BALL_YELLOW = "turn the red ball yellow"
# Short edit runs (every training view is edited at least once: 30 views, an edit every 4 of 150 steps).
CHAIN_EDIT_ARGS = ["--max-num-iterations", "150", "--pipeline.edit-rate", "4", "--pipeline.relevance-warmup-steps", "10"]


def held_out_renders(run, scene):
    """The run's renders of the held-out views [N, H, W, 3] and the scene's object labels there [N, H, W]."""
    _, pipeline = load_run(run / "config.yml")
    outputs = pipeline.datamanager.dataparser.get_dataparser_outputs(split="test")
    rgbs, _ = render_cameras(pipeline, outputs.cameras)
    masks = load_object_masks(scene)
    labels = np.stack([masks[str(Path(f).relative_to(scene))] for f in outputs.image_filenames])
    return rgbs.permute(0, 2, 3, 1).numpy(), labels


def green_margin(pixels: np.ndarray) -> float:
    """How much greener than red and blue [K, 3] pixels are, on average."""
    return float((pixels[:, 1] - np.maximum(pixels[:, 0], pixels[:, 2])).mean())


def test_a_second_edit_on_top_keeps_the_first(demo_base, tmp_path):
    """Edit, then edit again: `ns-train wys --load-dir <the first edit>` with another prompt starts from the first
    edit's views. On held-out views of the second run the cube stays green, the ball turns yellow, and away from both
    objects the scene is the first run's; the chain is in edit_history.json, the reconstruction stays reachable and
    the report shows each step."""
    base, env, _ = demo_base

    def edit(name: str, prompt: str, load: Path) -> Path:
        return ns_train("wys", tmp_path, name, ["--load-dir", str(load / "nerfstudio_models"), "--pipeline.editor",
                                                "colorkey", "--pipeline.prompt", prompt, *CHAIN_EDIT_ARGS], env)

    runs = {"cube": edit("cube", CUBE_GREEN, base)}
    runs["ball"] = edit("ball", BALL_YELLOW, runs["cube"])
    chain = read_history(runs["ball"])
    assert [step.prompt for step in chain] == [CUBE_GREEN, BALL_YELLOW]
    assert [step.continued_as for step in chain] == ["start", "new-edit"]
    first, labels = held_out_renders(runs["cube"], SCENE)
    second, _ = held_out_renders(runs["ball"], SCENE)
    ball, cube = labels == 1, labels == 2
    away = ~dilate(torch.from_numpy(labels > 0), 2).numpy()
    numbers = {"cube green, first run": green_margin(first[cube]), "cube green, second run": green_margin(second[cube]),
               "ball yellow (min(r, g) - b)": float((np.minimum(second[ball][:, 0], second[ball][:, 1])
                                                     - second[ball][:, 2]).mean()),
               "ball yellow before (g - b)": float((first[ball][:, 1] - first[ball][:, 2]).mean()),
               "background PSNR vs the first run": psnr(second[away], first[away])}
    print("edit chain:", {k: round(v, 3) for k, v in numbers.items()})
    assert numbers["cube green, first run"] > 0.1  # the first edit is made
    assert numbers["cube green, second run"] > 0.1  # and kept by the second
    assert numbers["ball yellow (min(r, g) - b)"] > 0.2 and numbers["ball yellow before (g - b)"] < 0.1  # made
    assert numbers["background PSNR vs the first run"] > 25  # nothing else moved
    # the scene before the chain stays reachable for evaluation, and the report shows what each step did
    assert EvaluateScene(run=runs["ball"], original=Path("reconstruction"), clip_model="tiny").validate() == \
        base / "nerfstudio_models"
    assert EvaluateScene(run=runs["ball"], clip_model="tiny").validate() == runs["cube"] / "nerfstudio_models"
    index = Report(run=runs["ball"], output=tmp_path / "report").main()
    assert index.is_file() and len(list((tmp_path / "report").glob("*/index.html"))) == 1  # the first run's page
