"""ZONE's settings, as data nested in EditorConfig (`zone`): the system itself, which checks and reads them, is
`nerf_edit.zone` (its checks: `nerf_edit.zone.checks`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from nerf_edit.model_ids import MAGICBRUSH_MODEL_ID, SAM_MODEL_ID

Action = Literal["add", "remove", "change"]
ACTIONS: tuple[Action, ...] = ("add", "remove", "change")
# Which branches of IP2P's [text, image-only, null] guidance batch the rough mask's attention averages.
ATTENTION_BRANCHES = {"null-text": (1, 2), "instruction": (0,)}
# How the edge smoother compares the edited and original layers (ZoneConfig.edge_difference).
EdgeDifference = Literal["max-channel", "grey"]
EDGE_DIFFERENCES: tuple[EdgeDifference, ...] = ("max-channel", "grey")
# Which pixels the edge smoother blends (ZoneConfig.edge_band; zone.ops.blend_layers).
EdgeBand = Literal["difference", "official"]
EDGE_BANDS: tuple[EdgeBand, ...] = ("difference", "official")


@dataclass
class ZoneConfig:
    """ZONE's localisation and blending settings; defaults are the paper's and its code's (pixels at 512²)."""

    sampler: Literal["ddim", "dpm-solver++"] = "ddim"
    """Sampler of the fused edit: `ddim` (the model's DDIM, shared by IP2P and the fusion model's chains) or
    `dpm-solver++` (the official code's: DPM-Solver++ 2M from the IP2P config, one instance per chain, inference.py
    ~15, 27; use it with `--steps 20 --image-guidance-scale 1.5`, the official run's, or `official_zone_config()`)."""
    final_sigmas: Literal["zero", "sigma_min"] = "zero"
    """`dpm-solver++` only: where its last step ends. `zero` (diffusers' default today: σ = 0, a clean sample) or
    `sigma_min` (the training schedule's smallest σ, √((1 − ᾱ_0)/ᾱ_0)): what the official code gets from the
    diffusers 0.18 it pins (lsl001006/ZONE requirements.txt), whose DPM-Solver has no such setting and ends there;
    the zone-official preset's."""
    attention_branch: Literal["null-text", "instruction"] = "null-text"
    """Cross-attention recorded for the rough mask: of IP2P's [text, image-only, null] guidance batch, `null-text`
    averages the two null-text branches (official ZONE: null_text_w_ptp.py ~226 stores `attn[h // 3:]`),
    `instruction` keeps the instruction-conditioned one."""
    attention_threshold: float = 108.0
    """Rough mask: where the contrast-stretched first-minus-last-token attention (0-255 scale) is at most this
    (official ZONE: msk_from_attn.py ~73-75, `thres = 108`; the paper's Eq. 4 writes < 128)."""
    attention_contrast: float = 2.0
    """Contrast stretch of the token difference before thresholding (saturates at 255)."""
    attention_layers: Literal["coarsest", "all"] = "coarsest"
    """Cross-attention layers averaged: `coarsest` (1/32 of the image in SD, as ZONE) or `all` (resized)."""
    fusion_model: str = MAGICBRUSH_MODEL_ID
    """Second IP2P-architecture model fused into every step (MagicBrush); `none` turns fusion off."""
    action: str = "auto"
    """add/remove/change classifier (sets the fusion weight): `official` (ZONE's shipped MLP checkpoint on IP2P's CLIP
    text embedding), `rules` (keywords), `auto` (official with a real, 768-wide IP2P text encoder, else rules), a
    fixed action, or `package.module:Name`."""
    segmenter: str = SAM_MODEL_ID
    """Segments for Region-IoU refinement: SAM hub id or folder, `tiny`, `none` (keep the rough mask), or
    `package.module:Name`."""
    sam_points_per_side: int = 32
    """SAM automatic mask generation: grid points per image side."""
    sam_points_per_batch: int = 64
    """SAM prompts decoded at once (memory vs speed)."""
    small_regions_px: float = 64.0
    """Regions of the rough mask M_b (before Region-IoU) and of the refined mask M_f smaller than this area (pixels
    at 512², scaled with the image's area; 4-connected) are removed; holes stay; 0 keeps every region. The official
    code's `filter_small_regions(mask, region_thres=64)` (utils/mask_utils.py ~140-150, on M_b and M_f at ~161,
    ~163), without its two slips (`nerf_edit.zone.ops.remove_small_regions`)."""
    edge_dilate_px: float = 4.0
    """Edge smoother: the refined mask is dilated by this much before the layers are compared."""
    edge_radius_px: float = 200.0
    """Edge smoother: radius D0 of the ideal low-pass filter."""
    edge_threshold: float = 30.0
    """Edge smoother: low-passed difference (0-255) above this counts as edited."""
    edge_close_px: float = 10.0
    """Edge smoother: radius of the morphological closing."""
    edge_difference: EdgeDifference = "max-channel"
    """Edge smoother: how the two layers are compared. `max-channel` takes the largest per-channel difference, so a
    hue change of equal brightness counts; `grey` compares BT.601 luma (0.299 R + 0.587 G + 0.114 B), as the
    official code (utils/mask_utils.py ~252-255, cv2 RGB2GRAY), which misses such a change. (Its inference.py
    ~94-95 hands it BGR-ordered arrays, so in effect it weighs 0.299 B + 0.587 G + 0.114 R; we weigh R, G, B.)"""
    edge_band: EdgeBand = "difference"
    """Edge smoother: which pixels get the 0.6/0.4 blend. `difference`: the band the smoother adds around the refined
    mask (M_f* outside M_f). `official`: M_f XOR M_f*, as the official code's uint8 subtraction
    (`M_f* - M_f` wraps, inference.py ~125-129), so pixels of M_f the smoother drops are blended too."""
    edge_alpha: float = 0.6
    """Weight of the edit on the band the smoother adds around the refined mask."""
