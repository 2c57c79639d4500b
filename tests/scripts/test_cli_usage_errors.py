"""Bad input to every 2D command: one `error:` line saying what to fix, exit status 2, no traceback, nothing written,
nothing of the input touched, and no model or data loaded (the loaders are replaced by ones that fail the test).

Table-driven: (command, arguments, expected message fragment). Run in-process through each console script's
entrypoint (sys.argv), so the cases cost milliseconds; test_real_console_scripts runs a few as real processes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from waiting import HANG_GUARD

from nerf_edit.core.io import atomic_save_image
from nerf_edit.errors import UsageError
from nerf_edit_scripts import cli, edit_image, evaluate, evaluate_scene, export_relevant, make_scene

ENTRYPOINTS = {
    "nerf-edit-image": edit_image.entrypoint,
    "nerf-edit-eval": evaluate.entrypoint,
    "nerf-edit-eval-scene": evaluate_scene.entrypoint,
    "nerf-edit-make-scene": make_scene.entrypoint,
    "nerf-edit-export-relevant": export_relevant.entrypoint,
}
MISSING_GPU = f"cuda:{torch.cuda.device_count()}"  # a GPU this machine does not have, with or without GPUs


@pytest.fixture()
def files(tmp_path):
    """Inputs of every kind the cases need, in tmp_path (which the tests then check is left exactly as it was)."""
    generator = torch.Generator().manual_seed(0)
    atomic_save_image(tmp_path / "good.png", torch.rand(3, 16, 16, generator=generator))
    atomic_save_image(tmp_path / "tiny.png", torch.rand(3, 4, 4, generator=generator))
    (tmp_path / "bad.png").write_text("not a png")
    (tmp_path / "file.txt").write_text("a file where a folder is expected")
    (tmp_path / "empty").mkdir()
    (tmp_path / "model_folder").mkdir()  # a folder that is no saved pipeline
    (tmp_path / "model_folder" / "weights.bin").write_bytes(b"0")
    for i in range(2):
        atomic_save_image(tmp_path / "edited" / f"{i:03d}.png", torch.rand(3, 16, 16, generator=generator))
        atomic_save_image(tmp_path / "original" / f"{i:03d}.png", torch.rand(3, 16, 16, generator=generator))
    for i in range(3):
        atomic_save_image(tmp_path / "three" / f"{i:03d}.png", torch.rand(3, 16, 16, generator=generator))
    (tmp_path / "foreign_scene").mkdir()
    (tmp_path / "foreign_scene" / "transforms.json").write_text("{}")  # someone's real scene: never overwritten
    make_runs(tmp_path)
    return tmp_path


def make_runs(root: Path) -> None:
    """Run folders as ns-train leaves them (config.yml + nerfstudio_models/step-*.ckpt); never loaded here."""
    from nerf_edit_methods.configs import method_config

    for name, load_dir in (("base", None), ("edited", root / "base" / "nerfstudio_models")):
        config = method_config("wys", ["--data", str(root / "scene"), "--pipeline.prompt", "turn it blue"])
        config.load_dir = load_dir
        (root / name / "nerfstudio_models").mkdir(parents=True)
        (root / name / "config.yml").write_text(yaml.dump(config))
        (root / name / "nerfstudio_models" / "step-000000001.ckpt").write_bytes(b"never read by these tests")
    (root / "no_checkpoints").mkdir()
    (root / "no_checkpoints" / "config.yml").write_text((root / "edited" / "config.yml").read_text())


IMAGE = ["--input", "{good.png}", "--instruction", "turn it blue", "--output", "{out}", "--model", "tiny"]
EVAL = ["--edited", "{edited}", "--original", "{original}", "--instruction", "turn it blue", "--clip-model", "tiny",
        "--output", "{out}/results.json"]
SCENE = ["--run", "{edited}", "--clip-model", "tiny", "--output", "{out}"]
CASES = [
    # nerf-edit-image: inputs
    ("nerf-edit-image", ["--input", "{missing.png}", "--instruction", "x", "--output", "{out}"], "--input '{missing.png}' does not exist"),
    ("nerf-edit-image", ["--input", "{bad.png}", "--instruction", "x", "--output", "{out}"], "cannot read image"),
    ("nerf-edit-image", ["--input", "{empty}", "--instruction", "x", "--output", "{out}"], "no images"),
    ("nerf-edit-image", ["--input", "{tiny.png}", "--instruction", "x", "--output", "{out}"], "at least 8x8 pixels"),
    ("nerf-edit-image", ["--input", "{good.png}", "--instruction", " ", "--output", "{out}"], "instruction is empty"),
    # outputs
    ("nerf-edit-image", IMAGE[:-4] + ["--output", "{file.txt}"], "is an existing file, not a folder"),
    ("nerf-edit-image", IMAGE[:-4] + ["--output", "{file.txt}/sub"], "cannot be created"),
    # numbers
    ("nerf-edit-image", IMAGE + ["--tau", "1.5"], "--tau must be in [0, 1], got 1.5"),
    ("nerf-edit-image", IMAGE + ["--tau", "-0.1"], "--tau must be in [0, 1]"),
    ("nerf-edit-image", IMAGE + ["--tau", "nan"], "--tau must be a finite number"),
    ("nerf-edit-image", IMAGE + ["--steps", "0"], "--steps must be an integer >= 1"),
    ("nerf-edit-image", IMAGE + ["--guidance-scale", "-1"], "--guidance-scale must be >= 0"),
    ("nerf-edit-image", IMAGE + ["--image-guidance-scale", "-0.5"], "--image-guidance-scale must be >= 0"),
    ("nerf-edit-image", IMAGE + ["--dilate-px", "-1"], "--dilate-px must be an integer >= 0"),
    ("nerf-edit-image", IMAGE + ["--feather-px", "-2"], "--feather-px must be an integer >= 0"),
    ("nerf-edit-image", IMAGE + ["--relevance-timestep", "0"], "--relevance-timestep must be in (0, 1]"),
    ("nerf-edit-image", IMAGE + ["--relevance-timestep", "1.5"], "--relevance-timestep must be in (0, 1]"),
    ("nerf-edit-image", IMAGE + ["--relevance-samples", "0"], "--relevance-samples must be an integer >= 1"),
    ("nerf-edit-image", IMAGE + ["--iqr-k", "-1"], "--iqr-k must be >= 0"),
    ("nerf-edit-image", IMAGE + ["--seed", str(2**64)], "--seed 18446744073709551616 is out of range"),
    # a system's settings are checked where the system is used (its editor or localiser)
    ("nerf-edit-image", IMAGE + ["--editor", "zone", "--zone.edge-alpha", "1.5"], "--zone.edge-alpha must be in [0, 1]"),
    ("nerf-edit-image", IMAGE + ["--localizer", "zone", "--zone.attention-threshold", "300"],
     "--zone.attention-threshold must be in [0, 255]"),
    # devices
    ("nerf-edit-image", IMAGE + ["--device", MISSING_GPU], f"--device '{MISSING_GPU}'"),
    ("nerf-edit-image", IMAGE + ["--device", "banana"], "--device 'banana' is not a device"),
    ("nerf-edit-image", IMAGE + ["--dtype", "fp8"], "unknown --dtype 'fp8'"),
    # editors, models, plug-ins
    ("nerf-edit-image", IMAGE + ["--editor", "nowhere:Editor"], "cannot import editor 'nowhere:Editor'"),
    ("nerf-edit-image", IMAGE + ["--editor", "bogus"], "unknown --editor 'bogus'"),
    ("nerf-edit-image", IMAGE + ["--editor", "nerf_edit.editing.editor:EditResult"], "lacks relevance()/edit()"),
    ("nerf-edit-image", IMAGE[:-1] + ["some-org/not-downloaded"], "'some-org/not-downloaded' is not available"),
    ("nerf-edit-image", IMAGE[:-1] + ["./no/such/folder"], "is not a directory"),
    ("nerf-edit-image", IMAGE[:-1] + ["{model_folder}"], "has no model_index.json"),
    ("nerf-edit-image", IMAGE[:-1] + ["not a hub id"], "neither a folder nor a hub id"),
    ("nerf-edit-image", IMAGE + ["--editor", "zone"], "'vinesmsuic/magicbrush-jul7' is not available"),
    ("nerf-edit-image", IMAGE + ["--editor", "zone", "--zone.fusion-model", "none", "--zone.segmenter", "some-org/no-sam"],
     "'some-org/no-sam' is not available"),
    ("nerf-edit-image", IMAGE + ["--localizer", "zone", "--zone.fusion-model", "none", "--zone.segmenter", "nowhere:Seg"],
     "cannot import segmenter 'nowhere:Seg'"),
    ("nerf-edit-image", IMAGE + ["--localizer", "zone", "--zone.fusion-model", "none", "--zone.segmenter", "none",
                                 "--zone.action", "sometimes"], "unknown --zone.action 'sometimes'"),
    ("nerf-edit-image", IMAGE + ["--localizer", "zone", "--zone.fusion-model", "none", "--zone.segmenter", "none",
                                 "--zone.action", "nowhere:Classifier"], "cannot import action classifier"),
    # nerf-edit-eval
    ("nerf-edit-eval", ["--edited", "{missing}", *EVAL[2:]], "--edited '{missing}' does not exist"),
    ("nerf-edit-eval", [*EVAL[:2], "--original", "{empty}", *EVAL[4:]], "--original: no frames"),
    ("nerf-edit-eval", [*EVAL[:2], "--original", "{file.txt}", *EVAL[4:]], "neither a folder of frames nor a video"),
    ("nerf-edit-eval", [*EVAL[:2], "--original", "{three}", *EVAL[4:]], "different numbers of frames"),
    ("nerf-edit-eval", EVAL + ["--masks", "{file.txt}"], "--masks '{file.txt}' is not a folder"),
    ("nerf-edit-eval", EVAL + ["--masks", "{three}"], "different numbers of frames"),
    ("nerf-edit-eval", [*EVAL[:4], "--instruction", "", *EVAL[6:]], "--instruction is empty"),
    ("nerf-edit-eval", EVAL + ["--source-caption", "a red ball"], "pass both --source-caption and --target-caption"),
    ("nerf-edit-eval", EVAL[:-4] + ["--clip-model", "some-org/no-clip", *EVAL[-2:]], "'some-org/no-clip' is not available"),
    ("nerf-edit-eval", EVAL + ["--device", MISSING_GPU], f"--device '{MISSING_GPU}'"),
    ("nerf-edit-eval", EVAL + ["--device", "auto"], "--device 'auto' is not a device: use cpu, cuda, cuda:N"),
    ("nerf-edit-eval", EVAL[:-1] + ["{empty}"], "--output '{empty}' is a folder"),
    ("nerf-edit-eval", EVAL[:-1] + ["{file.txt}/results.json"], "cannot be created"),
    # nerf-edit-eval-scene
    ("nerf-edit-eval-scene", ["--run", "{missing}", *SCENE[2:]], "--run '{missing}' is not a folder"),
    ("nerf-edit-eval-scene", ["--run", "{empty}", *SCENE[2:]], "no run config"),
    ("nerf-edit-eval-scene", ["--run", "{no_checkpoints}", *SCENE[2:]], "does not exist"),
    ("nerf-edit-eval-scene", ["--run", "{base}", *SCENE[2:]], "not started from a checkpoint"),
    ("nerf-edit-eval-scene", SCENE + ["--original", "{empty}"], "--original '{empty}' holds no checkpoints"),
    ("nerf-edit-eval-scene", SCENE + ["--original", "{base}"], "is a run folder: pass its checkpoints"),
    ("nerf-edit-eval-scene", SCENE + ["--tau", "1.5"], "--tau must be in [0, 1]"),
    ("nerf-edit-eval-scene", SCENE + ["--object-label", "0"], "--object-label must be an integer >= 1"),
    ("nerf-edit-eval-scene", SCENE + ["--instruction", " "], "--instruction is empty"),
    ("nerf-edit-eval-scene", SCENE[:-4] + ["--clip-model", "./no/clip", *SCENE[-2:]], "is not a directory"),
    ("nerf-edit-eval-scene", SCENE[:-1] + ["{file.txt}"], "is an existing file, not a folder"),
    # nerf-edit-export-relevant
    ("nerf-edit-export-relevant", ["--load-config", "{missing}/config.yml"], "no run config"),
    ("nerf-edit-export-relevant", ["--load-config", "{edited}/config.yml"], "is a wys run: only wys-splat runs"),
    ("nerf-edit-export-relevant", ["--load-config", "{edited}/config.yml", "--threshold", "2"],
     "--threshold must be in [0, 1]"),
    # nerf-edit-make-scene
    ("nerf-edit-make-scene", ["--output", "{out}", "--size", "8"], "--size must be an integer >= 16, got 8"),
    ("nerf-edit-make-scene", ["--output", "{out}", "--num-views", "1"], "--num-views must be an integer >= 2"),
    ("nerf-edit-make-scene", ["--output", "{out}", "--seed", "-1"], "--seed must be an integer >= 0"),
    ("nerf-edit-make-scene", ["--output", "{file.txt}"], "is an existing file, not a folder"),
    ("nerf-edit-make-scene", ["--output", "{foreign_scene}"], "holds files this generator did not write"),
]


def fill(text: str, root: Path) -> str:
    """`{name}` -> root/name; `{out}` is a folder that must never appear."""
    import re

    return re.sub(r"\{([^{}]+)\}", lambda m: str(root / m.group(1)), text)


def snapshot(root: Path) -> dict:
    """Every file and folder under root with its content hash: equal snapshots = nothing written or touched."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


