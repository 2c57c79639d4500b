"""Settings checks that run before any model or data is loaded: one line per problem, saying how to fix it.

Every command validates its settings with these plain functions first (the 2D CLI, the evaluation commands, the
`ns-train wys` config, `IP2PEditor` itself), so a bad value stops in a second with `error: ...` instead of a
traceback after minutes of loading. Each check raises `UsageError`; commands turn it into one line and exit 2
(`nerf_edit_scripts/cli.py`, `nerf_edit_methods/validate.py`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional, Sequence

import torch


class UsageError(ValueError):
    """Bad user input; the message is one line: what is wrong and how to fix it.

    A ValueError so that library callers catching ValueError keep working; commands catch only UsageError (and
    the other known user-error types), so a real bug's ValueError keeps its traceback."""


# ---------------------------------------------------------------------------------------------------- numbers
def check_range(name: str, value, low: Optional[float] = None, high: Optional[float] = None,
                low_open: bool = False, high_open: bool = False) -> None:
    """`value` must be a finite number within [low, high] (`low_open`/`high_open` exclude the end)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UsageError(f"{name} must be a finite number, got {value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if (too_low or too_high) and high is None:
        raise UsageError(f"{name} must be {'>' if low_open else '>='} {low:g}, got {value:g}")
    if too_low or too_high:
        left = "-inf" if low is None else f"{low:g}"
        right = "inf" if high is None else f"{high:g}"
        interval = f"{'(' if low_open or low is None else '['}{left}, {right}{')' if high_open or high is None else ']'}"
        raise UsageError(f"{name} must be in {interval}, got {value:g}")


def check_at_least(name: str, value, least: int) -> None:
    """An integer setting (steps, counts, rates) of at least `least`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise UsageError(f"{name} must be an integer >= {least}, got {value!r}")


def check_seed(seed, name: str = "--seed") -> None:
    """A seed torch's generators take (any integer in [-2**63, 2**64))."""
    try:
        torch.Generator().manual_seed(seed)
    except (RuntimeError, OverflowError, ValueError, TypeError) as error:  # "Overflow when unpacking long long"
        raise UsageError(f"{name} {seed} is out of range: use an integer in [0, 2**64)") from error


def check_text(name: str, value: str, example: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{name} is empty: say what to change, e.g. {name} {example!r}")


def check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise UsageError(f"unknown {name} {value!r}: use one of {list(choices)}")


# ---------------------------------------------------------------------------------------------------- devices
def check_device(device: str, name: str = "--device", allow_auto: bool = True) -> None:
    """A torch device that exists here: `auto` (if the command resolves it), `cpu`, `cuda`, `cuda:N` (N < the
    number of GPUs), `mps`."""
    if device == "auto" and allow_auto:
        return
    choices = "cpu, cuda, cuda:N" + (" or auto" if allow_auto else "")
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise UsageError(f"{name} {device!r} is not a device: use {choices}") from error
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"{name} {device!r} asks for a CUDA GPU but none is available here "
                             f"(torch {torch.__version__}, CUDA build {torch.version.cuda}): use {name} cpu")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise UsageError(f"{name} {device!r}: there is no GPU {parsed.index}, this machine has {count} "
                             f"(cuda:0{f' to cuda:{count - 1}' if count > 1 else ''})")
    elif parsed.type == "mps":
        if not torch.backends.mps.is_available():
            raise UsageError(f"{name} {device!r}: MPS is not available on this machine: use {name} cpu")
    elif parsed.type != "cpu":
        raise UsageError(f"{name} {device!r} is not supported: use {choices} (or mps)")


def check_dtype(dtype: str, name: str = "--dtype") -> None:
    from nerf_edit.loading import DTYPE_NAMES

    if dtype != "auto" and dtype not in DTYPE_NAMES:
        raise UsageError(f"unknown {name} {dtype!r}: use one of {sorted(DTYPE_NAMES)} or auto")


# ---------------------------------------------------------------------------------------------------- models
def check_model(model: str, name: str, key_file: str, tiny_ok: bool = True) -> None:
    """A model that can be loaded, checked without loading weights: `tiny[:seed]`, a local folder holding
    `key_file`, or a hub id in the local cache (or, online, on the hub). See `nerf_edit.loading.check_available`."""
    from nerf_edit.loading import check_available, is_tiny

    if tiny_ok and is_tiny(model):
        return
    check_available(model, key_file, name)


def check_plugin(spec: str, kind: str) -> None:
    """An import path `package.module:Name` that imports (see `nerf_edit.plugins`)."""
    from nerf_edit.plugins import import_object

    import_object(spec, kind)


# ---------------------------------------------------------------------------------------------------- paths
def _first_existing(path: Path) -> Path:
    path = Path(os.path.abspath(Path(path).expanduser()))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_dir(path: Path, name: str = "--output") -> None:
    """A folder we may create or write into: not an existing file, no file on the way, writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{name} {str(path)!r} is an existing file, not a folder: pass a folder (it is created if missing)")
    existing = _first_existing(path)
    if not existing.is_dir():
        raise UsageError(f"{name} {str(path)!r} cannot be created: {str(existing)!r} is a file: pass another folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{name} {str(path)!r} is not writable ({str(existing)!r} denies writing): pass a folder you can write to")


def check_output_file(path: Path, name: str = "--output") -> None:
    """A file we may write (replacing an older one): not a folder, its folder creatable and writable."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{name} {str(path)!r} is a folder: pass a file path such as {str(path / 'results.json')!r}")
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"{name} {str(path)!r} is not writable: pass another path")
    existing = _first_existing(path.parent)
    if not existing.is_dir():
        raise UsageError(f"{name} {str(path)!r} cannot be created: {str(existing)!r} is a file: pass another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{name} {str(path)!r} is not writable ({str(existing)!r} denies writing): pass another path")


