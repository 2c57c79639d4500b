"""Localisers: *where* an instruction may act on an image, as a part editors take (not a base class they inherit).

A localiser is any class constructed as `Class(config: EditorConfig, ip2p: InstructPix2Pix)` with
    localize(images [B, 3, H, W], instruction, conditioning [B, 3, H, W], generator=None) -> Localization
`Localization.mask` [B, H, W] bool is where the edit may act; `soft` [B, H, W] in [0, 1] is the map behind it when
the localiser has one (WYS relevance), else None (ZONE's masks are 0/1). Editors call it when no mask is given; the
3D method trains its relevance field from `soft` (or the mask as 0/1).

Registered by name in `nerf_edit.registry.LOCALIZERS` (`relevance`: WYS, `zone`, `vimaedit`), or given as an import
path `package.module:Class` with `--localizer` (2D) or `--pipeline.editing.localizer` (3D). A localiser that loads
settings or models of its own may have a classmethod `check_settings(config, prefix, check_models)`, which editors
call before any model loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol, runtime_checkable

import torch

from nerf_edit.config.editor import EditorConfig
from nerf_edit.errors import EditorError
from nerf_edit.models.ip2p import EncodedInputs, InstructPix2Pix
from nerf_edit.registry import LOCALIZERS, resolve


@dataclass
class Localization:
    """Where an instruction acts on a batch."""

    mask: torch.Tensor  # [B, H, W] bool: the pixels an edit may change
    soft: Optional[torch.Tensor] = None  # [B, H, W] in [0, 1]: the map the mask was cut from, if there is one

    def as_map(self) -> torch.Tensor:
        """The soft map, or the mask as 0/1. -> [B, H, W] float"""
        return self.soft if self.soft is not None else self.mask.float()


@runtime_checkable
class Localizer(Protocol):
    def localize(
        self,
        images: torch.Tensor,
        instruction: str,
        conditioning: torch.Tensor,
        generator: Optional[torch.Generator] = None,
    ) -> Localization: ...


class IP2PLocalizer:
    """Base of the localisers that read IP2P: editors hand them the inputs they already encoded (`encoded`), so a
    localised edit costs one VAE pass, not two. Plug-ins need not derive from it."""

    def __init__(self, config: EditorConfig, ip2p: InstructPix2Pix):
        self.config = config
        self.ip2p = ip2p

    def localize(
        self,
        images: torch.Tensor,
        instruction: str,
        conditioning: torch.Tensor,
        generator: Optional[torch.Generator] = None,
        encoded: Optional[EncodedInputs] = None,
    ) -> Localization:
        if encoded is None:
            encoded = self.ip2p.encode_inputs(images, conditioning)
        return self.localize_encoded(encoded, instruction, generator)

    def localize_encoded(
        self, encoded: EncodedInputs, instruction: str, generator: Optional[torch.Generator] = None
    ) -> Localization:
        raise NotImplementedError


def localize(localizer, images, instruction, conditioning, generator=None, encoded=None) -> Localization:
    """Run any localiser, handing IP2P localisers the inputs already encoded; checks what a plug-in returns."""
    if isinstance(localizer, IP2PLocalizer):
        found = localizer.localize(images, instruction, conditioning, generator, encoded=encoded)
    else:
        found = localizer.localize(images, instruction, conditioning, generator)
    expected = (images.shape[0], *images.shape[-2:])
    if not isinstance(found, Localization) or tuple(found.mask.shape) != expected:
        got = tuple(found.mask.shape) if isinstance(found, Localization) else type(found).__name__
        raise EditorError(f"localizer {type(localizer).__name__} must return a Localization with a [B, H, W] = "
                         f"{expected} mask, got {got}")
    found.mask = found.mask.to(images.device).bool()
    return found


def localizer_class(spec: str, flag: str = "") -> type:
    """The localiser class a registered name or an import path `package.module:Class` names (imported, nothing
    built); one EditorError line, naming `flag`, when it is none or has no `localize`."""
    cls = resolve(LOCALIZERS, spec, "localizer", flag)
    if not callable(getattr(cls, "localize", None)):
        raise EditorError(f"localizer {spec!r} has no localize(): see nerf_edit.editing.Localizer")
    return cls
