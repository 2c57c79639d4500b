"""What every editor shares, below the editing systems: the editor and localiser interfaces, the IP2P editor base,
and the editors that belong to no system (plain IP2P, the colorkey demonstration editor)."""

from nerf_edit.editing.editor import Editor, EditResult, IP2PEditor, make_editor
from nerf_edit.editing.localizer import IP2PLocalizer, Localization, Localizer, localize

__all__ = ["EditResult", "Editor", "IP2PEditor", "IP2PLocalizer", "Localization", "Localizer", "localize",
           "make_editor"]
