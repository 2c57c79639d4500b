"""Conformance tier: EditAction's trainer takes one step on the full-size IP2P architecture (random weights) on the
CPU, as a user's `nerf-edit-train-action --mixed-precision bf16 --use-8bit-adam` run would on the real model: the
cross-attention stays frozen bit for bit, everything else is updated, and the UNet computes in bf16.

Marked `heavy` (about 4-5 minutes and 12 GB here: bf16 is emulated on this CPU): `make test-all` and
`make test-conformance` run it, `make test` runs the same freezing and training on the real UNet in fp32
(test_full_size.py::test_editaction_freezes_sd15s_cross_attention_and_its_loss_trains_the_rest) and the bf16 path
of the trainer on the tiny model (tests/scripts/test_train_action.py).

Its own file, so the 4 GB pipeline of test_full_size.py's module is freed before this one builds its own (the
conformance tests also share one pytest worker: tests/conftest.py).
"""

import re

import pytest
import torch

from nerf_edit.action import train as trainer
from nerf_edit.action.config import ActionTrainConfig
from nerf_edit.models import full_size
from nerf_edit_scripts.make_action_pairs import make_action_pairs

pytestmark = [pytest.mark.conformance, pytest.mark.heavy]
# On the CPU at 64² here; on a CUDA GPU at the paper's 512² (marker `gpu`: skipped without one).
SETUPS = [pytest.param(("cpu", 64), id="cpu-64"), pytest.param(("cuda", 512), id="cuda-512", marks=pytest.mark.gpu)]


@pytest.mark.parametrize("setup", SETUPS)
def test_editaction_step_on_the_full_size_unet_freezes_cross_attention_and_trains_the_rest_in_bf16(
        setup, tmp_path, monkeypatch, capsys):
    device, size = setup
    pipe = full_size.build_full_size_ip2p_pipeline()
    parameters = dict(pipe.unet.named_parameters())
    cross_attention = {name: p.detach().clone() for name, p in parameters.items() if ".attn2." in name}
    # a strided sample of every other tensor (a full copy would be 3.3 GB more)
    samples = {name: p.detach().flatten()[::997].clone() for name, p in parameters.items() if ".attn2." not in name}
    assert len(cross_attention) == 16 * 5  # SD-1.5's 16 transformer blocks: to_q, to_k, to_v, to_out (weight, bias)
    dtypes = []  # of the UNet's last layer: accelerate casts the UNet's output back to fp32, its layers run in bf16
    pipe.unet.conv_out.register_forward_hook(lambda module, args, output: dtypes.append(output.dtype))
    # the trainer loads `--model` by name; here it gets the full-size pipeline built above
    monkeypatch.setattr(trainer, "load_ip2p_pipeline", lambda model, device="cpu", dtype=torch.float32: pipe)

    pairs = make_action_pairs(tmp_path / "pairs", count=4, heldout=1, size=size, seed=0)
    trainer.train_editaction(ActionTrainConfig(
        data=pairs, output=tmp_path / "run", model="full-size random weights", resolution=size, steps=1, batch_size=1,
        mixed_precision="bf16", use_8bit_adam=True, negatives="any", log_with="none", log_every=1, cpu=device == "cpu"))

    print(f"UNet conv_out outputs: {sorted(set(map(str, dtypes)))}")
    assert dtypes and set(dtypes) == {torch.bfloat16}  # the trained UNet and the frozen reference, under autocast
    losses = [float(value) for value in re.findall(r"loss_\w+=([-\d.e+naif]+)", capsys.readouterr().out)]
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses))), losses  # total, static, action, reg
    for name, before in cross_attention.items():
        assert torch.equal(parameters[name].detach().cpu(), before), name  # the trainer moved the UNet to its device
    unchanged = [name for name, before in samples.items()
                 if torch.equal(parameters[name].detach().flatten()[::997].cpu(), before)]
    assert not unchanged, unchanged[:5]
