"""Checks of a whole EditorConfig (every setting named by its flag) and of editor and localiser specs, run before
any model loads."""

from __future__ import annotations

from typing import Optional

from nerf_edit.config.vimaedit import check_vimaedit_config
from nerf_edit.config.zone import check_zone_config
from nerf_edit.errors import UsageError
from nerf_edit.models.loading import MODEL_INDEX, check_dtype, check_model
from nerf_edit.plugins import import_object
from nerf_edit.registry import EDITORS, editor_class, localizer_class
from nerf_edit.validate import check_at_least, check_choice, check_device, check_range


def check_localizer(spec: str, name: str = "--localizer") -> None:
    """`auto`, a registered localiser, or an import path to one (imported here, so a typo stops now)."""
    if spec != "auto":
        localizer_class(spec, name)


def check_editor_config(config, check_models: bool = True, uses_zone: bool = False, prefix: str = "--",
                        model_flag: Optional[str] = None) -> None:
    """Every EditorConfig setting, named by its flag: `prefix` + name (`--steps` for nerf-edit-image,
    `--pipeline.editing.steps` for ns-train wys). `uses_zone`: the editor needs ZONE's models whatever the
    localizer (the zone editor); `check_models=False` when the caller passes models built in code."""
    check_at_least(f"{prefix}steps", config.steps, 1)
    check_range(f"{prefix}guidance-scale", config.guidance_scale, 0)
    check_range(f"{prefix}image-guidance-scale", config.image_guidance_scale, 0)
    check_range(f"{prefix}tau", config.tau, 0, 1)
    check_at_least(f"{prefix}dilate-px", config.dilate_px, 0)
    check_at_least(f"{prefix}feather-px", config.feather_px, 0)
    check_range(f"{prefix}relevance-timestep", config.relevance_timestep, 0, 1, low_open=True)
    check_at_least(f"{prefix}relevance-samples", config.relevance_samples, 1)
    check_range(f"{prefix}iqr-k", config.iqr_k, 0)
    check_localizer(config.localizer, f"{prefix}localizer")
    for spec in config.step_hooks:
        import_object(spec, f"{prefix}step-hooks")
    check_choice(f"{prefix}start-from", config.start_from, ("auto", "input", "noise"))
    check_choice(f"{prefix}latent-mask", config.latent_mask, ("any", "nearest"))
    check_device(config.device, f"{prefix}device")
    check_dtype(config.dtype, f"{prefix}dtype")
    if check_models:
        check_model(config.model, model_flag or f"{prefix}model", MODEL_INDEX)
    check_zone_config(config.zone, f"{prefix}zone.", main_model=config.model,
                      check_models=check_models and (uses_zone or config.localizer == "zone"))
    if hasattr(config, "vimaedit"):
        check_vimaedit_config(config.vimaedit, f"{prefix}vimaedit.")


def check_editor_spec(spec: str, name: str = "--editor") -> type:
    """The editor class a name or import path gives (imports a plug-in, loads no model)."""
    if spec not in EDITORS and ":" not in spec:
        raise UsageError(f"unknown {name} {spec!r}: use one of {sorted(EDITORS)} or an import path 'package.module:Class'")
    return editor_class(spec)


def editor_uses_zone(cls: type, config) -> bool:
    return bool(getattr(cls, "uses_zone", False)) or config.localizer == "zone" or (
        config.localizer == "auto" and getattr(cls, "default_localizer", None) == "zone")
