"""`ns-train wys` with bad settings: one `error:` line, exit status 2, no traceback, no run folder, and it stops
before anything is built (no trainer, datamanager, model or editor; so no relevance map either).

Most cases run in-process through `method_config` (the config ns-train parses) and `set_timestamp()`, the first
thing ns-train's main calls on it (WYSTrainerConfig checks everything there); the builders are replaced by ones
that fail the test. test_real_ns_train runs three as real `ns-train` processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from waiting import HANG_GUARD

from nerf_edit.core.io import atomic_save_image
from nerf_edit.errors import UsageError
from nerf_edit.eval.synthetic import make_scene
from nerf_edit_methods import validate as wys_validate
from nerf_edit_methods.configs import LIGHT_CPU_ARGS, method_config
from nerf_edit_methods.pipeline import WYSPipeline
from nerf_edit_methods.trainer import WYSTrainer

MISSING_GPU = f"cuda:{torch.cuda.device_count()}"
PROMPT = ["--pipeline.prompt", "turn the red ball blue"]
ORACLE = ["--pipeline.editor", "oracle_editor:OracleEditor"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """Scenes and earlier runs of every kind the cases need (never modified: checked after every case)."""
    root = tmp_path_factory.mktemp("usage")
    make_scene(root / "scene", num_views=4, size=16, seed=0)
    (root / "empty").mkdir()
    (root / "file.txt").write_text("a file")
    (root / "model_folder").mkdir()
    (root / "model_folder" / "unet.bin").write_bytes(b"0")
    for name, transforms in (("bad_json", "{not json"), ("no_frames", '{"frames": []}'),
                             ("lost_images", json.dumps({"frames": [{"file_path": "images/gone.png"}]}))):
        (root / name).mkdir()
        (root / name / "transforms.json").write_text(transforms)
    for name, sizes in (("mixed_sizes", (16, 12)), ("not_an_image", (16, None))):
        frames = []
        for i, size in enumerate(sizes):
            path = root / name / "images" / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            if size is None:
                path.write_text("not a png")
            else:
                atomic_save_image(path, torch.rand(3, size, size))
            frames.append({"file_path": f"images/{i}.png", "transform_matrix": torch.eye(4).tolist()})
        (root / name / "transforms.json").write_text(json.dumps({"frames": frames}))
    (root / "only_images" / "images").mkdir(parents=True)
    (root / "only_images" / "images" / "a.png").write_bytes((root / "scene" / "images" / "frame_00000.png").read_bytes())
    from nerfstudio.configs.method_configs import all_methods

    for name, config in (("nerfacto_default", all_methods["nerfacto"]), ("splatfacto", all_methods["splatfacto"]),
                         ("nerfacto_light", method_config("wys", LIGHT_CPU_ARGS))):
        checkpoints = root / name / "nerfstudio_models"
        checkpoints.mkdir(parents=True)
        (root / name / "config.yml").write_text(yaml.dump(config))
        (checkpoints / "step-000000299.ckpt").write_bytes(b"never read by these tests")
    (root / "stray" / "nerfstudio_models").mkdir(parents=True)
    (root / "stray" / "nerfstudio_models" / "step-000000001.ckpt").write_bytes(b"x")
    (root / "stray" / "nerfstudio_models" / "notes.txt").write_text("x")
    return root


def args_for(root: Path, extra, data: str = "scene") -> list:
    args = [a.replace("{root}", str(root)) for a in extra]
    base = LIGHT_CPU_ARGS + ORACLE + PROMPT + ["--output-dir", str(root / "outputs")]
    if "--data" not in args:
        base += ["--data", str(root / data)]
    return base + args


LIGHT_RUN = "{root}/nerfacto_light/nerfstudio_models"
CASES = [
    # the prompt and the numbers
    (["--pipeline.prompt", " "], "--pipeline.prompt is empty"),
    (["--pipeline.editing.tau", "1.5"], "--pipeline.editing.tau must be in [0, 1], got 1.5"),
    (["--pipeline.editing.tau", "-0.1"], "--pipeline.editing.tau must be in [0, 1]"),
    (["--pipeline.editing.guidance-scale", "-1"], "--pipeline.editing.guidance-scale must be >= 0"),
    (["--pipeline.editing.image-guidance-scale", "-1"], "--pipeline.editing.image-guidance-scale must be >= 0"),
    (["--pipeline.editing.steps", "0"], "--pipeline.editing.steps must be an integer >= 1"),
    (["--pipeline.edit-rate", "0"], "--pipeline.edit-rate must be an integer >= 1"),
    (["--pipeline.edit-count", "0"], "--pipeline.edit-count must be an integer >= 1"),
    (["--pipeline.lower-bound", "0"], "--pipeline.lower-bound must be in (0, 1]"),
    (["--pipeline.upper-bound", "1.5"], "--pipeline.upper-bound must be in (0, 1]"),
    (["--pipeline.lower-bound", "0.9", "--pipeline.upper-bound", "0.5"], "need --pipeline.lower-bound <= --pipeline.upper-bound"),
    (["--pipeline.editing.relevance-timestep", "0"], "--pipeline.editing.relevance-timestep must be in (0, 1]"),
    (["--pipeline.editing.iqr-k", "-1"], "--pipeline.editing.iqr-k must be >= 0"),
    (["--pipeline.relevance-warmup-steps", "-1"], "--pipeline.relevance-warmup-steps must be an integer >= 0"),
    (["--pipeline.edit-start-step", "-5"], "--pipeline.edit-start-step must be an integer >= 0"),
    (["--pipeline.seed", str(2**64)], "--pipeline.seed 18446744073709551616 is out of range"),
    (["--pipeline.model.use-lpips", "True"], "the LPIPS loss compares 32x32 patches but the datamanager samples 1x1"),
    (["--pipeline.model.use-lpips", "True", "--pipeline.datamanager.patch-size", "32"],
     "512 rays per batch hold no 32x32 patch"),
    (["--pipeline.editor", "zone", "--pipeline.editing.model", "tiny", "--pipeline.editing.zone.edge-alpha", "2"],
     "--pipeline.editing.zone.edge-alpha must be in [0, 1]"),
    # editors, localizers, models, plug-ins
    (["--pipeline.editor", "nowhere:Editor"], "cannot import editor 'nowhere:Editor'"),
    (["--pipeline.editor", "colorkey", "--pipeline.prompt", "make it nicer"],
     "--pipeline.prompt: the colorkey demonstration editor can't read a source and a target colour from 'make it nicer'"),
    (["--pipeline.editor", "oracle_editor"], "unknown --pipeline.editor 'oracle_editor'"),
    (["--pipeline.editor", "oracle_editor:NotAnEditor"], "editor 'oracle_editor:NotAnEditor' lacks relevance()/edit()"),
    (["--pipeline.editing.localizer", "zone"], "does not take --pipeline.editing.localizer zone"),  # the oracle has no localizer
    (["--pipeline.editor", "relevance", "--pipeline.editing.model", "org/not-downloaded"], "'org/not-downloaded' is not available"),
    (["--pipeline.editor", "relevance", "--pipeline.editing.model", "./no/such/model"], "--pipeline.editing.model './no/such/model' is not a directory"),
    (["--pipeline.editor", "global", "--pipeline.editing.model", "{root}/model_folder"], "has no model_index.json"),
    (["--pipeline.editor", "zone", "--pipeline.editing.model", "tiny"], "'vinesmsuic/magicbrush-jul7' is not available"),
    (["--pipeline.editor", "relevance", "--pipeline.editing.localizer", "zone", "--pipeline.editing.model", "tiny",
      "--pipeline.editing.zone.fusion-model", "none", "--pipeline.editing.zone.segmenter", "nowhere:Segmenter"], "cannot import segmenter"),
    (["--pipeline.editor", "zone", "--pipeline.editing.model", "tiny", "--pipeline.editing.zone.fusion-model", "none",
      "--pipeline.editing.zone.segmenter", "none", "--pipeline.editing.zone.action", "often"], "unknown --pipeline.editing.zone.action 'often'"),
    # devices
    (["--pipeline.editing.device", MISSING_GPU], f"--pipeline.editing.device '{MISSING_GPU}'"),
    (["--pipeline.editing.device", "banana"], "--pipeline.editing.device 'banana' is not a device"),
    (["--pipeline.editing.dtype", "fp8"], "unknown --pipeline.editing.dtype 'fp8'"),
    # --data
    (["--data", "{root}/missing"], "--data '{root}/missing' does not exist"),
    (["--data", "{root}/empty"], "--data '{root}/empty' is empty"),
    (["--data", "{root}/only_images"], "has no transforms.json"),
    (["--data", "{root}/bad_json"], "is not a nerfstudio transforms file"),
    (["--data", "{root}/no_frames"], "lists no frames"),
    (["--data", "{root}/lost_images"], "1 of 1 images listed"),
    (["--data", "{root}/mixed_sizes"], "the images of --data have 2 sizes"),
    (["--data", "{root}/not_an_image"], "cannot read image"),
    # --load-dir
    (["--load-dir", "{root}/missing/nerfstudio_models"], "--load-dir '{root}/missing/nerfstudio_models' does not exist"),
    (["--load-dir", "{root}/file.txt"], "is a file"),
    (["--load-dir", "{root}/empty"], "holds no checkpoints"),
    (["--load-dir", "{root}/nerfacto_light"], "is a run folder: pass its checkpoints"),
    (["--load-dir", "{root}/stray/nerfstudio_models"], "holds files other than step-*.ckpt (e.g. 'notes.txt')"),
    (["--load-dir", LIGHT_RUN, "--load-step", "7"], "--load-step 7"),
    (["--load-dir", "{root}/splatfacto/nerfstudio_models"], "is a 'splatfacto' run"),
    (["--load-dir", "{root}/nerfacto_default/nerfstudio_models"], "was trained with --pipeline.model.implementation tcnn"),
    (["--load-dir", LIGHT_RUN, "--pipeline.model.log2-hashmap-size", "15"], "--pipeline.model.log2-hashmap-size 16, this run has 15"),
    (["--load-dir", LIGHT_RUN, "--pipeline.model.camera-optimizer.mode", "SO3xR3"], "camera-optimizer.mode off, this run has SO3xR3"),
    (["--load-checkpoint", "{root}/missing.ckpt"], "--load-checkpoint"),
]


def test_no_data_given(root, nothing_built, capsys, monkeypatch):
    monkeypatch.chdir(root / "empty")
    config = method_config("wys", [a for a in args_for(root, []) if a != "--data" and a != str(root / "scene")])
    with pytest.raises(SystemExit) as info:
        config.set_timestamp()
    assert info.value.code == 2 and "no --data given" in info.value.message


def test_missing_load_config_stops_while_parsing(root, capsys):
    """ns-train reads --load-config before anything of ours runs: the check is in the config's construction."""
    with pytest.raises(SystemExit) as info:
        method_config("wys", args_for(root, ["--load-config", str(root / "missing.yml")]))
    assert info.value.code == 2 and "--load-config" in info.value.message and "is not a file" in info.value.message


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


