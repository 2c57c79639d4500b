"""Shared fixtures. The machine is shared and has 2 cores: keep torch to one thread per test process."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Every process a test starts (ns-train, ns-render, accelerate workers, console scripts) inherits these: one torch
# thread each, so a subprocess and this process (or two workers) never oversubscribe the cores (measured: two
# 2-thread torch processes on 2 cores ran 10x slower). A test about threads sets its own.
for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_ip2p():
    from nerf_edit.models.ip2p import InstructPix2Pix

    return InstructPix2Pix.from_pretrained("tiny")


@pytest.fixture(scope="session")
def tiny_pipe():
    from nerf_edit.models.loading import load_ip2p_pipeline

    return load_ip2p_pipeline("tiny")


def weights_available(model: str) -> bool:
    """In the Hugging Face cache or a local folder (with HF_HUB_OFFLINE=0: also on the hub, downloaded on use)."""
    from nerf_edit.errors import ModelUnavailableError
    from nerf_edit.models.loading import check_available

    try:
        check_available(model)
    except ModelUnavailableError:
        return False
    return True


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))
        weights = item.get_closest_marker("weights")
        missing = [model for model in (weights.args if weights else ()) if not weights_available(model)]
        if missing:
            item.add_marker(pytest.mark.skip(reason=f"needs the weights of {', '.join(missing)}: "
                                                    f"`huggingface-cli download {missing[0]}` on a networked machine"))
