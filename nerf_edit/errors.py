"""Every kind of user error, and the one way a command reports one.

A user error is an exception whose message is one line: what is wrong and how to fix it. Every check in the
library raises one of these (one kind per subject, below); every command (the 2D CLIs in `nerf_edit_scripts`,
`ns-train wys*` in `nerf_edit_methods`) runs inside `exits_on_user_error`, the one exit path: a user error is
printed on stderr as `error: <message>`, exit status 2, no traceback; Ctrl-C as `interrupted: ...`, exit status
130 (the shell's). Any other exception, a bare ValueError included, is a bug and keeps its traceback.

This module imports nothing of the package, so any layer may raise these.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

USAGE_EXIT_CODE = 2  # as argparse/tyro for bad flags
INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, as a shell reports a Ctrl-C


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


@contextlib.contextmanager
def exits_on_user_error(interrupted: str = "stopped") -> Iterator[None]:
    """The one exit path of every command: inside the block a user error ends the command with its one `error:`
    line and exit status 2, and Ctrl-C with `interrupted: <interrupted>` and exit status 130 (no traceback
    either way). `interrupted` says what the user keeps (e.g. the last checkpoint)."""
    try:
        yield
    except UsageError as error:
        raise usage_exit(error) from None
    except KeyboardInterrupt:
        print(f"interrupted: {interrupted}", file=sys.stderr, flush=True)
        raise SystemExit(INTERRUPTED_EXIT_CODE) from None
