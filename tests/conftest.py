"""Shared fixtures. The machine is shared and has 2 cores: `make test` runs two pytest workers (pytest-xdist), each
with one torch thread, and so does every process a test starts."""

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


# Tests that share a session fixture run on one worker, so it is built once per `make test`: `make demo`'s two runs
# (reconstruct + edit) serve the demo, ns-tools and browser tests.
SHARED_SESSION_FIXTURES = {"demo_base": "demo", "demo_runs": "demo"}


def worker_group(item) -> str:
    """The xdist group of a test: its shared session fixture's; `conformance` for the full-size models (several GB
    each: one at a time, on one worker, so two never add up on a 24 GB machine); else its file (module fixtures are
    built once)."""
    for fixture, group in SHARED_SESSION_FIXTURES.items():
        if fixture in item.fixturenames:
            return group
    if "conformance" in item.keywords:
        return "conformance"
    return item.nodeid.split("::")[0]


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))
        weights = item.get_closest_marker("weights")
        missing = [model for model in (weights.args if weights else ()) if not weights_available(model)]
        if missing:
            item.add_marker(pytest.mark.skip(reason=f"needs the weights of {', '.join(missing)}: "
                                                    f"`huggingface-cli download {missing[0]}` on a networked machine"))
        item.add_marker(pytest.mark.xdist_group(worker_group(item)))
    # The groups holding multi-minute tests (slow or conformance) start first (`--dist loadgroup
    # --no-loadscope-reorder` hands groups out in this order, the next to whichever worker is free), so the short
    # ones fill in around them at the end.
    heavy = {worker_group(item) for item in items if "slow" in item.keywords or "conformance" in item.keywords}
    items.sort(key=lambda item: worker_group(item) not in heavy)  # stable: the order within a group is kept


def pytest_collection_finish(session):
    """On a pytest-xdist worker with `--dist loadgroup`: every test must carry its group in its id (xdist appends
    `@group`), or tests sharing a trained scene would each train it again. pytest 9.2 ignores the id xdist sets
    (xdist 3.8): set-up pins pytest 8.4."""
    if getattr(session.config, "workerinput", None) and session.config.getvalue("loadgroup"):
        ungrouped = [item.nodeid for item in session.items if "@" not in item.nodeid]
        if ungrouped:
            raise pytest.UsageError(f"pytest-xdist did not group {len(ungrouped)} tests (first: {ungrouped[0]}): "
                                    f"use the pytest that scripts/setup.sh pins, or run with -n 0")
