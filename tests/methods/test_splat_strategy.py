"""The frozen-background strategy (methods/splat/strategy.py, ops.py) in splatfacto's training loop, on the CPU
renderer: frozen Gaussians come out bit-identical through Adam steps, growth, pruning and opacity resets, while the
others are trained, grown and pruned as gsplat's DefaultStrategy does."""

import re

import torch
from gsplat.strategy import DefaultStrategy

from nerf_edit_methods.splat.ops import detach_frozen, freeze_rows
from nerf_edit_methods.splat.rasterize import rasterize_torch
from nerf_edit_methods.splat.strategy import FrozenBackgroundStrategy

WIDTH, HEIGHT, COUNT = 16, 12, 24
FAINT = [1, 2, 5, 6]  # opacity 0.02, under the pruning threshold (0.05): 1 and 5 are frozen, 2 and 6 are not
# refine every 3 steps from step 3 (grow anything with a screen gradient, prune the faint), reset opacities at 9
DENSIFY = dict(prune_opa=0.05, grow_grad2d=1e-9, grow_scale3d=0.2, refine_start_iter=0, refine_every=3, reset_every=9,
               pause_refine_after_reset=0, refine_stop_iter=1000, verbose=True)


def scene():
    g = torch.Generator().manual_seed(0)
    opacities = torch.full((COUNT, 1), 0.6)
    opacities[FAINT] = 0.02
    params = torch.nn.ParameterDict({
        "means": (torch.rand(COUNT, 3, generator=g) - 0.5) * torch.tensor([1.0, 0.8, 1.0]),  # [N, 3]
        "scales": torch.log(0.1 + 0.2 * torch.rand(COUNT, 3, generator=g)),  # [N, 3]
        "quats": torch.randn(COUNT, 4, generator=g),  # [N, 4]
        "opacities": torch.logit(opacities),  # [N, 1] as splatfacto
        "colors": torch.rand(COUNT, 3, generator=g),  # [N, 3]
    })
    target = torch.rand(1, HEIGHT, WIDTH, 3, generator=g)  # [1, H, W, 3]
    return params, target


def camera():
    viewmat = torch.eye(4)
    viewmat[2, 3] = 4.0
    K = torch.tensor([[20.0, 0, WIDTH / 2], [0, 20.0, HEIGHT / 2], [0, 0, 1]])
    return viewmat[None], K[None]


def train(strategy, steps: int, freeze_at: int = -1, detach: bool = True):
    """Steps 1 .. steps - 1 in splatfacto's order: render, step_pre_backward, backward, optimiser steps, step_post_backward. At `freeze_at`
    the even Gaussians are frozen (after some steps, so their Adam moments are not zero); `detach` False renders
    them with their gradients. -> params, state, the frozen rows' values when frozen"""
    params, target = scene()
    optimizers = {name: torch.optim.Adam([p], lr=0.01, eps=1e-15) for name, p in params.items()}
    state = strategy.initialize_state()
    viewmats, Ks = camera()
    frozen_values = None
    for step in range(1, steps):  # from 1: gsplat also resets opacities at step 0, before anything is frozen
        if step == freeze_at:
            freeze_rows(params, optimizers, state, torch.arange(COUNT) % 2 == 0)
            frozen_values = {name: p.detach()[state["frozen"]].clone() for name, p in params.items()}
        seen = {name: detach_frozen(p, state) if detach else p for name, p in params.items()}
        image, _, info = rasterize_torch(seen["means"], seen["quats"], torch.exp(seen["scales"]),
                                         torch.sigmoid(seen["opacities"]).squeeze(-1), seen["colors"], viewmats, Ks,
                                         WIDTH, HEIGHT)
        strategy.step_pre_backward(params, optimizers, state, step, info)
        (image - target).abs().mean().backward()
        for optimizer in optimizers.values():
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        strategy.step_post_backward(params, optimizers, state, step, info, packed=False)
    return params, state, frozen_values


def pruned(output: str) -> int:
    return sum(int(n) for n in re.findall(r"(\d+) GSs pruned", output))


def test_frozen_gaussians_stay_bit_identical_while_the_others_train_grow_and_are_pruned(capsys):
    params, state, frozen_values = train(FrozenBackgroundStrategy(**DENSIFY), steps=11, freeze_at=2)
    frozen = state["frozen"]
    assert int(frozen.sum()) == COUNT // 2 and len(frozen) == len(params["means"])
    for name, values in frozen_values.items():
        assert torch.equal(params[name].detach()[frozen], values), name  # steps, growth, pruning, the reset at 9
    assert len(params["means"]) > COUNT  # the others grew
    assert pruned(capsys.readouterr().out) >= 2  # and the faint unfrozen ones (2, 6) were pruned
    # the frozen faint ones (1, 5) are still there, at their opacity: below the pruning threshold
    faint_frozen = torch.sigmoid(params["opacities"].detach()[frozen]).flatten() < 0.05
    assert int(faint_frozen.sum()) == 2
    # and the reset at step 9 lowered the opacity of every Gaussian it could reach but the frozen ones
    unfrozen = torch.sigmoid(params["opacities"].detach()[~frozen]).flatten()
    assert unfrozen.max() < 0.5 and torch.sigmoid(params["opacities"].detach()[frozen]).max() > 0.5


def kept(params, state, frozen_values) -> bool:
    """Whether the rows frozen at the start are all there, bit for bit."""
    frozen = state["frozen"]
    return int(frozen.sum()) == COUNT // 2 and all(
        torch.equal(params[name].detach()[frozen], values) for name, values in frozen_values.items())


def test_each_part_of_the_freezing_is_needed():
    """Controls on the same scene and steps: rendered with their gradients, the frozen rows move (Adam's moments are
    zero, its gradients are not); under gsplat's DefaultStrategy (the mask still follows the rows through its ops)
    they are grown, the faint ones pruned, and the opacity reset reaches them."""
    assert not kept(*train(FrozenBackgroundStrategy(**DENSIFY), steps=11, freeze_at=2, detach=False))
    params, state, frozen_values = train(DefaultStrategy(**DENSIFY), steps=11, freeze_at=2)
    assert not kept(params, state, frozen_values)
    assert torch.sigmoid(params["opacities"].detach()[state["frozen"]]).max() < 0.5  # the reset at step 9
