"""Localisers: *where* an instruction may act on an image, as a part editors take (not a base class they inherit).

A localiser is any class constructed as `Class(config: EditorConfig, ip2p: InstructPix2Pix)` with
    localize(images [B, 3, H, W], instruction, conditioning [B, 3, H, W], generator=None) -> Localization
`Localization.mask` [B, H, W] bool is where the edit may act; `soft` [B, H, W] in [0, 1] is the map behind it when
the localiser has one (WYS relevance), else None (ZONE's masks are 0/1). Editors call it when no mask is given; the
3D method trains its relevance field from `soft` (or the mask as 0/1).

Registered by name in LOCALIZERS (`relevance`, `zone`, `vimaedit`), or given as an import path `package.module:Class` with
`--localizer` (2D) or `--pipeline.editing.localizer` (3D). Adding one is one class plus one line in LOCALIZERS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Protocol, runtime_checkable

import torch

from nerf_edit.checks import EditorError
from nerf_edit.ip2p import EncodedInputs, InstructPix2Pix
from nerf_edit.plugins import import_object
from nerf_edit.relevance import relevance_map, relevance_mask
from nerf_edit.validate import UsageError

if TYPE_CHECKING:
    from nerf_edit.editors import EditorConfig


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

    def __init__(self, config: "EditorConfig", ip2p: InstructPix2Pix):
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


class RelevanceLocalizer(IP2PLocalizer):
    """Watch Your Steps: relevance of the images' latents under the instruction (conditioned on `conditioning`),
    clipped and normalised; the mask is relevance >= τ."""

    def localize_encoded(
        self, encoded: EncodedInputs, instruction: str, generator: Optional[torch.Generator] = None
    ) -> Localization:
        relevance = self.relevance(encoded, instruction, generator)
        return Localization(mask=relevance_mask(relevance, self.config.tau), soft=relevance)

    def relevance(
        self, encoded: EncodedInputs, instruction: str, generator: Optional[torch.Generator] = None
    ) -> torch.Tensor:
        """-> [B, H, W] in [0, 1], on the images' device."""
        ip2p, clean = self.ip2p, encoded.clean
        factor = ip2p.vae_scale_factor

        def predict(noisy, t):
            return ip2p.predict_text_and_null(noisy, t, encoded.condition, instruction)

        relevance = relevance_map(
            predict,
            clean,
            ip2p.scheduler.add_noise,
            timestep=int(self.config.relevance_timestep * ip2p.num_train_timesteps),
            num_samples=self.config.relevance_samples,
            iqr_k=self.config.iqr_k,
            output_size=(clean.shape[-2] * factor, clean.shape[-1] * factor),
            generator=generator,
        )
        height, width = encoded.size
        return relevance[:, :height, :width].to(encoded.images.device)


# Name -> import path (paths, so this module needn't import ZONE's, nor ZONE's this one at import time).
LOCALIZERS = {
    "relevance": "nerf_edit.localizers:RelevanceLocalizer",
    "zone": "nerf_edit.zone_editor:ZoneLocalizer",
    "vimaedit": "nerf_edit.vimaedit_editor:ViMAEditLocalizer",
}


def localizer_class(spec: str, name: str = "--localizer") -> type:
    """A localiser class from a registered name or an import path `package.module:Class`."""
    if spec in LOCALIZERS:
        return import_object(LOCALIZERS[spec], "localizer")
    if ":" not in spec:
        raise UsageError(f"unknown {name} {spec!r}: use one of {sorted(LOCALIZERS)}, auto, or an import path "
                         f"'package.module:Class'")
    cls = import_object(spec, "localizer")
    if not callable(getattr(cls, "localize", None)):
        raise UsageError(f"localizer {spec!r} has no localize(): see nerf_edit.localizers.Localizer")
    return cls


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
