"""What every benchmark shares: wall time of a call (CUDA synchronised on a GPU), medians, and the command line that
parses a benchmark's settings, measures and prints one `name value` row a line."""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import torch

Row = Tuple[str, str]


def timed(function: Callable[[], object], device: str = "cpu") -> float:
    """Seconds one call of `function` takes; on CUDA the GPU's queued work is waited for before and after."""
    synchronize = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    synchronize()
    begin = time.perf_counter()
    function()
    synchronize()
    return time.perf_counter() - begin


def median_seconds(function: Callable[[], object], repeats: int, device: str = "cpu") -> float:
    """Median of `repeats` timed calls."""
    return statistics.median(timed(function, device) for _ in range(repeats))


@dataclass
class Flag:
    """A command-line setting of a benchmark: `--name` with this default (its type is the default's)."""

    default: object
    help: Optional[str] = None
    choices: Optional[Sequence[object]] = None


def run_cli(doc: str, measure: Callable[[argparse.Namespace], List[Row]], width: int = 40, **flags) -> None:
    """Parse `--<flag>` settings (values are defaults or `Flag`s), run `measure(options)` and print its rows."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    for name, flag in flags.items():
        flag = flag if isinstance(flag, Flag) else Flag(flag)
        parser.add_argument(f"--{name}", type=type(flag.default), default=flag.default, help=flag.help,
                            choices=flag.choices)
    for name, value in measure(parser.parse_args()):
        print(f"{name:{width}s} {value}")
