"""The EditAction trainer end to end on the tiny IP2P (CPU): frozen cross-attention, stop + resume, two processes
under `accelerate launch`, and the trained folder used by our loader and editor."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from waiting import HANG_GUARD, wait_for

from nerf_edit.action.train import ActionTrainConfig, train_editaction
from nerf_edit.models.loading import load_ip2p_pipeline
from nerf_edit_scripts.make_action_pairs import make_action_pairs

REPO = Path(__file__).resolve().parents[2]
SETTINGS = dict(model="tiny", resolution=32, steps=6, batch_size=4, learning_rate=1e-3, checkpoint_every=3,
                log_with="none", cpu=True, negatives="any")


def train(data: Path, output: Path, **overrides) -> Path:
    """One run; every test here runs several in this process, so this also proves train_editaction needs no
    reset of accelerate's per-process state between runs."""
    return train_editaction(ActionTrainConfig(data=data, output=output, **{**SETTINGS, **overrides}))


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    return make_action_pairs(tmp_path_factory.mktemp("pairs"), count=12, heldout=4, size=32, seed=1)


@pytest.fixture(scope="module")
def trained(pairs, tmp_path_factory) -> Path:
    return train(pairs, tmp_path_factory.mktemp("run") / "editaction", log_with="tensorboard")


def test_cross_attention_untouched_everything_else_trained(trained):
    base, tuned = load_ip2p_pipeline("tiny").unet, load_ip2p_pipeline(str(trained)).unet  # through our loader
    tuned_parameters = dict(tuned.named_parameters())
    attn2 = [name for name, _ in base.named_parameters() if ".attn2." in name]
    assert attn2
    for name, parameter in base.named_parameters():
        if ".attn2." in name:
            assert torch.equal(parameter, tuned_parameters[name]), name  # never touched by the optimizer
        else:
            assert not torch.equal(parameter, tuned_parameters[name]), name
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = list((trained / "logs").rglob("events.out.tfevents.*"))
    assert events, "tensorboard logs of the losses"
    logged = EventAccumulator(str(events[0].parent)).Reload().Tags()["scalars"]
    assert {"loss_total", "loss_static", "loss_action", "loss_reg"} <= set(logged), logged
    assert sorted(p.name for p in (trained / "checkpoints").iterdir()) == ["checkpoint-3", "checkpoint-6"]


def test_stopped_and_resumed_run_ends_where_the_uninterrupted_one_does(pairs, trained, tmp_path):
    output = tmp_path / "interrupted"
    train(pairs, output, stop_after=3)
    assert not (output / "model_index.json").exists()  # stopped: checkpoint only, no half-trained pipeline
    train(pairs, output, resume="latest")
    resumed = load_ip2p_pipeline(str(output)).unet.state_dict()
    uninterrupted = load_ip2p_pipeline(str(trained)).unet.state_dict()
    for name, value in uninterrupted.items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=1e-6, msg=name)


def test_two_processes_under_accelerate_launch_match_one(pairs, trained, tmp_path):
    # Global batch 4 either way: 1 process x 4 (the `trained` fixture) and 2 processes x 2. Two CPU processes are
    # launched through torch.distributed (`--multi_gpu`; our `--cpu` makes accelerate pick gloo): accelerate's own
    # `--cpu` launcher starts one process unless MPI is set up.
    output = tmp_path / "two"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "-m", "nerf_edit_scripts.train_action",
               "--data", str(pairs), "--output", str(output), "--batch-size", "2", "--log-with", "none", "--cpu"]
    for key, value in SETTINGS.items():
        if key not in ("batch_size", "log_with", "cpu"):
            command += [f"--{key.replace('_', '-')}", str(value)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=HANG_GUARD)
    assert result.returncode == 0, result.stderr[-3000:]
    two = load_ip2p_pipeline(str(output)).unet.state_dict()
    one = load_ip2p_pipeline(str(trained)).unet.state_dict()
    base = load_ip2p_pipeline("tiny").unet.state_dict()
    worst = max((two[k] - one[k]).abs().max().item() for k in one)
    moved = min((one[k] - base[k]).abs().max().item() for k in one if ".attn2." not in k)
    gap = torch.cat([(two[k] - one[k]).flatten() for k in one]).norm().item()
    travel = torch.cat([(one[k] - base[k]).flatten() for k in one]).norm().item()
    # Gradients are averaged across processes instead of over one batch: only float summation order differs, which
    # Adam's normalisation amplifies for near-zero gradients. Measured after 6 steps at lr 1e-3: the weights differ
    # by 8e-5 of the distance training moved them (norms 2.4e-4 vs 2.84), and at most 1.4e-4 per weight, against
    # >= 4.3e-3 moved by every trained tensor. Other draws (seed 1 instead of 0) differ by 1.4 times that distance.
    assert gap < 1e-3 * travel and worst < 0.1 * moved, (gap, travel, worst, moved)


def test_trained_folder_edits_an_image(trained, tmp_path):
    from nerf_edit.config.editor import EditorConfig
    from nerf_edit.core.io import atomic_save_image, load_image
    from nerf_edit_scripts.edit_image import EditImage

    picture = tmp_path / "view.png"
    atomic_save_image(picture, torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0)))
    outputs = {}
    for name, model in (("tuned", str(trained)), ("base", "tiny")):
        EditImage(input=picture, instruction="lift the red ball", output=tmp_path / name, editor="global",
                  settings=EditorConfig(model=model, device="cpu", steps=3)).main()
        outputs[name] = load_image(tmp_path / name / "view_edited.png")
    assert outputs["tuned"].shape == (3, 32, 32)
    assert (outputs["tuned"] - outputs["base"]).abs().max() > 1 / 255  # the fine-tuned weights did the edit