@pytest.fixture()
def no_loading(monkeypatch):
    """Loading any model, run or frame during a usage error is a failure: validation must come first."""

    def loaded(*args, **kwargs):
        raise AssertionError("a model, run or scene was loaded before the settings were checked")

    from nerf_edit.eval import metrics
    from nerf_edit.models import ip2p, segment

    monkeypatch.setattr(ip2p.InstructPix2Pix, "from_pretrained", loaded)
    monkeypatch.setattr(metrics.ClipEmbedder, "__init__", loaded)
    monkeypatch.setattr(segment.SamSegmenter, "__init__", loaded)
    monkeypatch.setattr(evaluate, "load_frames", loaded)
    monkeypatch.setattr(evaluate_scene, "load_run", loaded)
    monkeypatch.setattr(make_scene, "make_scene", loaded)


def run_in_process(command: str, args: list, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [command, *args])
    with pytest.raises(SystemExit) as info:
        ENTRYPOINTS[command]()
    return info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("command, args, message", CASES, ids=[f"{c[0]}:{' '.join(c[1])[-60:]}" for c in CASES])
def test_bad_input_is_one_line_exit_2_and_nothing_written(command, args, message, files, no_loading, monkeypatch, capsys):
    before = snapshot(files)
    code, stderr = run_in_process(command, [fill(a, files) for a in args], monkeypatch, capsys)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, stderr
    assert lines and lines[-1].startswith("error: ") and fill(message, files) in lines[-1], stderr
    assert sum(line.startswith("error:") for line in lines) == 1 and "Traceback" not in stderr
    assert snapshot(files) == before  # nothing written (no `out/`), every input byte-identical


