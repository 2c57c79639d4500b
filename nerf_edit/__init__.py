"""nerf_edit: local image and scene editing by text instruction (Watch Your Steps and friends).

The 2D library needs torch, diffusers and transformers only; the nerfstudio plugin lives in `nerf_edit_methods`.
Layers, top to bottom (checked by import-linter, `pyproject.toml`):
  systems   `wys`, `zone`, `vimaedit`, `action`, `eval` (independent of each other)
  editing   the editor and localiser interfaces, the IP2P editor base, system-free editors
  config    settings dataclasses and their checks
  models    IP2P wrapper, loading, attention processors, segmenter, CLIP, tiny and full-size builders
  core      denoising loop and hooks, masks, checks, image I/O, progress
  leaves    `registry` (the systems; names -> import paths), `model_ids`, `plugins`, `validate`, `errors`
The names below are importable from the package itself; they load on first use, so `import nerf_edit.core.masks`
stays light.
"""

import importlib
import logging

# diffusers imports bitsandbytes whenever it is installed (set-up installs it for EditAction's 8-bit Adam), and on a
# CPU machine bitsandbytes then warns that its optional 4-bit matmul kernel (the `kernels` package) is missing.
# Nothing here uses 4-bit matmuls; unsilenced, every command would print that line before its own output.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

_PUBLIC = {
    "EditorConfig": "nerf_edit.config.editor",
    "ZoneConfig": "nerf_edit.config.zone",
    "ViMAEditConfig": "nerf_edit.config.vimaedit",
    "Editor": "nerf_edit.editing.editor",
    "EditRequest": "nerf_edit.editing.editor",
    "EditResult": "nerf_edit.editing.editor",
    "IP2PEditor": "nerf_edit.editing.ip2p_editor",
    "make_editor": "nerf_edit.editing.editor",
    "GlobalEditor": "nerf_edit.editing.global_editor",
    "Localization": "nerf_edit.editing.localizer",
    "Localizer": "nerf_edit.editing.localizer",
    "RelevanceGuidedEditor": "nerf_edit.wys.editor",
    "RelevanceLocalizer": "nerf_edit.wys.localizer",
    "ZoneEditor": "nerf_edit.zone.editor",
    "ZoneLocalizer": "nerf_edit.zone.localizer",
    "ViMAEditEditor": "nerf_edit.vimaedit.editor",
    "ViMAEditLocalizer": "nerf_edit.vimaedit.localizer",
    "EDITORS": "nerf_edit.registry",
    "LOCALIZERS": "nerf_edit.registry",
    "SYSTEMS": "nerf_edit.registry",
    "editor_class": "nerf_edit.editing.editor",
    "localizer_class": "nerf_edit.editing.localizer",
    "EditorError": "nerf_edit.errors",
    "ModelUnavailableError": "nerf_edit.errors",
    "UsageError": "nerf_edit.errors",
    "InstructPix2Pix": "nerf_edit.models.ip2p",
    "IP2P_MODEL_ID": "nerf_edit.model_ids",
    "MAGICBRUSH_MODEL_ID": "nerf_edit.model_ids",
    "TINY_MODEL": "nerf_edit.model_ids",
    "load_ip2p_pipeline": "nerf_edit.models.loading",
    "clip_and_normalize": "nerf_edit.wys.ops",
    "relevance_map": "nerf_edit.wys.ops",
    "relevance_mask": "nerf_edit.wys.ops",
}
__all__ = sorted(_PUBLIC)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nerf_edit' has no attribute {name!r}")
