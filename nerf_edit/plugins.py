"""User plug-ins named by import path `package.module:Name` (editors, segmenters, action classifiers)."""

from __future__ import annotations

import importlib

from nerf_edit.errors import UsageError


def import_object(spec: str, kind: str):
    """The object an import path `package.module:Name` names (user plug-ins: editors, segmenters, classifiers).
    Raises UsageError with one line when it can't be imported."""
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise UsageError(f"{kind} {spec!r} is not an import path: write it as 'package.module:Name'")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as error:
        raise UsageError(f"cannot import {kind} {spec!r} ({error}): check the module is importable and names it") from error


def build_plugin(spec: str, kind: str):
    """A plug-in by import path: a class is constructed without arguments, anything else is used as it is."""
    target = import_object(spec, kind)
    return target() if isinstance(target, type) else target
