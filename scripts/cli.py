"""Shared command-line plumbing: bad input becomes one `error:` line and exit status 2, never a traceback.

Only known user errors (`UsageError` and its kinds: ImageReadError, RunNotFoundError, EditorError,
ModelUnavailableError) become one line; any other exception, a bare ValueError included, is a bug and keeps its
traceback."""

from __future__ import annotations

import sys
from typing import Type

from nerf_edit.validate import UsageError

USAGE_EXIT_CODE = 2  # as argparse/tyro for bad flags


def fail(error: BaseException) -> None:
    """Print `error: <message>` (one line) on stderr and exit with status 2."""
    message = " ".join(str(error).split())  # one line, whatever the message held
    print(f"error: {message}", file=sys.stderr)
    sys.exit(USAGE_EXIT_CODE)


def run(command: Type) -> None:
    """Parse `command` (a dataclass with validate() and main()) from the command line with tyro, check every
    setting before any model or data is loaded, then run it."""
    import tyro

    args = tyro.cli(command)
    try:
        if hasattr(args, "validate"):
            args.validate()
        args.main()
    except UsageError as error:
        fail(error)
