"""Shared command-line plumbing: every command parses its flags with tyro, checks every setting before any model
or data loads, and ends through the library's one exit path (`nerf_edit.errors.exits_on_user_error`): a user error
is one `error:` line with exit status 2, Ctrl-C one `interrupted:` line with exit status 130, never a traceback.
Any other exception, a bare ValueError included, is a bug and keeps its traceback."""

from __future__ import annotations

import sys
from typing import Callable, Dict, List, Optional, Tuple, Type

from nerf_edit.errors import UsageError, exits_on_user_error

Presets = Dict[str, Tuple[str, Callable[[], object]]]  # name -> (what it is, the command with its settings)


def run(command: Type, presets: Optional[Presets] = None) -> None:
    """Parse `command` (a dataclass with main(), optionally validate() and an `interrupted` text saying what a
    Ctrl-C leaves) from the command line with tyro, check every setting, then run it. With `presets`, `--preset
    NAME` starts from that preset's settings and every other flag overrides them (nerfstudio's method presets, for
    one command)."""
    import tyro

    argv, default, description = sys.argv[1:], None, None
    if presets:
        with exits_on_user_error():
            name, argv = take_preset(argv, presets)
        default = presets[name][1]() if name else None
        described = "; ".join(f"{key}: {about}" for key, (about, _) in presets.items())
        description = f"{command.__doc__}\n\n--preset NAME starts from a preset's settings, the other flags override them ({described})."
    args = tyro.cli(command, args=argv, default=default, description=description)
    with exits_on_user_error(getattr(args, "interrupted", "stopped")):
        if hasattr(args, "validate"):
            args.validate()
        args.main()


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
