import sys
from pathlib import Path

# The oracle editor is plugged in by import path `oracle_editor:OracleEditor`, as a user's editor would be.
HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)


import os  # noqa: E402
import subprocess  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import pytest  # noqa: E402
from waiting import HANG_GUARD  # noqa: E402
from wys_runs import HOLD_OUT, PROMPT, QUIET, cli  # noqa: E402

SCENE = Path(__file__).resolve().parents[2] / "data" / "synthetic"  # the bundled scene


def offline_env(tmp: Path) -> dict:
    """The environment of an air-gapped machine: no hub, every download refused at once, empty torch cache."""
    return dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HTTP_PROXY="http://127.0.0.1:9",
                HTTPS_PROXY="http://127.0.0.1:9", http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9",
                NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", TORCH_HOME=str(tmp / "torch_home"))


@dataclass
class DemoRuns:
    """`make demo`'s two runs on the bundled scene (every 4th view held out), trained offline."""

    base: Path  # ns-train wys-reconstruct
    edited: Path  # ns-train wys --load-dir <base>/nerfstudio_models --pipeline.editor colorkey
    env: dict
    seconds: dict


def ns_train(method: str, output_dir: Path, timestamp: str, args: list, env: dict) -> Path:
    from nerf_edit_methods.configs import LIGHT_CPU_ARGS

    command = [cli("ns-train"), method, "--data", str(SCENE), "--output-dir", str(output_dir), "--timestamp", timestamp,
               *LIGHT_CPU_ARGS, *QUIET, *args, *HOLD_OUT]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=HANG_GUARD)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return output_dir / "synthetic" / method / timestamp


@pytest.fixture(scope="session")
def demo_base(tmp_path_factory):
    """wys-reconstruct with the demo's settings, offline: the scene before any edit."""
    import time

    from nerf_edit_methods.configs import DEMO_CPU_RECONSTRUCT_ARGS

    outputs = tmp_path_factory.mktemp("demo")
    env = offline_env(outputs)
    begin = time.perf_counter()
    base = ns_train("wys-reconstruct", outputs, "base", DEMO_CPU_RECONSTRUCT_ARGS, env)
    return base, env, time.perf_counter() - begin


@pytest.fixture(scope="session")
def demo_runs(demo_base):
    """The demo's edit from the reconstruction's checkpoint, offline, with the colorkey demonstration editor."""
    import time

    from nerf_edit_methods.configs import DEMO_CPU_EDIT_ARGS

    base, env, base_seconds = demo_base
    begin = time.perf_counter()
    edited = ns_train("wys", base.parents[2], "edited",
                      ["--load-dir", str(base / "nerfstudio_models"), "--pipeline.editor", "colorkey",
                       "--pipeline.prompt", PROMPT, *DEMO_CPU_EDIT_ARGS], env)
    return DemoRuns(base, edited, env, {"reconstruct": base_seconds, "edit": time.perf_counter() - begin})
