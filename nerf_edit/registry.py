"""The one place that lists the editing systems and what they register by name: editors, localisers and step hooks,
as import paths `package.module:Class`, and the lookup that turns a name or a user's import path into the object.

Paths, not imports: this module imports no editing system, so any layer may look a name up, and a system is loaded
only when a user names it (the editing layer's own defaults name none). A new system is a folder under
`nerf_edit/` plus its line in `SYSTEMS` and its names below; tests check the rest against this list (the layers
contract in pyproject.toml, the wheel's packages, the registered paths). Users need no line at all: `--editor
pkg.mod:Class`, `--localizer pkg.mod:Class`, `--step-hooks pkg.mod:Name`.
"""

from __future__ import annotations

from typing import Dict

from nerf_edit.errors import EditorError, as_editor_error
from nerf_edit.plugins import import_object

SYSTEMS = ("wys", "zone", "vimaedit", "action", "eval")
"""The editing systems and evaluation, each a package `nerf_edit.<name>`, independent of each other."""

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

STEP_HOOKS = {
    "adaptive-variance": "nerf_edit.vimaedit.hooks:AdaptiveVariance",  # `--adaptive-variance` of IP2P editors
}


def resolve(table: Dict[str, str], spec: str, kind: str, flag: str = ""):
    """The object a registered name of `table` or an import path `package.module:Name` gives; an EditorError line
    (naming `flag`, default the kind) when it is neither or can't be imported."""
    if spec not in table and ":" not in spec:
        raise EditorError(f"unknown {flag or kind} {spec!r}: use one of {sorted(table)} or an import path "
                          f"'package.module:Class'")
    with as_editor_error():
        return import_object(table.get(spec, spec), kind)
