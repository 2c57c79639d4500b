"""Checks of the settings every editor shares (`EditorConfig`'s own fields), each named by its flag, run before any
model loads. What an editor, a localiser or a system reads besides is checked by its own `check_settings`
(`nerf_edit.editing.editor.check_edit_settings` puts them together for a command)."""

from __future__ import annotations

from nerf_edit.errors import UsageError
from nerf_edit.model_ids import DTYPES
from nerf_edit.validate import check_at_least, check_choice, check_device, check_range


def check_editor_config(config, prefix: str = "--") -> None:
    """EditorConfig's shared settings, named by flag: `prefix` + name (`--steps` for nerf-edit-image,
    `--pipeline.editing.steps` for ns-train wys)."""
    check_at_least(f"{prefix}steps", config.steps, 1)
    check_range(f"{prefix}guidance-scale", config.guidance_scale, 0)
    check_range(f"{prefix}image-guidance-scale", config.image_guidance_scale, 0)
    check_range(f"{prefix}tau", config.tau, 0, 1)
    check_at_least(f"{prefix}dilate-px", config.dilate_px, 0)
    check_at_least(f"{prefix}feather-px", config.feather_px, 0)
    check_range(f"{prefix}relevance-timestep", config.relevance_timestep, 0, 1, low_open=True)
    check_at_least(f"{prefix}relevance-samples", config.relevance_samples, 1)
    check_range(f"{prefix}iqr-k", config.iqr_k, 0)
    check_choice(f"{prefix}start-from", config.start_from, ("auto", "input", "noise"))
    check_choice(f"{prefix}latent-mask", config.latent_mask, ("any", "nearest"))
    check_device(config.device, f"{prefix}device")
    check_dtype(config.dtype, f"{prefix}dtype")


def check_dtype(dtype: str, name: str = "--dtype") -> None:
    """`auto` or a dtype name (model_ids.DTYPES)."""
    if dtype != "auto" and dtype not in DTYPES:
        raise UsageError(f"unknown {name} {dtype!r}: use one of {sorted(DTYPES)} or auto")
