"""Progress of long work, the same way in every command: a live bar on a terminal; elsewhere (CI logs, nohup,
`> log`) plain lines, so long work is never silent.

The rate on a plain line is the items done since the clock started (or was restarted) over the seconds since
then, so items that finish together (a batch of views) do not inflate it.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Optional, TextIO

# (done, total or None, rate in items/s, seconds since the clock started, status) -> one plain line
LineFormat = Callable[[int, Optional[int], float, float, str], str]


def default_line(description: str, unit: str) -> LineFormat:
    """`<description>: <done>/<total> <unit> (<rate> <unit>/s)`, and the status after it when there is one."""

    def line(done: int, total: Optional[int], rate: float, elapsed: float, status: str) -> str:
        count = f"{done}/{total}" if total is not None else f"{done}"
        return f"{description}: {count} {unit} ({rate:.2f} {unit}/s)" + (f" {status}" if status else "")

    return line


class Progress:
    """Counts items of work and reports them.

    On a terminal (`stream.isatty()`, unless `terminal` says otherwise) a tqdm bar; elsewhere a plain line every
    `every` items (default: about ten lines for a known total) and at `close()`, formatted by `line`."""

    def __init__(self, description: str, total: Optional[int] = None, unit: str = "items", every: Optional[int] = None,
                 initial: int = 0, line: Optional[LineFormat] = None, enabled: bool = True,
                 terminal: Optional[bool] = None, stream: Optional[TextIO] = None,
                 announce: bool = False):
        self.description, self.total, self.unit = description, total, unit
        self.every = max(1, every if every is not None else (total // 10 if total else 1))
        self.line = line if line is not None else default_line(description, unit)
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stdout
        self.done = initial
        self._printed_at = initial
        self.restart_clock()
        is_terminal = terminal if terminal is not None else bool(getattr(self.stream, "isatty", lambda: False)())
        self.bar = None
        self.plain = enabled and not is_terminal
        if enabled and is_terminal:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=description, unit=unit, dynamic_ncols=True,
                            file=self.stream, leave=False)
        elif self.plain and announce:
            self._print(f"{description}: {initial}/{total} {unit}" if total is not None else f"{description}: {initial} {unit}")

    def restart_clock(self) -> None:
        """Rates count from now (e.g. after a pause)."""
        self._clock = (self.done, time.perf_counter())

    @property
    def rate(self) -> float:
        since_count, since = self._clock
        return (self.done - since_count) / max(time.perf_counter() - since, 1e-9)

    def advance(self, count: int = 1, status: str = "") -> None:
        self.done += count
        if self.bar is not None:
            self.bar.update(count)
            if status:
                self.bar.set_postfix_str(status)
        elif self.plain and (self.done // self.every > self._printed_at // self.every
                             or (self.total is not None and self.done >= self.total)):
            self.report(status)

    def report(self, status: str = "") -> None:
        """Print the plain line now."""
        self._printed_at = self.done
        self._print(self.line(self.done, self.total, self.rate, time.perf_counter() - self._clock[1], status))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.plain and self._printed_at != self.done:
            self.report()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)
