"""Waiting in tests counts events (files written, checkpoints, edits, log lines), never seconds.

A machine 3x slower than the one a test was written on only makes the wait longer. The one time limit,
`HANG_GUARD`, is far above any normal wait: it exists only so that a hung process fails the test instead of CI.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional, Tuple, Type

import pytest

HANG_GUARD = 1800.0  # seconds; catches hangs only


def wait_for(condition: Callable[[], object], what: str, process=None, interval: float = 0.25,
             ignore: Tuple[Type[BaseException], ...] = (), log: Optional[Path] = None):
    """Poll `condition()` until it returns a truthy value, which is returned. Fails when `process` (a Popen) exits
    first (showing the end of its `log` file, if given), or after HANG_GUARD seconds; exceptions of the `ignore`
    types count as "not yet"."""
    began = time.monotonic()
    while time.monotonic() - began < HANG_GUARD:
        try:
            value = condition()
        except ignore:
            value = None
        if value:
            return value
        if process is not None and process.poll() is not None:
            tail = f":\n{Path(log).read_text()[-3000:]}" if log is not None and Path(log).is_file() else ""
            pytest.fail(f"the process exited ({process.returncode}) while waiting for {what}{tail}")
        time.sleep(interval)
    pytest.fail(f"hang: no {what} after {HANG_GUARD:.0f} s")

