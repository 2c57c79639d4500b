"""Official presets: each system's settings as its authors' code runs it, one call each (and one `--preset` flag
on the command line). Only what differs from our defaults is set; every other field keeps its default."""

from __future__ import annotations

from nerf_edit.config.editor import EditorConfig
from nerf_edit.config.vimaedit import official_vimaedit_config
from nerf_edit.config.zone import ZoneConfig


def official_zone_config(**settings) -> EditorConfig:
    """ZONE's official run (lsl001006/ZONE inference.py): DPM-Solver++ from the IP2P config with one instance per
    chain (~15, 27), 20 steps (`--inference_steps`), text guidance 7.5 (its `--image_guidance_scale` argument is
    passed as `guidance_scale`, ~65) and image guidance 1.5 (the sampler's default, null_text_w_ptp.py ~930), the
    solver's last step ending at σ_min as in the diffusers 0.18 it pins (requirements.txt; `final_sigmas="sigma_min"`),
    an edge smoother comparing grey levels (utils/mask_utils.py ~252-255: `edge_difference="grey"`) and blending
    M_f XOR M_f* (inference.py ~125-129, a uint8 subtraction that wraps: `edge_band="official"`). The null-text
    attention, the cut at 108, the shipped action classifier and the removal of regions under 64 px from M_b and
    M_f (utils/mask_utils.py ~161-163) are ZoneConfig's defaults already."""
    zone = ZoneConfig(sampler="dpm-solver++", final_sigmas="sigma_min", edge_difference="grey", edge_band="official")
    values = dict(steps=20, guidance_scale=7.5, image_guidance_scale=1.5, zone=zone)
    return EditorConfig(**{**values, **settings})


def official_vimaedit_editor_config(**settings) -> EditorConfig:
    """ViMAEdit's official run (see `official_vimaedit_config`) as an EditorConfig."""
    return EditorConfig(**{"vimaedit": official_vimaedit_config(), **settings})
