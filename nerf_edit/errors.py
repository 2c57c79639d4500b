"""Every kind of user error, and the one way a command reports one.

A user error is an exception whose message is one line: what is wrong and how to fix it. Every check in the
library raises one of these; every command (the 2D CLIs in `nerf_edit_scripts`, `ns-train wys` in
`nerf_edit_methods`) ends through `usage_exit`: the line on stderr as `error: <message>`, exit status 2, no
traceback. Any other exception, a bare ValueError included, is a bug and keeps its traceback.

This module imports nothing of the package, so any layer may raise these.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

USAGE_EXIT_CODE = 2  # as argparse/tyro for bad flags


class UsageError(ValueError):
    """Bad user input; the message is one line: what is wrong and how to fix it.

    A ValueError so that library callers catching ValueError keep working; commands catch only UsageError (and
    the kinds below), so a real bug's ValueError keeps its traceback."""


class EditorError(UsageError):
    """Bad editor input or spec (images, instruction, mask, editor or localiser settings)."""


class ModelUnavailableError(UsageError, RuntimeError):
    """A model could not be loaded; the message says why and how to fix it."""


class ImageReadError(UsageError):
    """An image file that is missing, unreadable or not an image."""


class RunNotFoundError(UsageError):
    """A run folder, checkpoint or config that does not exist."""


class ActionDataError(UsageError):
    """An EditAction pairs folder that is missing or malformed."""


@contextlib.contextmanager
def as_editor_error() -> Iterator[None]:
    """Within the block a plain UsageError becomes an EditorError (its kinds stay as they are), so an editor's
    constructor reports every bad setting as the same kind, whichever check found it."""
    try:
        yield
    except EditorError:
        raise
    except ModelUnavailableError:
        raise
    except UsageError as error:
        raise EditorError(str(error)) from error


class UsageExit(SystemExit):
    """SystemExit with status 2, raised after the one `error:` line was printed; `str()` is that line."""

    def __init__(self, message: str):
        super().__init__(USAGE_EXIT_CODE)
        self.message = message

    def __str__(self) -> str:
        return f"error: {self.message}"


def usage_exit(error: BaseException) -> UsageExit:
    """Print `error: <message>` (one line, whatever the message held) on stderr; returns the UsageExit to raise."""
    exit_ = UsageExit(" ".join(str(error).split()))
    print(str(exit_), file=sys.stderr, flush=True)
    return exit_
