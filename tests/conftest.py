"""Shared fixtures. The machine is shared and has 2 cores: keep torch to one thread per test process."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_ip2p():
    from nerf_edit.ip2p import InstructPix2Pix

    return InstructPix2Pix.from_pretrained("tiny")


@pytest.fixture(scope="session")
def tiny_pipe():
    from nerf_edit.loading import load_ip2p_pipeline

    return load_ip2p_pipeline("tiny")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
