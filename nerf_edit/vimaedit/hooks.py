"""ViMAEdit's spatially adaptive variance as a step hook for any IP2P editor (`--adaptive-variance`, or by import
path in `--step-hooks`): DDIM noise (η = 1) where the edit's soft map is above ViMAEdit's critical threshold,
deterministic DDIM elsewhere."""

from __future__ import annotations

import torch

from nerf_edit.core.guided import Step
from nerf_edit.vimaedit.ops import adaptive_variance_step


class AdaptiveVariance:
    """Step hook built per edit as `AdaptiveVariance(config, ip2p)` (the step-hook plug-in signature). Its critical
    region is the edit's `region` above `config.vimaedit.critical_threshold` (0.8): a latent cell is critical when any
    of its pixels is. An edit without a soft map (a mask given by the caller) is left as it is."""

    def __init__(self, config, ip2p):
        self.scheduler = ip2p.scheduler
        self.threshold = config.vimaedit.critical_threshold

    def __call__(self, step: Step) -> torch.Tensor:
        if step.region is None:
            return step.latents
        return adaptive_variance_step(self.scheduler, step, step.region > self.threshold, 1.0, step.generator)
