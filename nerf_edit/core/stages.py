"""Wall time per named stage of an edit, for the benchmarks (off unless asked for)."""

from __future__ import annotations

import contextlib
import time
from typing import Optional

import torch


class StageTimer:
    """`with timer.stage("SAM"): ...` adds the block's wall time to `seconds["SAM"]` while `seconds` is a dict
    (`start()`); otherwise it costs nothing. CUDA work is synchronised at both ends so it is counted."""

    def __init__(self, device: str = "cpu"):
        self.device = device
        self.seconds: Optional[dict] = None

    def start(self) -> None:
        self.seconds = {}

    @contextlib.contextmanager
    def stage(self, name: str):
        if self.seconds is None:
            yield
            return
        synchronize = torch.cuda.synchronize if torch.device(self.device).type == "cuda" else (lambda: None)
        synchronize()
        begin = time.perf_counter()
        yield
        synchronize()
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - begin
