"""Settings dataclasses, below every editor: `EditorConfig` with ZONE's and ViMAEdit's nested settings, and the
official presets."""

from nerf_edit.config.editor import EditorConfig
from nerf_edit.config.presets import official_vimaedit_editor_config, official_zone_config
from nerf_edit.config.vimaedit import ViMAEditConfig, official_vimaedit_config
from nerf_edit.config.zone import ZoneConfig

__all__ = ["EditorConfig", "ViMAEditConfig", "ZoneConfig", "official_vimaedit_config", "official_vimaedit_editor_config",
           "official_zone_config"]
