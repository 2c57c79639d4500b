"""`wys-reconstruct`: the scene before any edit, offline, as a checkpoint that `ns-train wys --load-dir` takes.

Stock `ns-train nerfacto` downloads LPIPS's AlexNet when its model is built and stops on an offline machine;
this is the same nerfacto (with the relevance field `wys` needs, left untrained) through our model, whose LPIPS
falls back offline. No editor is built, so it needs no prompt and no diffusion weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Type

from nerf_edit_methods.pipeline import WYSPipeline, WYSPipelineConfig


@dataclass
class WYSReconstructPipelineConfig(WYSPipelineConfig):
    """Reconstruction only: the WYS pipeline with edits never started (prompt and editor settings are unused)."""

    _target: Type = field(default_factory=lambda: WYSReconstructPipeline)
    makes_edits: ClassVar[bool] = False


class WYSReconstructPipeline(WYSPipeline):
    """WYSPipeline without an editor (its config makes no edits): it trains the scene as it is, with nerfacto's
    losses. Its checkpoint has wys's keys."""
