"""Watch Your Steps (Mirzaei et al., ECCV 2024): relevance maps of IP2P say where an instruction acts (the
localiser), and the relevance-guided edit changes only there (the editor). Its mathematics, the 3D method's edit
mask and relevance loss included, is `nerf_edit.wys.ops`; the 3D loop's parts are `nerf_edit.scene`, wired into
nerfstudio by the plug-in."""

from nerf_edit.wys.editor import RelevanceGuidedEditor
from nerf_edit.wys.localizer import RelevanceLocalizer

__all__ = ["RelevanceGuidedEditor", "RelevanceLocalizer"]