@pytest.fixture()
def nothing_built(monkeypatch):
    """Building a trainer, pipeline or datamanager during a usage error fails the test."""

    def built(*args, **kwargs):
        raise AssertionError("something was built before the settings were checked")

    monkeypatch.setattr(WYSTrainer, "__init__", built)
    monkeypatch.setattr(WYSPipeline, "__init__", built)
    from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager

    monkeypatch.setattr(VanillaDataManager, "__init__", built)


@pytest.mark.parametrize("extra, message", CASES, ids=[" ".join(c[0])[-70:] for c in CASES])
def test_bad_settings_stop_before_anything_is_built(extra, message, root, nothing_built, capsys):
    before = snapshot(root)
    config = method_config("wys", args_for(root, extra))
    with pytest.raises(SystemExit) as info:
        config.set_timestamp()  # what ns-train's main does first
    stderr = capsys.readouterr().err
    expected = message.replace("{root}", str(root))
    assert info.value.code == 2
    assert stderr.strip().splitlines()[-1] == f"error: {info.value.message}" and expected in info.value.message, stderr
    assert "\n" not in info.value.message and "Traceback" not in stderr
    assert snapshot(root) == before  # no outputs/ run folder, every input byte-identical


@pytest.mark.parametrize("method", ["wys-small", "wys-tiny", "wys-global"])
def test_every_preset_checks_its_settings(method, root, nothing_built, capsys):
    config = method_config(method, args_for(root, ["--pipeline.editing.steps", "0"]))
    with pytest.raises(SystemExit) as info:
        config.set_timestamp()
    assert info.value.code == 2 and "--pipeline.editing.steps must be an integer >= 1" in info.value.message
    assert not (root / "outputs").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_default_cuda_training_without_a_gpu_says_pass_cpu(root, nothing_built, capsys):
    config = method_config("wys", [a for a in args_for(root, []) if a not in ("--machine.device-type", "cpu")])
    with pytest.raises(SystemExit) as info:
        config.set_timestamp()
    assert info.value.code == 2 and "--machine.device-type cpu" in info.value.message


