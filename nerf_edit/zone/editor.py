"""ZONE (Li et al., CVPR 2024) as an editor: a global edit by IP2P fused with MagicBrush, cut out by the localised
mask and blended back with the FFT edge smoother. Its models are `nerf_edit.zone.parts`, its localiser
`nerf_edit.zone.localizer`, the maths plain functions in `nerf_edit.zone.ops`."""

from __future__ import annotations

from typing import Optional

import torch

from nerf_edit.config.editor import EditorConfig
from nerf_edit.editing.editor import EditRequest, EditResult
from nerf_edit.editing.ip2p_editor import IP2PEditor
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

    default_localizer = ZoneLocalizer
    default_start = "noise"  # ZONE's code runs diffusers' IP2P sampling

    def __init__(self, config: EditorConfig, ip2p: Optional[InstructPix2Pix] = None,
                 localizer: Optional[Localizer] = None, fusion: Optional[InstructPix2Pix] = None, segmenter=None):
        """ZONE's `fusion` model and `segmenter` are loaded from `config.zone` unless given (benchmarks pass
        random-weight full-size models)."""
        self.zone: Optional[ZoneLocalizer] = None  # ZONE's machinery (fused edit, segments), whatever the localiser
        self._given_zone_parts = (fusion, segmenter)
        super().__init__(config, ip2p, localizer)
        if self.zone is None:
            self.zone = self._zone_localizer()

    @classmethod
    def check_settings(cls, config: EditorConfig, prefix: str = "--", check_models: bool = True,
                       model_flag: Optional[str] = None) -> None:
        """IP2P's settings and ZONE's, whatever the localiser (the fused edit and the segments are always used)."""
        super().check_settings(config, prefix, check_models, model_flag)
        if cls.localizer_type(config, f"{prefix}localizer") is not ZoneLocalizer:
            ZoneLocalizer.check_settings(config, prefix, check_models)

    def check_own_settings(self, check_models: bool, check_localizer: bool) -> None:
        zone_localizes = self.localizer_type(self.config) is ZoneLocalizer
        super().check_own_settings(check_models, check_localizer and not zone_localizes)
        if self._given_zone_parts == (None, None):
            ZoneLocalizer.check_settings(self.config, "--", True)

    def _zone_localizer(self) -> ZoneLocalizer:
        parts = load_zone_parts(self.config, self.ip2p, *self._given_zone_parts)
        return ZoneLocalizer(self.config, self.ip2p, parts, self.stages)

    def make_localizer(self) -> Localizer:
        if self.localizer_type(self.config) is ZoneLocalizer:
            self.zone = self._zone_localizer()
            return self.zone
        return super().make_localizer()

    def run(self, request: EditRequest) -> EditResult:
        images, instruction, generator = request.images, request.instruction, request.generator
        noise = self.draw_noise(images, generator)
        with self.stages.stage("encode"):
            encoded = self.ip2p.encode_inputs(images, request.conditioning)
        if request.mask is None and self.localizer is self.zone:
            found = self.zone.localize_encoded(encoded, instruction, generator, request.strength, noise,
                                               request.on_step)
        else:
            found = self._cut_out(request, encoded, noise)
        settings, background = self.config.zone, request.background.float()
        with self.stages.stage("edge smoother + blend"):
            final = zone.fft_edge_mask(found.canvas, background, found.refined_mask, settings.edge_dilate_px,
                                       settings.edge_radius_px, settings.edge_threshold, settings.edge_close_px,
                                       settings.edge_difference)
            result = zone.blend_layers(found.canvas, background, final, found.refined_mask, settings.edge_alpha,
                                       band=settings.edge_band)
        changed = final | found.refined_mask if settings.edge_band == "official" else final  # what the band touches
        return EditResult(images=result, relevance=found.refined_mask.float(), mask=changed, localization=found)

    def _cut_out(self, request: EditRequest, encoded, noise: torch.Tensor) -> ZoneLocalization:
        """The fused edit cut out by another localiser's mask refined by the segments, or by the caller's mask
        taken as M_f as given (no small regions removed, no segments)."""
        images = request.images
        fused = self.zone.fused_edit(encoded, request.instruction, request.strength, noise, record=False,
                                     on_step=request.on_step)
        actions = [fused.action] * images.shape[0]
        classifier = self.zone.parts.classifier_name
        if request.mask is not None:
            return ZoneLocalization(mask=request.mask, canvas=fused.canvas, refined_mask=request.mask,
                                    actions=actions, action_classifier=classifier)
        rough = localize(self.localizer, images, request.instruction, request.conditioning, request.generator,
                         encoded).mask
        rough, refined = self.zone.refine(images, fused.canvas, rough, fused.action)
        return ZoneLocalization(mask=refined, canvas=fused.canvas, rough_mask=rough, refined_mask=refined,
                                actions=actions, action_classifier=classifier)
