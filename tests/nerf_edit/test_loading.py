import pytest
import torch
from waiting import HANG_GUARD

from nerf_edit.errors import ModelUnavailableError
from nerf_edit.models.loading import load_ip2p_pipeline, resolve_dtype


def test_unavailable_hub_id_gives_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache
    with pytest.raises(ModelUnavailableError) as info:
        load_ip2p_pipeline("timbrooks/instruct-pix2pix")
    message = str(info.value)
    assert "\n" not in message
    for needle in ("timbrooks/instruct-pix2pix", "HF_HUB_OFFLINE=1", "HF_HOME", "huggingface-cli download", "tiny"):
        assert needle in message


def test_missing_local_directory_is_named(tmp_path):
    missing = str(tmp_path / "nope")
    with pytest.raises(ModelUnavailableError, match="not a directory"):
        load_ip2p_pipeline(missing)


def test_local_directory_loads_what_was_saved(tmp_path, tiny_pipe):
    tiny_pipe.save_pretrained(tmp_path / "ip2p")
    loaded = load_ip2p_pipeline(str(tmp_path / "ip2p"))
    for name, value in tiny_pipe.unet.state_dict().items():
        assert torch.equal(value, loaded.unet.state_dict()[name]), name


def test_dtype_resolution():
    assert resolve_dtype("cpu") == torch.float32
    assert resolve_dtype("cuda") == torch.float16
    assert resolve_dtype("cuda", "bf16") == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("cpu", "fp8")


def test_import_opens_no_network_connection():
    import subprocess
    import sys

    code = (
        "import socket\n"
        "def refuse(*a, **k): raise SystemExit('network used')\n"
        "socket.socket.connect = refuse\nsocket.create_connection = refuse\nsocket.getaddrinfo = refuse\n"
        "import nerf_edit, nerf_edit.wys, nerf_edit.zone, nerf_edit.vimaedit, nerf_edit.eval.pie_bench, nerf_edit_methods.configs\n"
        "print('imported')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG_GUARD)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "imported" in result.stdout