def test_gradient_checkpointing_trains_the_same_weights(pairs, trained, tmp_path, monkeypatch):
    # Recomputing activations in the backward pass changes memory, not the gradients (float tolerance).
    import torch.utils.checkpoint

    calls = []
    original = torch.utils.checkpoint.checkpoint
    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", lambda *a, **k: calls.append(1) or original(*a, **k))
    output = train(pairs, tmp_path / "checkpointed", gradient_checkpointing=True)
    assert calls, "the UNet never went through torch.utils.checkpoint"
    checkpointed = load_ip2p_pipeline(str(output)).unet.state_dict()
    plain = load_ip2p_pipeline(str(trained)).unet.state_dict()
    for name, value in plain.items():
        torch.testing.assert_close(checkpointed[name], value, rtol=0, atol=1e-5, msg=name)


def test_resume_latest_ignores_a_checkpoint_killed_while_being_written(tmp_path):
    from nerf_edit.action.train import find_checkpoint

    checkpoints = tmp_path / "checkpoints"
    for name in ("checkpoint-2", "checkpoint-10", ".checkpoint-12.tmp", "checkpoint-x"):
        (checkpoints / name).mkdir(parents=True)
    assert find_checkpoint(tmp_path, "latest") == checkpoints / "checkpoint-10"  # numeric, not string order
    assert find_checkpoint(tmp_path / "nothing", "latest") is None
    with pytest.raises(ValueError, match="not a checkpoint folder"):
        find_checkpoint(tmp_path, str(checkpoints / ".checkpoint-12.tmp"))


def test_run_killed_with_sigkill_resumes_to_the_uninterrupted_result(pairs, tmp_path):
    import signal

    settings = {**SETTINGS, "steps": 40, "checkpoint_every": 5}
    command = [sys.executable, "-m", "nerf_edit_scripts.train_action", "--data", str(pairs),
               "--output", str(tmp_path / "killed")]
    for key, value in settings.items():
        command += [f"--{key.replace('_', '-')}"] + ([] if value is True else [str(value)])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = tmp_path / "killed" / "checkpoints"
    # the kill lands between checkpoint 10 and the end (40): counted in checkpoints, whatever the machine's speed
    wait_for(lambda: (checkpoints / "checkpoint-10").exists() or process.poll() is not None, "checkpoint 10",
             interval=0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "killed" / "model_index.json").exists(), "killed too late: the run had finished"
    train(pairs, tmp_path / "killed", steps=40, checkpoint_every=5, resume="latest")
    uninterrupted = train(pairs, tmp_path / "straight", steps=40, checkpoint_every=5)
    resumed = load_ip2p_pipeline(str(tmp_path / "killed")).unet.state_dict()
    for name, value in load_ip2p_pipeline(str(uninterrupted)).unet.state_dict().items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=1e-6, msg=name)


def _trained_direction(output: Path) -> torch.Tensor:
    """How far training moved the UNet: tuned − base over every parameter, flattened [P]."""
    base = load_ip2p_pipeline("tiny").unet.state_dict()
    tuned = load_ip2p_pipeline(str(output)).unet.state_dict()
    return torch.cat([(tuned[name] - base[name]).flatten() for name in base])


def test_bf16_mixed_precision_runs_the_unet_in_bf16_and_trains_like_fp32(pairs, trained, tmp_path, monkeypatch):
    # accelerate's mixed precision (torch.autocast, CPU bf16 here; fp16 or bf16 on a GPU) with fp32 master weights,
    # as diffusers' train_instruct_pix2pix.py. Inside autocast the UNet computes in bf16; the update it makes must
    # still point where the fp32 run's does (bf16 keeps 8 bits of mantissa, so not bit for bit).
    from diffusers import UNet2DConditionModel

    dtypes = []
    forward = UNet2DConditionModel.forward

    def recording_forward(self, *args, **kwargs):
        output = forward(self, *args, **kwargs)
        dtypes.append(output.sample.dtype)
        return output

    monkeypatch.setattr(UNet2DConditionModel, "forward", recording_forward)
    output = train(pairs, tmp_path / "bf16", mixed_precision="bf16")
    assert dtypes and set(dtypes) == {torch.bfloat16}, set(dtypes)
    half, full = _trained_direction(output), _trained_direction(trained)
    assert torch.isfinite(half).all()
    cosine = torch.nn.functional.cosine_similarity(half, full, dim=0).item()
    assert cosine > 0.9, cosine  # measured 0.987; a broken autocast/scaler path gives unrelated updates


def test_8bit_adam_keeps_8bit_optimizer_state_and_trains_like_adamw(pairs, trained, tmp_path):
    # bitsandbytes' AdamW8bit (runs on the CPU too in bitsandbytes 0.50; set-up installs it): the moments of every large
    # tensor are stored as uint8 with block-wise scales, and the update follows torch's AdamW.
    pytest.importorskip("bitsandbytes")
    output = train(pairs, tmp_path / "adam8", use_8bit_adam=True, checkpoint_every=6)
    state = torch.load(output / "checkpoints" / "checkpoint-6" / "optimizer.bin", weights_only=False)["state"]
    # bitsandbytes keeps small tensors (< 4096 elements) in fp32, and saves the rest under its own key.
    moments = [entry.get("__bnb_optimizer_quant_state__", entry)["state1"] for entry in state.values()]
    assert any(moment.dtype == torch.uint8 for moment in moments)
    for moment in moments:  # the moment has its parameter's shape
        assert (moment.dtype == torch.uint8) == (moment.numel() >= 4096), (moment.shape, moment.dtype)
    eight, full = _trained_direction(output), _trained_direction(trained)
    cosine = torch.nn.functional.cosine_similarity(eight, full, dim=0).item()
    assert cosine > 0.9, cosine  # measured 0.9999
