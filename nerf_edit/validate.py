"""Settings checks that run before any model or data is loaded: one line per problem, saying how to fix it.

Plain checks of numbers, text, devices and paths. Every command validates its settings first (the 2D CLI, the
evaluation commands, the `ns-train wys` config, `IP2PEditor` itself), so a bad value stops in a second with
`error: ...` instead of a traceback after minutes of loading. Each check raises `UsageError`; commands end through
`nerf_edit.errors.exits_on_user_error`. Model checks are in `nerf_edit.models.loading`, the shared editor settings'
in `nerf_edit.config.checks`, each editor's and system's own in its `check_settings`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional, Sequence

import torch

from nerf_edit.errors import UsageError


# ---------------------------------------------------------------------------------------------------- numbers
def is_finite_number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def check_range(name: str, value, low: Optional[float] = None, high: Optional[float] = None,
                low_open: bool = False, high_open: bool = False) -> None:
    """`value` must be a finite number within [low, high] (`low_open`/`high_open` exclude the end)."""
    if not is_finite_number(value):
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


def check_finite_above(name: str, value, low: float, low_open: bool = False) -> None:
    """A finite number >= `low` (> with `low_open`), one message for both faults (weights, scales)."""
    if not is_finite_number(value) or (value <= low if low_open else value < low):
        raise UsageError(f"{name} must be a finite number {'>' if low_open else '>='} {low:g}, got {value!r}")


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
