"""Shared command-line plumbing: bad input becomes one `error:` line and exit status 2, never a traceback."""

from __future__ import annotations

import sys
from typing import Type

from nerf_edit.editors import EditorError
from nerf_edit.io import ImageReadError
from nerf_edit.loading import ModelUnavailableError

USER_ERRORS = (ImageReadError, EditorError, ModelUnavailableError, ValueError)


def run(command: Type) -> None:
    """Parse `command` (a dataclass with a main()) from the command line with tyro and run it."""
    import tyro

    args = tyro.cli(command)
    try:
        args.main()
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
