"""ZONE (Li et al., CVPR 2024) as an editor: a global edit by IP2P fused with MagicBrush, cut out by the localised
mask and blended back with the FFT edge smoother. Its models are `nerf_edit.zone.parts`, its localiser
`nerf_edit.zone.localizer`, the maths plain functions in `nerf_edit.zone.ops`."""

from __future__ import annotations

from typing import Optional

import torch

from nerf_edit.config.editor import EditorConfig
from nerf_edit.core.checks import check_background, check_mask
from nerf_edit.core.guided import StepCallback
from nerf_edit.editing.editor import EditResult, IP2PEditor
from nerf_edit.editing.localizer import Localizer, localize
from nerf_edit.models.ip2p import InstructPix2Pix
from nerf_edit.zone import ops as zone
from nerf_edit.zone.localizer import ZoneLocalization, ZoneLocalizer
from nerf_edit.zone.parts import load_zone_parts


class ZoneEditor(IP2PEditor):
    """ZONE: a global edit by IP2P fused with MagicBrush, cut out by the localised mask and blended back with the
    FFT edge smoother. Pixels outside the smoothed mask M_f* are exactly the input's (or `background`'s).

    The mask is ZONE's own (`localizer` auto/zone: one fused edit gives both the canvas and the mask), another
    localiser's refined by the segments (e.g. `relevance`: WYS relevance >= τ as M_b), or the caller's `mask`
    taken as M_f (the 3D method passes its rendered relevance's: no attention, no segments)."""

    default_localizer = "zone"
    default_start = "noise"  # ZONE's code runs diffusers' IP2P sampling
    uses_zone = True

    def __init__(self, config: EditorConfig, ip2p: Optional[InstructPix2Pix] = None,
                 localizer: Optional[Localizer] = None, fusion: Optional[InstructPix2Pix] = None, segmenter=None):
        """ZONE's `fusion` model and `segmenter` are loaded from `config.zone` unless given (benchmarks pass
        random-weight full-size models)."""
        self.zone: Optional[ZoneLocalizer] = None  # ZONE's machinery (fused edit, segments), whatever the localiser
        self._given_zone_parts = (fusion, segmenter)
        super().__init__(config, ip2p, localizer)
        if self.zone is None:
            self.zone = self._zone_localizer()

    def check_part_models(self, localizer: Optional[Localizer]) -> None:
        if self._given_zone_parts == (None, None):
            ZoneLocalizer.check_models(self.config)
        if self.localizer_name != "zone":
            super().check_part_models(localizer)

    def _zone_localizer(self) -> ZoneLocalizer:
        parts = load_zone_parts(self.config, self.ip2p, *self._given_zone_parts)
        return ZoneLocalizer(self.config, self.ip2p, parts, self.stages)

    def make_localizer(self) -> Localizer:
        if self.localizer_name == "zone":
            self.zone = self._zone_localizer()
            return self.zone
        return super().make_localizer()

    def edit(
        self,
        images: torch.Tensor,
        instruction: str,
        conditioning: Optional[torch.Tensor] = None,
        mask: Optional[torch.Tensor] = None,
        strength: float = 1.0,
        generator: Optional[torch.Generator] = None,
        on_step: Optional[StepCallback] = None,
        background: Optional[torch.Tensor] = None,
    ) -> EditResult:
        images, conditioning = self._check(images, instruction, conditioning)
        background = check_background(background, images)
        noise = self.draw_noise(images, generator)
        with self.stages.stage("encode"):
            encoded = self.ip2p.encode_inputs(images, conditioning)
        if mask is None and self.localizer is self.zone:
            found = self.zone.localize_encoded(encoded, instruction, generator, strength, noise, on_step)
        else:
            fused = self.zone.fused_edit(encoded, instruction, strength, noise, record=False, on_step=on_step)
            actions = [fused.action] * images.shape[0]
            if mask is None:  # another localiser's mask is ZONE's rough mask; the segments refine it
                rough = localize(self.localizer, images, instruction, conditioning, generator, encoded).mask
                rough, refined = self.zone.refine(images, fused.canvas, rough, fused.action)
                found = ZoneLocalization(mask=refined, canvas=fused.canvas, rough_mask=rough, refined_mask=refined,
                                         actions=actions, action_classifier=self.zone.parts.classifier_name)
            else:  # the caller's mask is M_f as given: no small regions removed, no segments
                refined = check_mask(mask, images)
                found = ZoneLocalization(mask=refined, canvas=fused.canvas, refined_mask=refined, actions=actions,
                                         action_classifier=self.zone.parts.classifier_name)
        settings = self.config.zone
        with self.stages.stage("edge smoother + blend"):
            final = zone.fft_edge_mask(found.canvas, background.float(), found.refined_mask, settings.edge_dilate_px,
                                       settings.edge_radius_px, settings.edge_threshold, settings.edge_close_px,
                                       settings.edge_difference)
            result = zone.blend_layers(found.canvas, background.float(), final, found.refined_mask, settings.edge_alpha)
        return EditResult(images=result, relevance=found.refined_mask.float(), mask=final, localization=found)
