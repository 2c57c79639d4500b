"""Watch Your Steps (Mirzaei et al., ECCV 2024): relevance maps of IP2P say where an instruction acts (the
localiser), and the relevance-guided edit changes only there (the editor). The relevance maths is
`nerf_edit.core.relevance`; the 3D method (relevance field, dataset update) is the nerfstudio plug-in."""

from nerf_edit.wys.editor import RelevanceGuidedEditor
from nerf_edit.wys.localizer import RelevanceLocalizer

__all__ = ["RelevanceGuidedEditor", "RelevanceLocalizer"]
