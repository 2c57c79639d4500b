"""Per-Gaussian operations of the frozen-background strategy (strategy.py), in gsplat's style (strategy/ops.py):
plain functions over the Gaussians' parameter dict, their optimisers and the strategy's state; the strategy imports
these, never the reverse."""

from __future__ import annotations

from typing import Any, Dict, Optional, Union

import torch

Params = Union[Dict[str, torch.nn.Parameter], torch.nn.ParameterDict]


def frozen_mask(state: Dict[str, Any]) -> Optional[torch.Tensor]:
    """The state's [N] bool mask of frozen Gaussians, or None before anything was frozen."""
    return state.get("frozen")


@torch.no_grad()
def freeze_rows(params: Params, optimizers: Dict[str, torch.optim.Optimizer], state: Dict[str, Any],
                mask: torch.Tensor) -> None:
    """Freeze the Gaussians of `mask` [N] bool (added to those already frozen): their optimiser moments are zeroed,
    so with the zero gradients detach_frozen gives them Adam's step is 0 / (0 + eps): they stay exactly where they
    are."""
    frozen = frozen_mask(state)
    state["frozen"] = mask.clone() if frozen is None else frozen | mask
    for name in params:
        for moments in optimizers[name].state.values():  # one entry per parameter: Adam's exp_avg, exp_avg_sq
            for key, value in moments.items():
                if key != "step" and isinstance(value, torch.Tensor) and value.shape[:1] == mask.shape:
                    value[state["frozen"]] = 0


def detach_frozen(values: torch.Tensor, state: Dict[str, Any]) -> torch.Tensor:
    """A Gaussian parameter [N, ...] as the renderer should see it: the frozen rows detached, so the loss sends them
    no gradient (the trainer steps the optimisers right after backward: no hook of nerfstudio's sits between)."""
    frozen = frozen_mask(state)
    if frozen is None:
        return values
    return torch.where(frozen.view(-1, *([1] * (values.dim() - 1))), values.detach(), values)
