"""Checks of ZONE's settings (`EditorConfig.zone`), named by flag, before any model loads: ZONE's own, so the
settings layer below imports no model."""

from __future__ import annotations

from typing import Optional

from nerf_edit.config.zone import ACTIONS, ATTENTION_BRANCHES, EDGE_BANDS, EDGE_DIFFERENCES
from nerf_edit.errors import UsageError
from nerf_edit.models.loading import MODEL_INDEX, check_model
from nerf_edit.plugins import import_object
from nerf_edit.validate import check_at_least, check_choice, check_range


def check_zone_config(zone, prefix: str = "--zone.", main_model: Optional[str] = None, check_models: bool = True) -> None:
    """ZoneConfig's ranges; with `check_models` (ZONE is used) also the action classifier, the fusion model (unless
    it is `main_model`) and the segmenter."""
    check_range(f"{prefix}attention-threshold", zone.attention_threshold, 0, 255)
    check_range(f"{prefix}attention-contrast", zone.attention_contrast, 0, low_open=True)
    check_choice(f"{prefix}attention-layers", zone.attention_layers, ("coarsest", "all"))
    check_choice(f"{prefix}attention-branch", zone.attention_branch, tuple(ATTENTION_BRANCHES))
    check_choice(f"{prefix}sampler", zone.sampler, ("ddim", "dpm-solver++"))
    check_choice(f"{prefix}final-sigmas", zone.final_sigmas, ("zero", "sigma_min"))
    check_at_least(f"{prefix}sam-points-per-side", zone.sam_points_per_side, 1)
    check_at_least(f"{prefix}sam-points-per-batch", zone.sam_points_per_batch, 1)
    for field_name in ("edge_dilate_px", "edge_radius_px", "edge_close_px"):
        check_range(prefix + field_name.replace("_", "-"), getattr(zone, field_name), 0)
    check_range(f"{prefix}edge-threshold", zone.edge_threshold, 0, 255)
    check_range(f"{prefix}edge-alpha", zone.edge_alpha, 0, 1)
    check_choice(f"{prefix}edge-difference", zone.edge_difference, EDGE_DIFFERENCES)
    check_choice(f"{prefix}edge-band", zone.edge_band, EDGE_BANDS)
    check_range(f"{prefix}small-regions-px", zone.small_regions_px, 0)
    if not check_models:
        return
    if zone.action not in ("auto", "official", "rules", *ACTIONS):
        if ":" not in zone.action:
            raise UsageError(f"unknown {prefix}action {zone.action!r}: use 'auto', 'official', 'rules', one of "
                             f"{list(ACTIONS)}, "
                             f"or an import path 'package.module:Name'")
        import_object(zone.action, "action classifier")
    if zone.fusion_model not in ("none", main_model):
        check_model(zone.fusion_model, f"{prefix}fusion-model", MODEL_INDEX)
    if zone.segmenter != "none":
        if ":" in zone.segmenter and not zone.segmenter.startswith((".", "/", "~")):
            import_object(zone.segmenter, "segmenter")
        else:
            check_model(zone.segmenter, f"{prefix}segmenter", "config.json")
