"""`make demo`'s settings, offline: wys-reconstruct, then wys --load-dir with the colorkey demonstration editor.

The pair runs with every download refused and an empty torch cache (conftest.offline_env), on the bundled scene
with every 4th view held out. The edit run must start from the reconstruction's checkpoint, and on the held-out
views the ball must turn blue while the background keeps the reconstruction's quality.
"""

import re

import pytest
from conftest import SCENE
from wys_runs import evaluate

# trains the demo's two runs (subprocesses, one thread each), then renders their held-out views here
pytestmark = pytest.mark.slow


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