def test_good_settings_pass_the_same_checks(files, no_loading, monkeypatch):
    """The control: the checks that stop the cases above let valid settings through."""
    args = [fill(a, files) for a in IMAGE]
    monkeypatch.setattr(sys, "argv", ["nerf-edit-image", *args])
    import tyro

    tyro.cli(edit_image.EditImage, args=args).validate()
    tyro.cli(evaluate.Evaluate, args=[fill(a, files) for a in EVAL]).validate()
    assert tyro.cli(evaluate_scene.EvaluateScene, args=[fill(a, files) for a in SCENE]).validate() == files / "base" / "nerfstudio_models"
    tyro.cli(make_scene.MakeScene, args=["--output", str(files / "new_scene")]).validate()


def test_undecodable_video_is_one_line(files, monkeypatch, capsys):
    """Only decoding tells a broken video: it fails before CLIP is loaded, in one line."""
    (files / "broken.mp4").write_text("not a video")
    monkeypatch.setattr(evaluate.ClipEmbedder, "__init__", lambda *a, **k: pytest.fail("CLIP loaded"))
    before = snapshot(files)
    args = ["--edited", str(files / "broken.mp4"), *[fill(a, files) for a in EVAL[2:]]]
    code, stderr = run_in_process("nerf-edit-eval", args, monkeypatch, capsys)
    assert code == 2 and stderr.splitlines()[-1].startswith("error: cannot read video"), stderr
    assert snapshot(files) == before


