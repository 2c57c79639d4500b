"""Densification that leaves a frozen background alone: gsplat 1.4.0's DefaultStrategy rebuilt from gsplat's public
pieces (the `Strategy` base, `gsplat.strategy.ops`), with a per-Gaussian `frozen` mask and an edit phase.

`wys-splat` freezes the Gaussians its relevance field finds irrelevant, so the edited scene's background is the
reconstruction's, bit for bit. What could move a frozen Gaussian, and how each is stopped:
- the optimiser step: `ops.freeze_rows` zeroes the frozen rows' Adam moments once, and the renderer sees them through
  `ops.detach_frozen` (no gradient), so Adam's update there is 0 / (0 + eps) = 0 exactly;
- growth (duplicate / split) and pruning: the decisions (`ops.grow_masks`, `ops.prune_mask`) are ANDed with the
  free (not frozen) Gaussians, as GaussianEditor restricts densification to its traced mask;
- the periodic opacity reset: `ops.reset_free_opacities` puts the frozen rows' opacities back after gsplat's reset.
The mask lives in the strategy's state, which gsplat's ops (duplicate, split, remove) index like every per-Gaussian
tensor (strategy/ops.py lines 111-114, 169-174, 201-204): it follows the Gaussians through densification, and the
frozen rows keep their order (ops append new Gaussians and remove rows in place).

With nothing frozen and no edit phase every decision is DefaultStrategy 1.4.0's (gsplat/strategy/default.py), in
its order: the same grow, split and prune masks, the same statistics and their reset, the same opacity reset
(including the one at step 0). Nothing private of gsplat's is called or overridden, so the class does not depend on
DefaultStrategy's internal method signatures (gsplat >= 1.5 adds a `scene` argument to them).

**Edit phase.** A run continued from a reconstruction of 30000 steps is past refine_stop_iter (splatfacto's
stop_split_at, 15000): DefaultStrategy never densifies it again. `start_edit_phase(state, step)` records the step in
`state["edit_start"]`; from then on the refine window (0, refine_stop_iter), the refine period and the opacity-reset
period are counted from that step (the first refinement one refine period into the edit: the scene is trained, only
what the edit adds must grow), except that the phase's own step 0 does not reset opacities (gsplat >= 1.5's rule
`step > 0`: the edit starts from a trained scene, not from a fresh one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Literal, Optional

import torch
from gsplat.strategy import Strategy

from nerf_edit_methods.splat.ops import (
    Optimizers,
    Params,
    free_mask,
    grow,
    grow_masks,
    prune,
    prune_mask,
    reset_free_opacities,
    update_screen_statistics,
)


@dataclass
class FrozenBackgroundStrategy(Strategy):
    """DefaultStrategy's rules (fields and defaults as gsplat 1.4.0 default.py lines 79-94; splatfacto maps its config
    onto them) whose frozen Gaussians (state["frozen"], [N] bool) are neither grown, split, pruned nor reset, and
    that can refine again in an edit phase (state["edit_start"])."""

    prune_opa: float = 0.005
    grow_grad2d: float = 0.0002
    grow_scale3d: float = 0.01
    grow_scale2d: float = 0.05
    prune_scale3d: float = 0.1
    prune_scale2d: float = 0.15
    refine_scale2d_stop_iter: int = 0
    refine_start_iter: int = 500
    refine_stop_iter: int = 15_000
    reset_every: int = 3000
    refine_every: int = 100
    pause_refine_after_reset: int = 0
    absgrad: bool = False
    revised_opacity: bool = False
    verbose: bool = False
    key_for_gradient: Literal["means2d", "gradient_2dgs"] = "means2d"

    def initialize_state(self, scene_scale: float = 1.0) -> Dict[str, Any]:
        """DefaultStrategy's state (default.py lines 107-110; statistics created at the first step) plus `frozen`
        (set by ops.freeze_rows) and `edit_start` (set by start_edit_phase; an int, so gsplat's ops leave it)."""
        state: Dict[str, Any] = {"grad2d": None, "count": None, "scene_scale": scene_scale}
        if self.refine_scale2d_stop_iter > 0:
            state["radii"] = None
        state.update(frozen=None, edit_start=None)
        return state

    def check_sanity(self, params: Params, optimizers: Optimizers):
        """As DefaultStrategy's (default.py lines 133-136): one optimiser per parameter, the geometry present."""
        super().check_sanity(params, optimizers)
        for key in ["means", "scales", "quats", "opacities"]:
            assert key in params, f"{key} is required in params but missing."

    def step_pre_backward(self, params: Params, optimizers: Optimizers, state: Dict[str, Any], step: int,
                          info: Dict[str, Any]):
        """Keep the 2D means' gradient for the statistics (default.py lines 147-150)."""
        assert self.key_for_gradient in info, "The 2D means of the Gaussians is required but missing."
        info[self.key_for_gradient].retain_grad()

    def start_edit_phase(self, state: Dict[str, Any], step: int) -> None:
        """Count the refine window and the reset period from `step` on; the statistics start afresh."""
        state["edit_start"] = int(step)
        for name in ("grad2d", "count", "radii"):
            if name in state:
                state[name] = None  # created again, at the current count, at the next statistics update

    def phase_step(self, state: Dict[str, Any], step: int) -> int:
        """The step the rules count with: the trainer's, or in an edit phase the steps since it started."""
        start: Optional[int] = state.get("edit_start")
        return step if start is None else step - start

    def step_post_backward(self, params: Params, optimizers: Optimizers, state: Dict[str, Any], step: int,
                           info: Dict[str, Any], packed: bool = False):
        """DefaultStrategy.step_post_backward's sequence (default.py lines 162-201) in the phase's steps: nothing
        after refine_stop_iter; the statistics; every refine_every steps within the window (and not within
        pause_refine_after_reset steps of a reset) grow, prune and zero the statistics; every reset_every steps
        reset the opacities to 2·prune_opa."""
        phase = self.phase_step(state, step)
        if phase < 0 or phase >= self.refine_stop_iter:
            return
        update_screen_statistics(state, info, len(params["means"]), absgrad=self.absgrad, packed=packed,
                                 key=self.key_for_gradient, track_radii=self.refine_scale2d_stop_iter > 0)
        # an edit phase refines from its first period on: the scene is trained, only what the edit adds must grow
        start = self.refine_start_iter if state.get("edit_start") is None else 0
        if (phase > start and phase % self.refine_every == 0
                and phase % self.reset_every >= self.pause_refine_after_reset):
            self.refine(params, optimizers, state, step, phase)
        if phase % self.reset_every == 0 and (phase > 0 or state.get("edit_start") is None):
            reset_free_opacities(params, optimizers, state, value=self.prune_opa * 2.0)

    @torch.no_grad()
    def refine(self, params: Params, optimizers: Optimizers, state: Dict[str, Any], step: int, phase: int) -> None:
        """Grow, then prune, the free Gaussians (default.py lines 173-186, the masks of _grow_gs lines 271-287 and
        _prune_gs lines 320-334), then zero the statistics (lines 188-193)."""
        screen_rule = phase < self.refine_scale2d_stop_iter  # the screen-size criteria, while on
        radii = state.get("radii") if screen_rule else None
        is_dupli, is_split = grow_masks(state["grad2d"], state["count"], params["scales"], state["scene_scale"],
                                        self.grow_grad2d, self.grow_scale3d, radii, self.grow_scale2d,
                                        free=free_mask(state))
        n_dupli, n_split = grow(params, optimizers, state, is_dupli, is_split, self.revised_opacity)
        if self.verbose:
            print(f"Step {step}: {n_dupli} GSs duplicated, {n_split} GSs split. "
                  f"Now having {len(params['means'])} GSs.")
        after_reset = phase > self.reset_every  # the size criteria only after the first opacity reset
        is_prune = prune_mask(params["opacities"], params["scales"], state["scene_scale"], self.prune_opa,
                              self.prune_scale3d if after_reset else None,
                              state.get("radii") if screen_rule else None, self.prune_scale2d, free=free_mask(state))
        n_prune = prune(params, optimizers, state, is_prune)
        if self.verbose:
            print(f"Step {step}: {n_prune} GSs pruned. Now having {len(params['means'])} GSs.")
        state["grad2d"].zero_()
        state["count"].zero_()
        if self.refine_scale2d_stop_iter > 0:
            state["radii"].zero_()
        torch.cuda.empty_cache()
