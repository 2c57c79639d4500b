"""Shared command-line plumbing: bad input becomes one `error:` line and exit status 2, never a traceback.

Only known user errors (`nerf_edit.errors.UsageError` and its kinds) become one line, through the one exit path
every command shares (`nerf_edit.errors.usage_exit`); any other exception, a bare ValueError included, is a bug and
keeps its traceback."""

from __future__ import annotations

from typing import Type

from nerf_edit.errors import UsageError, usage_exit


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
        raise usage_exit(error) from None