@dataclass
class Failing:
    """A command whose main raises a user error or a bug."""

    kind: str = "usage"

    def main(self) -> None:
        if self.kind == "usage":
            raise UsageError("the thing is wrong: pass another thing")
        raise ValueError("a bug in our code")  # not a user error: must keep its traceback


def test_only_user_errors_become_one_line(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["failing", "--kind", "usage"])
    with pytest.raises(SystemExit) as info:
        cli.run(Failing)
    assert info.value.code == 2 and capsys.readouterr().err == "error: the thing is wrong: pass another thing\n"
    monkeypatch.setattr(sys, "argv", ["failing", "--kind", "bug"])
    with pytest.raises(ValueError, match="a bug in our code"):  # propagates: Python prints its traceback
        cli.run(Failing)


def console_script(name: str) -> str:
    return str(Path(sys.executable).parent / name)


@pytest.mark.slow  # one process per console script (~1 min)
def test_real_console_scripts(files):
    """The installed commands, as a user runs them (in parallel: start-up is mostly imports)."""
    cases = [
        ("nerf-edit-image", IMAGE + ["--tau", "1.5"], "--tau must be in [0, 1]"),
        ("nerf-edit-image", IMAGE[:-4] + ["--output", "{file.txt}"], "is an existing file"),
        ("nerf-edit-make-scene", ["--output", "{file.txt}"], "is an existing file"),
    ]
    before = snapshot(files)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    processes = [subprocess.Popen([console_script(c), *[fill(a, files) for a in args]], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=env) for c, args, _ in cases]
    for (command, _, message), process in zip(cases, processes):
        _, stderr = process.communicate(timeout=HANG_GUARD)
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert process.returncode == 2, stderr
        # The error is the only line: no library warning before it (e.g. bitsandbytes' CPU-kernel note, imported
        # through diffusers once set-up installed it).
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], stderr
    assert snapshot(files) == before


@pytest.mark.parametrize("command, args", [
    ("nerf-edit-image", IMAGE),
    ("nerf-edit-eval", EVAL),
    ("nerf-edit-make-scene", ["--output", "{out}"]),
])
def test_output_folder_that_cannot_be_written(command, args, files, no_loading, monkeypatch, capsys):
    """A folder the user may not write into (simulated: the tests run as root, who may write anywhere)."""
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != files and real_access(path, mode))
    before = snapshot(files)
    code, stderr = run_in_process(command, [fill(a, files) for a in args], monkeypatch, capsys)
    assert code == 2 and stderr.splitlines()[-1].startswith("error: --output") and "is not writable" in stderr, stderr
    assert snapshot(files) == before
