"""ViMAEdit (Wang et al., arXiv 2410.10496): vision-guided, mask-enhanced dual-branch editing with SD-1.5. `ops`
holds the maths, `attention` the Prompt-to-Prompt control and grounding maps, `models` the networks, `editor` and
`localizer` the two parts the rest of the library plugs in."""

from nerf_edit.config.vimaedit import ViMAEditConfig
from nerf_edit.vimaedit.editor import ViMAEditEditor, ViMAEditResult
from nerf_edit.vimaedit.localizer import ViMAEditLocalizer, content_words
from nerf_edit.vimaedit.models import ViMAEditModels, load_vimaedit_models

__all__ = ["ViMAEditConfig", "ViMAEditEditor", "ViMAEditLocalizer", "ViMAEditModels", "ViMAEditResult",
           "content_words", "load_vimaedit_models"]
