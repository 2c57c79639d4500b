"""Settings dataclasses, below every editor: `EditorConfig` with ZONE's and ViMAEdit's nested settings."""

from nerf_edit.config.editor import EditorConfig
from nerf_edit.config.vimaedit import ViMAEditConfig
from nerf_edit.config.zone import ZoneConfig

__all__ = ["EditorConfig", "ViMAEditConfig", "ZoneConfig"]
