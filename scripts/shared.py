"""What several commands share: reading a finished ns-train run and a scene's frames, checking the CLIP model, writing
metric results.
Commands import this module and `cli`, never each other (import-linter checks it)."""

from __future__ import annotations

import json
from pathlib import Path

from nerf_edit.core.io import atomic_write
from nerf_edit.errors import RunNotFoundError, UsageError
from nerf_edit.eval.metrics import TINY_CLIP
from nerf_edit.models.loading import check_model
from nerf_edit.scene.views import view_names


def load_run(config_path: Path):
    """A trained run's pipeline, its checkpoint loaded (offline-safe, torch >= 2.6 safe)."""
    from nerfstudio.utils.eval_utils import eval_setup

    from nerf_edit_methods.compat import allow_nerfstudio_checkpoints, offline_lpips

    if not config_path.is_file():
        raise RunNotFoundError(f"no run config at {str(config_path)!r}: pass the folder of a finished ns-train run")
    allow_nerfstudio_checkpoints()
    with offline_lpips():  # a stock nerfacto run builds LPIPS too
        config, pipeline, _, _ = eval_setup(config_path, test_mode="inference")
    return config, pipeline


def read_run_config(run: Path, name: str):
    """The TrainerConfig an ns-train run saved (run/config.yml), read without building anything."""
    import yaml

    config_path = Path(run) / "config.yml"
    if not config_path.is_file():
        raise RunNotFoundError(f"{name}: no run config at {str(config_path)!r}: pass the folder of a finished ns-train run")
    try:
        return yaml.load(config_path.read_text(), Loader=yaml.Loader)
    except Exception as error:  # noqa: BLE001 - a foreign or broken config file: say which, not why in 40 lines
        raise UsageError(f"{name}: cannot read {str(config_path)!r} ({type(error).__name__}): pass a run "
                                  f"made with this nerfstudio and its plug-ins installed") from error


def check_clip_model(model: str) -> None:
    if model != TINY_CLIP:
        check_model(model, "--clip-model", "config.json")


def write_results(results: dict, path: Path) -> None:
    """results as JSON at `path`, a plot of the per-frame scores beside it (.png), and the means on stdout."""
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(results, indent=2)))
    plot_per_frame(results["per_frame"], path.with_suffix(".png"))
    for name, value in results.items():
        if isinstance(value, float):
            print(f"{name:28s} {value:.4f}")


def plot_per_frame(per_frame: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.2))
    for name, values in per_frame.items():
        axis.plot(range(len(values)), values, marker="o", label=name)
    axis.set_xlabel("frame")
    axis.set_ylabel("cosine similarity")
    axis.legend(fontsize=7)
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100))
    plt.close(figure)


def scene_frames(transforms: Path) -> list[tuple[str, Path]]:
    """The images a nerfstudio transforms.json lists, sorted by file path (nerfstudio's frame order), each named as
    the 3D run names its views (nerf_edit.scene.views.view_names): [(name, image path)]. One UsageError line for a
    file that is not a transforms file."""
    try:
        frames = json.loads(Path(transforms).read_text())["frames"]
        paths = sorted(str(frame["file_path"]) for frame in frames)
    except (ValueError, KeyError, TypeError, OSError) as error:
        raise UsageError(f"{str(transforms)!r} is not a nerfstudio transforms file ({type(error).__name__}): it "
                         f"needs a 'frames' list with a file_path each") from error
    return [(name, Path(transforms).parent / path) for name, path in zip(view_names(paths), paths)]