def test_good_settings_pass(root, monkeypatch):
    """Controls: valid settings get through, and so does the README's flow (a default nerfacto run continued by
    default wys, and the light CPU run continued with the same settings)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the GPU flow, checked on any machine
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    wys_validate.check_trainer_config(method_config("wys", args_for(root, ["--load-dir", LIGHT_RUN.replace("{root}", str(root))])))
    gpu_run = method_config("wys", ORACLE + PROMPT + ["--data", str(root / "scene"),
                                                      "--load-dir", str(root / "nerfacto_default" / "nerfstudio_models")])
    wys_validate.check_trainer_config(gpu_run)
    for method in ("wys-small", "wys-tiny", "wys-global"):
        wys_validate.check_trainer_config(method_config(method, ORACLE + PROMPT + ["--data", str(root / "scene")]))


def test_pipeline_setup_checks_in_process_users_too(root, nothing_built, capsys):
    """Tests and benchmarks build the pipeline without ns-train: its setup checks before building (a UsageError, as
    every library check: only a command turns it into an exit); ns-render and ns-eval (test_mode inference) load
    finished runs and are not stopped by a training-only setting."""
    config = method_config("wys", args_for(root, ["--pipeline.editing.tau", "7"]))
    with pytest.raises(UsageError, match=r"--pipeline.editing.tau must be in \[0, 1\]"):
        config.pipeline.setup(device="cpu", test_mode="val")
    with pytest.raises(AssertionError, match="something was built"):  # past the checks, straight to building
        config.pipeline.setup(device="cpu", test_mode="inference")


def test_a_bug_in_a_check_keeps_its_traceback(root, monkeypatch):
    def broken(*args):
        raise KeyError("a bug in our own code")

    monkeypatch.setattr(wys_validate, "check_pipeline_config", broken)
    config = method_config("wys", args_for(root, []))
    with pytest.raises(KeyError, match="a bug in our own code"):
        config.set_timestamp()


def test_a_checkpoint_that_does_not_fit_stops_with_one_line_and_leaves_no_run(root, tmp_path, capsys):
    """Checkpoints copied without their config.yml can't be compared up front: the load itself fails, then says
    so in one line, and the run folder ns-train made for this run is removed."""
    checkpoints = tmp_path / "copied" / "nerfstudio_models"
    checkpoints.mkdir(parents=True)
    wrong_shape = torch.zeros(3, 3)  # the hash table under both names torch's MLPWithHashEncoding registers it
    state = {"_model.field.mlp_base.encoder.hash_table": wrong_shape, "_model.field.mlp_base.model.0.hash_table": wrong_shape}
    torch.save({"step": 10, "pipeline": state, "optimizers": {}, "scalers": {}}, checkpoints / "step-000000010.ckpt")
    outputs = tmp_path / "outputs"
    config = method_config("wys", args_for(root, ["--load-dir", str(checkpoints), "--timestamp", "t",
                                                  "--output-dir", str(outputs)]))
    config.set_timestamp()
    config.save_config()  # as ns-train: the run folder exists when the trainer is built
    trainer = config.setup(local_rank=0, world_size=1)
    with pytest.raises(SystemExit) as info:
        trainer.setup()
    assert info.value.code == 2 and "does not fit this model" in info.value.message
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: the checkpoint in")
    assert list(outputs.iterdir()) == []  # the run folder and its empty parents are gone; --output-dir itself stays


@pytest.mark.slow  # several ns-train processes (~3 min)
def test_real_ns_train(root):
    """Three cases as a user meets them, in parallel: exit 2, our line last, no traceback, no run folder, and the
    log shows no trainer (it logs where checkpoints go) and no dataset was set up."""
    cases = [
        (["--pipeline.editing.device", MISSING_GPU], f"--pipeline.editing.device '{MISSING_GPU}'"),
        (["--data", "{root}/missing"], "does not exist"),
        (["--load-dir", "{root}/missing/nerfstudio_models"], "does not exist"),
    ]
    before = snapshot(root)
    ns_train = str(Path(sys.executable).parent / "ns-train")
    env = {**os.environ, "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    processes = [subprocess.Popen([ns_train, "wys", *args_for(root, extra)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=env) for extra, _ in cases]
    for (_, message), process in zip(cases, processes):
        stdout, stderr = process.communicate(timeout=HANG_GUARD)
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert process.returncode == 2, stdout[-2000:] + stderr[-2000:]
        assert lines[-1].startswith("error: ") and message in lines[-1] and "Traceback" not in stderr, stderr
        assert "Saving checkpoints" not in stdout and "Setting up training dataset" not in stdout
    assert snapshot(root) == before and not (root / "outputs").exists()
