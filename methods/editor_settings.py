"""The editor settings of the 3D methods (`wys` and `wys-splat` presets share them)."""

from __future__ import annotations

from nerf_edit.config.editor import EditorConfig


def wys_editing(dtype: str = "fp32") -> EditorConfig:
    """The editor settings of the 3D method where they differ from the 2D editor's (official WYS 3D code,
    SamsungLabs/WatchYourSteps in2n/in2n_config.py and in2n_pipeline.py)."""
    return EditorConfig(
        dtype=dtype,
        steps=20,  # in2n_config.py: diffusion_steps 20 (2D: 100)
        image_guidance_scale=1.5,  # in2n_config.py: image_guidance_scale 1.5 (2D: 1.0)
        iqr_k=2.0,  # in2n_pipeline.py: relevance outliers clipped at Q3 + 2·IQR (2D: 1.5)
        latent_mask="nearest",  # in2n_pipeline.py ~175: the mask reaches the latents by nearest downsampling
    )
