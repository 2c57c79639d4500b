import io
import subprocess
import sys

import numpy as np
import torch
from waiting import HANG_GUARD

from nerf_edit_methods.compat import UnavailableLPIPS, offline_lpips


def test_checkpoint_with_numpy_scalars_loads_with_weights_only():
    # what nerfstudio's scheduler/optimizer states put in a checkpoint
    state = {"step": 3, "schedulers": {"fields": {"base_lrs": [np.float64(0.01)], "dtype": np.dtype("float32")}}}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    code = (
        "import io, sys, torch\n"
        "data = io.BytesIO(sys.stdin.buffer.read())\n"
        "try:\n    torch.load(data)\nexcept Exception as e:\n    print('plain torch refuses:', type(e).__name__)\n"
        "import nerf_edit_methods.configs  # what nerfstudio's entry points import\n"
        "data.seek(0)\nprint('loaded', torch.load(data)['schedulers']['fields']['base_lrs'][0])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], input=buffer.getvalue(), capture_output=True, timeout=HANG_GUARD)
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert "plain torch refuses: UnpicklingError" in out  # the problem is real under torch >= 2.6 ...
    assert "loaded 0.01" in out  # ... and our plugin fixes it without any environment variable


def test_lpips_falls_back_with_one_line_when_weights_cannot_download(monkeypatch, capsys):
    import torchmetrics.image.lpip as lpip_module

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(lpip_module, "LearnedPerceptualImagePatchSimilarity", offline)
    with offline_lpips():
        metric = lpip_module.LearnedPerceptualImagePatchSimilarity(normalize=True)
    assert isinstance(metric, UnavailableLPIPS)
    assert torch.isnan(metric(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)))
    assert lpip_module.LearnedPerceptualImagePatchSimilarity is offline  # restored afterwards
    assert capsys.readouterr().out.count("LPIPS disabled") == 1


def test_lpips_is_kept_when_available(monkeypatch):
    import torchmetrics.image.lpip as lpip_module

    sentinel = object()
    monkeypatch.setattr(lpip_module, "LearnedPerceptualImagePatchSimilarity", lambda *a, **k: sentinel)
    with offline_lpips():
        assert lpip_module.LearnedPerceptualImagePatchSimilarity() is sentinel
