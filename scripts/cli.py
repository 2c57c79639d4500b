"""Shared command-line plumbing: bad input becomes one `error:` line and exit status 2, never a traceback.

Only known user errors (`nerf_edit.errors.UsageError` and its kinds) become one line, through the one exit path
every command shares (`nerf_edit.errors.usage_exit`); any other exception, a bare ValueError included, is a bug and
keeps its traceback."""

from __future__ import annotations

import sys
from typing import Callable, Dict, List, Optional, Tuple, Type

from nerf_edit.errors import UsageError, usage_exit

Presets = Dict[str, Tuple[str, Callable[[], object]]]  # name -> (what it is, the command with its settings)


def run(command: Type, presets: Optional[Presets] = None) -> None:
    """Parse `command` (a dataclass with validate() and main()) from the command line with tyro, check every
    setting before any model or data is loaded, then run it. With `presets`, `--preset NAME` starts from that
    preset's settings and every other flag overrides them (nerfstudio's method presets, for one command)."""
    import tyro

    argv, default, description = sys.argv[1:], None, None
    if presets:
        try:
            name, argv = take_preset(argv, presets)
        except UsageError as error:
            raise usage_exit(error) from None
        default = presets[name][1]() if name else None
        described = "; ".join(f"{key}: {about}" for key, (about, _) in presets.items())
        description = f"{command.__doc__}\n\n--preset NAME starts from a preset's settings, the other flags override them ({described})."
    args = tyro.cli(command, args=argv, default=default, description=description)
    try:
        if hasattr(args, "validate"):
            args.validate()
        args.main()
    except UsageError as error:
        raise usage_exit(error) from None


def take_preset(argv: List[str], presets: Presets) -> Tuple[Optional[str], List[str]]:
    """`--preset NAME` (or `--preset=NAME`) taken out of `argv`. -> (NAME or None, the other arguments)"""
    rest, name = [], None
    arguments = iter(argv)
    for argument in arguments:
        if argument == "--preset":
            name = next(arguments, None)
            if name is None:
                raise UsageError(f"--preset needs a name: one of {sorted(presets)}")
        elif argument.startswith("--preset="):
            name = argument.split("=", 1)[1]
        else:
            rest.append(argument)
    if name is not None and name not in presets:
        raise UsageError(f"unknown --preset {name!r}: use one of {sorted(presets)}")
    return name, rest