# ---------------------------------------------------------------------------------------------------- editors
def check_zone_config(zone, prefix: str = "--zone.", main_model: Optional[str] = None, check_models: bool = True) -> None:
    """ZoneConfig's ranges; with `check_models` (ZONE is used) also the action classifier, the fusion model (unless
    it is `main_model`) and the segmenter."""
    from nerf_edit.loading import MODEL_INDEX
    from nerf_edit.zone import ACTIONS

    check_range(f"{prefix}attention-threshold", zone.attention_threshold, 0, 255)
    check_range(f"{prefix}attention-contrast", zone.attention_contrast, 0, low_open=True)
    check_choice(f"{prefix}attention-layers", zone.attention_layers, ("coarsest", "all"))
    check_at_least(f"{prefix}sam-points-per-side", zone.sam_points_per_side, 1)
    check_at_least(f"{prefix}sam-points-per-batch", zone.sam_points_per_batch, 1)
    for field_name in ("edge_dilate_px", "edge_radius_px", "edge_close_px"):
        check_range(prefix + field_name.replace("_", "-"), getattr(zone, field_name), 0)
    check_range(f"{prefix}edge-threshold", zone.edge_threshold, 0, 255)
    check_range(f"{prefix}edge-alpha", zone.edge_alpha, 0, 1)
    if not check_models:
        return
    if zone.action not in ("rules", *ACTIONS):
        if ":" not in zone.action:
            raise UsageError(f"unknown {prefix}action {zone.action!r}: use 'rules', one of {list(ACTIONS)}, "
                             f"or an import path 'package.module:Name'")
        check_plugin(zone.action, "action classifier")
    if zone.fusion_model not in ("none", main_model):
        check_model(zone.fusion_model, f"{prefix}fusion-model", MODEL_INDEX)
    if zone.segmenter != "none":
        if ":" in zone.segmenter and not zone.segmenter.startswith((".", "/", "~")):
            check_plugin(zone.segmenter, "segmenter")
        else:
            check_model(zone.segmenter, f"{prefix}segmenter", "config.json")


def check_localizer(spec: str, name: str = "--localizer") -> None:
    """`auto`, a registered localiser, or an import path to one (imported here, so a typo stops now)."""
    from nerf_edit.localizers import localizer_class

    if spec != "auto":
        localizer_class(spec, name)


def check_editor_config(config, check_models: bool = True, uses_zone: bool = False, prefix: str = "--",
                        model_flag: Optional[str] = None) -> None:
    """Every EditorConfig setting, named by its flag: `prefix` + name (`--steps` for nerf-edit-image,
    `--pipeline.editing.steps` for ns-train wys). `uses_zone`: the editor needs ZONE's models whatever the
    localizer (the zone editor); `check_models=False` when the caller passes models built in code."""
    from nerf_edit.loading import MODEL_INDEX

    check_at_least(f"{prefix}steps", config.steps, 1)
    check_range(f"{prefix}guidance-scale", config.guidance_scale, 0)
    check_range(f"{prefix}image-guidance-scale", config.image_guidance_scale, 0)
    check_range(f"{prefix}tau", config.tau, 0, 1)
    check_at_least(f"{prefix}dilate-px", config.dilate_px, 0)
    check_at_least(f"{prefix}feather-px", config.feather_px, 0)
    check_range(f"{prefix}relevance-timestep", config.relevance_timestep, 0, 1, low_open=True)
    check_at_least(f"{prefix}relevance-samples", config.relevance_samples, 1)
    check_range(f"{prefix}iqr-k", config.iqr_k, 0)
    check_localizer(config.localizer, f"{prefix}localizer")
    check_choice(f"{prefix}start-from", config.start_from, ("auto", "input", "noise"))
    check_choice(f"{prefix}latent-mask", config.latent_mask, ("any", "nearest"))
    check_device(config.device, f"{prefix}device")
    check_dtype(config.dtype, f"{prefix}dtype")
    if check_models:
        check_model(config.model, model_flag or f"{prefix}model", MODEL_INDEX)
    check_zone_config(config.zone, f"{prefix}zone.", main_model=config.model,
                      check_models=check_models and (uses_zone or config.localizer == "zone"))
    if hasattr(config, "vimaedit"):
        from nerf_edit.vimaedit_config import check_vimaedit_config

        check_vimaedit_config(config.vimaedit, f"{prefix}vimaedit.")


def check_editor_spec(spec: str, name: str = "--editor") -> type:
    """The editor class a name or import path gives (imports a plug-in, loads no model)."""
    from nerf_edit.editors import EDITORS, editor_class

    if spec not in EDITORS and ":" not in spec:
        raise UsageError(f"unknown {name} {spec!r}: use one of {sorted(EDITORS)} or an import path 'package.module:Class'")
    return editor_class(spec)


def editor_uses_zone(cls: type, config) -> bool:
    return bool(getattr(cls, "uses_zone", False)) or config.localizer == "zone" or (
        config.localizer == "auto" and getattr(cls, "default_localizer", None) == "zone")
