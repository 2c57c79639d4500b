"""The editors and localisers known by name, as import paths `package.module:Class`, and the lookups that turn a
name or a user's import path into a class.

Paths, not imports: this module imports no editing system, so any layer may look a name up and a new editor or
localiser is one class plus one line here. Users need no line at all: `--editor pkg.mod:Class`,
`--localizer pkg.mod:Class`.
"""

from __future__ import annotations

from nerf_edit.errors import EditorError, UsageError, as_editor_error
from nerf_edit.plugins import import_object

EDITORS = {
    "relevance": "nerf_edit.wys.editor:RelevanceGuidedEditor",
    "wys": "nerf_edit.wys.editor:RelevanceGuidedEditor",
    "global": "nerf_edit.editing.global_editor:GlobalEditor",
    "zone": "nerf_edit.zone.editor:ZoneEditor",
    "colorkey": "nerf_edit.editing.colorkey:ColorKeyEditor",  # rule-based demonstration editor, not IP2P
    "vimaedit": "nerf_edit.vimaedit.editor:ViMAEditEditor",  # dual-branch SD-1.5 editing, not IP2P
}

LOCALIZERS = {
    "relevance": "nerf_edit.wys.localizer:RelevanceLocalizer",
    "zone": "nerf_edit.zone.localizer:ZoneLocalizer",
    "vimaedit": "nerf_edit.vimaedit.localizer:ViMAEditLocalizer",
}


def editor_class(spec: str) -> type:
    """An editor class from a registered name or an import path `package.module:Class`."""
    if ":" not in spec and spec not in EDITORS:
        raise EditorError(f"unknown editor {spec!r}: use one of {sorted(EDITORS)} or an import path 'package.module:Class'")
    with as_editor_error():
        cls = import_object(EDITORS.get(spec, spec), "editor")
    if not all(callable(getattr(cls, name, None)) for name in ("relevance", "edit")):
        raise EditorError(f"editor {spec!r} lacks relevance()/edit(): see nerf_edit.editing.Editor")
    return cls


def localizer_class(spec: str, name: str = "--localizer") -> type:
    """A localiser class from a registered name or an import path `package.module:Class`."""
    if spec in LOCALIZERS:
        return import_object(LOCALIZERS[spec], "localizer")
    if ":" not in spec:
        raise UsageError(f"unknown {name} {spec!r}: use one of {sorted(LOCALIZERS)}, auto, or an import path "
                         f"'package.module:Class'")
    cls = import_object(spec, "localizer")
    if not callable(getattr(cls, "localize", None)):
        raise UsageError(f"localizer {spec!r} has no localize(): see nerf_edit.editing.Localizer")
    return cls
