"""What every editor shares, below the editing systems: the editor interface (`EditRequest`, `Editor`), the
localiser interface, the IP2P editor base, and the editors that belong to no system (plain IP2P, the colorkey
demonstration editor)."""

from nerf_edit.editing.editor import Editor, EditRequest, EditResult, editor_class, make_editor
from nerf_edit.editing.ip2p_editor import IP2PEditor
from nerf_edit.editing.localizer import IP2PLocalizer, Localization, Localizer, localize, localizer_class

__all__ = ["EditRequest", "EditResult", "Editor", "IP2PEditor", "IP2PLocalizer", "Localization", "Localizer",
           "editor_class", "localize", "localizer_class", "make_editor"]
