"""ZONE (Li et al., CVPR 2024): zero-shot instruction-guided local editing. `ops` holds the maths, `parts` its
models and step hooks, `localizer` and `editor` the two parts other editors and the 3D method plug in."""

from nerf_edit.zone.editor import ZoneEditor
from nerf_edit.zone.localizer import ZoneLocalization, ZoneLocalizer
from nerf_edit.zone.ops import RuleBasedActionClassifier
from nerf_edit.zone.parts import ZoneParts, load_zone_parts

__all__ = ["RuleBasedActionClassifier", "ZoneEditor", "ZoneLocalization", "ZoneLocalizer", "ZoneParts",
           "load_zone_parts"]
