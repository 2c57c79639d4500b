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


# Minutes of one worker the longest groups take (measured 2026-12-07, docs/testing.md): they are handed out first,
# longest first, so the two workers end close together; other groups count as shorter than these.
GROUP_MINUTES = {"tests/methods/test_wys_e2e.py": 12, "demo": 10, "conformance": 7,
                 "tests/methods/test_photos_e2e.py": 5, "tests/methods/test_wys_splat_e2e.py": 5}

# Tests that share a session fixture run on one worker, so it is built once per `make test`: `make demo`'s two runs
# (reconstruct + edit) serve the demo, ns-tools and browser tests.
SHARED_SESSION_FIXTURES = {"demo_base": "demo", "demo_runs": "demo"}


def test_file(item) -> str:
    return item.nodeid.split("::")[0]


def worker_groups(items) -> dict:
    """The xdist group of each test file: the group of a shared session fixture any of its tests uses;
    `conformance` for the full-size models (several GB each: one at a time, on one worker, so two never add up on a
    24 GB machine); else the file itself (its module fixtures are built once). -> {file: group}"""
    groups = {}
    for item in items:
        file = test_file(item)
        shared = [group for fixture, group in SHARED_SESSION_FIXTURES.items() if fixture in item.fixturenames]
        if shared:
            groups[file] = shared[0]
        elif item.get_closest_marker("conformance") is not None:
            groups.setdefault(file, "conformance")
        else:
            groups.setdefault(file, file)
    return groups


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    groups = worker_groups(items)
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))
        weights = item.get_closest_marker("weights")
        missing = [model for model in (weights.args if weights else ()) if not weights_available(model)]
        if missing:
            item.add_marker(pytest.mark.skip(reason=f"needs the weights of {', '.join(missing)}: "
                                                    f"`huggingface-cli download {missing[0]}` on a networked machine"))
        item.add_marker(pytest.mark.xdist_group(groups[test_file(item)]))
    # The groups holding multi-minute tests (slow or conformance) start first, the longest first (`--dist loadgroup
    # --no-loadscope-reorder` hands groups out in this order, the next to whichever worker is free), so the short
    # ones fill in around them at the end.
    heavy = {groups[test_file(item)] for item in items
             if item.get_closest_marker("slow") is not None or item.get_closest_marker("conformance") is not None}
    items.sort(key=lambda item: (groups[test_file(item)] not in heavy,  # stable: order within a group kept
                                 -GROUP_MINUTES.get(groups[test_file(item)], 0)))


def pytest_configure(config):
    """`-n N` without `--dist loadgroup` would train the shared scenes once per worker: one line, before anything."""
    if (getattr(config.option, "numprocesses", None) and not getattr(config, "workerinput", None)
            and config.getoption("dist", "no") != "loadgroup"):
        raise pytest.UsageError("with -n, pass --dist loadgroup --no-loadscope-reorder (as `make test` does), so "
                                "tests sharing a trained scene stay on one worker")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids):
    """On the main process, as each worker reports its tests: xdist marks a test's group by appending `@group` to
    its id; pytest 9.2 ignores that id (xdist 3.8), and the shared scenes would be trained on every worker.
    Set-up pins pytest 8.4.2."""
    ungrouped = [test for test in ids if "@" not in test]
    if ungrouped:
        pytest.exit(f"error: pytest-xdist did not group {len(ungrouped)} tests (first: {ungrouped[0]}): use the "
                    f"pytest that scripts/setup.sh pins, or run with -n 0", returncode=4)
