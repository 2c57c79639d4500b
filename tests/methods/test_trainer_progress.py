"""Progress of a continued run counts this run's iterations (issue: `1040 (231.11%) ... 23 h` on a 450-iteration
edit continued from step 590), in plain lines when the output is not a terminal."""

import re

import pytest

from nerf_edit.eval.synthetic import make_scene
from nerf_edit_methods.configs import LIGHT_CPU_ARGS, method_config

ROW = re.compile(r"^(\d+) \((\d+\.\d+)%\)")


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return make_scene(tmp_path_factory.mktemp("scene") / "small", num_views=6, size=24, seed=0)


def train(scene, output_dir, timestamp, args):
    from nerfstudio.scripts.train import main as train_main

    config = method_config("wys-reconstruct", LIGHT_CPU_ARGS + [
        "--data", str(scene), "--output-dir", str(output_dir), "--timestamp", timestamp,
        "--logging.steps-per-log", "5", "--steps-per-save", "1000", *args])
    train_main(config)
    return config.get_base_dir()


def test_a_continued_run_counts_its_own_iterations(scene, tmp_path, capsys):
    first = train(scene, tmp_path, "first", ["--max-num-iterations", "12"])
    capsys.readouterr()
    train(scene, tmp_path, "second", ["--max-num-iterations", "20", "--load-dir", str(first / "nerfstudio_models")])
    out = capsys.readouterr().out
    assert "\x1b[" not in out  # plain lines, not a redrawn table (the output is not a terminal)
    rows = [ROW.match(line.strip()) for line in out.splitlines() if ROW.match(line.strip())]
    # (in one process each run's writer stays registered with nerfstudio, so rows may come twice)
    progress = sorted({(int(row.group(1)), float(row.group(2))) for row in rows})
    assert progress == [(5, 25.0), (10, 50.0), (15, 75.0), (19, 95.0)], out  # stock: 17 (85.00%), 22 (110.00%), ...
    assert "Step (% Done)" in out  # the header, also for a continued run
    assert not re.search(r"\d+ h", out.split("Step (% Done)", 1)[1]), out  # no day-long ETA for 20 iterations
