"""Densification that leaves a frozen background alone: gsplat's DefaultStrategy with a per-Gaussian `frozen` mask.

`wys-splat` freezes the Gaussians its relevance field finds irrelevant, so the edited scene's background is the
reconstruction's, bit for bit. What could move a frozen Gaussian, and how each is stopped:
- the optimiser step: `ops.freeze_rows` zeroes the frozen rows' Adam moments once, and the renderer sees them through
  `ops.detach_frozen` (no gradient), so Adam's update there is 0 / (0 + eps) = 0 exactly;
- growth (duplicate / split): their screen-space statistics (`grad2d`, `count`, `radii`) are zeroed before the
  DefaultStrategy decides, so they are never above its thresholds;
- pruning: `_prune_gs` (the DefaultStrategy's criteria, gsplat 1.4.0 strategy/default.py lines 313-340) skips them;
- the periodic opacity reset (default.py lines 194-200): their opacities are put back after it.
The mask lives in the strategy's state, which gsplat's ops (duplicate, split, remove) index like every per-Gaussian
tensor (strategy/ops.py lines 111-114, 169-174, 201-204): it follows the Gaussians through densification, and the
frozen rows keep their order (ops append new Gaussians and remove rows in place).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict

import torch
from gsplat.strategy import DefaultStrategy
from gsplat.strategy.ops import remove

from nerf_edit_methods.splat.ops import Params, frozen_mask


@dataclass
class FrozenBackgroundStrategy(DefaultStrategy):
    """DefaultStrategy whose frozen Gaussians (state["frozen"], [N] bool) are neither grown, split, pruned nor reset."""

    def initialize_state(self, scene_scale: float = 1.0) -> Dict[str, Any]:
        state = super().initialize_state(scene_scale)
        state["frozen"] = None  # set by ops.freeze_rows
        return state

    def step_post_backward(self, params: Params, optimizers: Dict[str, torch.optim.Optimizer], state: Dict[str, Any],
                           step: int, info: Dict[str, Any], packed: bool = False):
        frozen = frozen_mask(state)
        if frozen is None or not bool(frozen.any()):
            return super().step_post_backward(params, optimizers, state, step, info, packed)
        opacities = params["opacities"].detach()[frozen].clone()  # [F, 1]: what the periodic reset would lower
        super().step_post_backward(params, optimizers, state, step, info, packed)
        with torch.no_grad():
            params["opacities"][state["frozen"]] = opacities  # the frozen rows, in the same order after densifying

    def _update_state(self, params: Params, state: Dict[str, Any], info: Dict[str, Any], packed: bool = False):
        super()._update_state(params, state, info, packed=packed)
        frozen = frozen_mask(state)
        if frozen is not None:
            for name in ("grad2d", "count", "radii"):  # statistics the growth decision reads
                if state.get(name) is not None:
                    state[name][frozen] = 0

    @torch.no_grad()
    def _prune_gs(self, params: Params, optimizers: Dict[str, torch.optim.Optimizer], state: Dict[str, Any],
                  step: int) -> int:
        # DefaultStrategy's criteria: faint, or (after the first opacity reset) too large in 3D or on screen
        is_prune = torch.sigmoid(params["opacities"].flatten()) < self.prune_opa  # [N]
        if step > self.reset_every:
            is_prune |= torch.exp(params["scales"]).max(dim=-1).values > self.prune_scale3d * state["scene_scale"]
            if step < self.refine_scale2d_stop_iter:
                is_prune |= state["radii"] > self.prune_scale2d
        frozen = frozen_mask(state)
        if frozen is not None:
            is_prune &= ~frozen
        count = int(is_prune.sum().item())
        if count > 0:
            remove(params=params, optimizers=optimizers, state=state, mask=is_prune)
        return count
