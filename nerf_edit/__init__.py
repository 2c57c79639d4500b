"""nerf_edit: local image and scene editing by text instruction (Watch Your Steps and friends).

The 2D library needs torch, diffusers and transformers only; the nerfstudio plugin lives in `nerf_edit_methods`.
"""

import logging

# diffusers imports bitsandbytes whenever it is installed (set-up installs it for EditAction's 8-bit Adam), and on a
# CPU machine bitsandbytes then warns that its optional 4-bit matmul kernel (the `kernels` package) is missing.
# Nothing here uses 4-bit matmuls; unsilenced, every command would print that line before its own output.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

from nerf_edit.editors import (  # noqa: E402
    EDITORS,
    Editor,
    EditorConfig,
    EditorError,
    EditResult,
    GlobalEditor,
    RelevanceGuidedEditor,
    ZoneConfig,
    editor_class,
    make_editor,
)
from nerf_edit.ip2p import InstructPix2Pix
from nerf_edit.localizers import LOCALIZERS, Localization, Localizer, RelevanceLocalizer, localizer_class
from nerf_edit.loading import IP2P_MODEL_ID, MAGICBRUSH_MODEL_ID, TINY_MODEL, ModelUnavailableError, load_ip2p_pipeline
from nerf_edit.relevance import clip_and_normalize, relevance_map, relevance_mask
from nerf_edit.zone_editor import ZoneEditor, ZoneLocalizer

__all__ = [
    "EDITORS", "Editor", "EditorConfig", "EditorError", "EditResult", "GlobalEditor", "RelevanceGuidedEditor",
    "ZoneConfig", "ZoneEditor", "ZoneLocalizer", "editor_class", "LOCALIZERS", "Localization", "Localizer",
    "RelevanceLocalizer", "localizer_class", "make_editor", "InstructPix2Pix", "IP2P_MODEL_ID",
    "MAGICBRUSH_MODEL_ID", "TINY_MODEL", "ModelUnavailableError",
    "load_ip2p_pipeline", "clip_and_normalize", "relevance_map", "relevance_mask",
]
__version__ = "0.1.0"
