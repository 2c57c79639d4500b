"""The frozen-background strategy (methods/splat/strategy.py, ops.py) in splatfacto's training loop, on the CPU
renderer: with nothing frozen it trains, grows, prunes and resets exactly as gsplat's own DefaultStrategy (the
reference: gsplat 1.4.0's code, not ours); frozen Gaussians come out bit-identical through Adam steps, growth,
pruning and opacity resets, and each part of the freezing is needed for that."""

import re

import pytest
import torch
from gsplat.strategy import DefaultStrategy
from gsplat.strategy.ops import reset_opa

import nerf_edit_methods.splat.strategy as strategy_module
from nerf_edit_methods.splat import ops
from nerf_edit_methods.splat.ops import detach_frozen, freeze_rows
from nerf_edit_methods.splat.rasterize import rasterize_torch
from nerf_edit_methods.splat.strategy import FrozenBackgroundStrategy

WIDTH, HEIGHT, COUNT = 16, 12, 24
FAINT = [1, 2, 5, 6]  # opacity 0.02, under the pruning threshold (0.05): 1 and 5 are frozen, 2 and 6 are not
# refine every 3 steps from step 3 (grow anything with a screen gradient, prune the faint), reset opacities at 9
DENSIFY = dict(prune_opa=0.05, grow_grad2d=1e-9, grow_scale3d=0.2, refine_start_iter=0, refine_every=3, reset_every=9,
               pause_refine_after_reset=0, refine_stop_iter=1000, verbose=True)
# every rule at once: a higher gradient threshold (some grow, some not), the screen-size split and prune until step
# 11, a pause of 2 steps after each reset, the 3D-size prune after the first reset (step 12), revised opacities
EVERY_RULE = dict(prune_opa=0.05, grow_grad2d=2e-3, grow_scale3d=0.25, grow_scale2d=0.2, prune_scale3d=0.35,
                  prune_scale2d=0.6, refine_scale2d_stop_iter=11, refine_start_iter=1, refine_every=3, reset_every=6,
                  pause_refine_after_reset=2, refine_stop_iter=1000, revised_opacity=True, verbose=True)


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


def train(strategy, steps: int, freeze_at: int = -1, detach: bool = True, first: int = 1, freeze=freeze_rows):
    """Steps `first` .. steps - 1 in splatfacto's order: render, step_pre_backward, backward, optimiser steps,
    step_post_backward (split draws from torch's generator: seeded here). At `freeze_at` the even Gaussians are
    frozen by `freeze` (after some steps, so their Adam moments are not zero); `detach` False renders them with
    their gradients. -> params, state, the frozen rows' values when frozen"""
    torch.manual_seed(1)
    params, target = scene()
    optimizers = {name: torch.optim.Adam([p], lr=0.01, eps=1e-15) for name, p in params.items()}
    state = strategy.initialize_state()
    viewmats, Ks = camera()
    frozen_values = None
    for step in range(first, steps):
        if step == freeze_at:
            freeze(params, optimizers, state, torch.arange(COUNT) % 2 == 0)
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


def grown(output: str) -> tuple[int, int]:
    return (sum(int(n) for n in re.findall(r"(\d+) GSs duplicated", output)),
            sum(int(n) for n in re.findall(r"(\d+) GSs split", output)))


@pytest.mark.parametrize("settings", [DENSIFY, EVERY_RULE], ids=["densify", "every-rule"])
def test_with_nothing_frozen_training_equals_gsplats_default_strategy_bit_for_bit(settings, capsys):
    """Steps 0 .. 13 from step 0 (gsplat 1.4.0 resets opacities at step 0 too): duplicates, splits, prunes (by
    opacity, 3D and screen size), opacity resets and the pause after them, all as gsplat's DefaultStrategy does."""
    ours, our_state, _ = train(FrozenBackgroundStrategy(**settings), steps=14, first=0)
    our_log = capsys.readouterr().out
    theirs, their_state, _ = train(DefaultStrategy(**settings), steps=14, first=0)
    assert our_log == capsys.readouterr().out  # the same counts at the same steps
    assert min(grown(our_log)) > 0 and pruned(our_log) > 0 and len(ours["means"]) != COUNT  # every rule acted
    for name in theirs:
        assert torch.equal(ours[name], theirs[name]), name
    for name in ("grad2d", "count", "radii"):
        assert (our_state.get(name) is None) == (their_state.get(name) is None), name
        if their_state.get(name) is not None:
            assert torch.equal(our_state[name], their_state[name]), name


def synthetic_info(count: int, cameras: int, packed: bool, seed: int) -> dict:
    """A rendering's info as gsplat's rasterization returns it (2D means with .grad and, as its CUDA backward
    attaches, .absgrad; radii; packed: [nnz] entries with gaussian_ids), with random values: the statistics' inputs
    the CPU renderer can't give."""
    g = torch.Generator().manual_seed(seed)
    radii = torch.randint(0, 4, (cameras, count), generator=g)  # [C, N], 0: not visible
    grad = (torch.rand(cameras, count, 2, generator=g) - 0.5) * 4e-4  # [C, N, 2]
    absgrad = grad.abs() * (1 + 3 * torch.rand(cameras, count, 2, generator=g))
    ids = None
    if packed:
        camera_ids, ids = torch.where(radii > 0)
        radii, grad, absgrad = radii[camera_ids, ids], grad[camera_ids, ids], absgrad[camera_ids, ids]
    means2d = torch.zeros_like(grad, requires_grad=True)
    means2d.grad, means2d.absgrad = grad, absgrad
    return dict(means2d=means2d, radii=radii, width=40, height=30, n_cameras=cameras, gaussian_ids=ids)


@pytest.mark.parametrize("absgrad", [False, True])
@pytest.mark.parametrize("packed", [False, True])
def test_absgrad_and_packed_statistics_lead_to_gsplats_decisions(absgrad, packed):
    """Statistics from gsplat's CUDA kind of info (absolute gradients, packed entries), 12 steps with refinements
    and resets: the same parameters and statistics as DefaultStrategy's."""
    settings = dict(prune_opa=0.3, grow_grad2d=2e-4, grow_scale3d=0.2, grow_scale2d=0.05, prune_scale3d=0.5,
                    prune_scale2d=0.08, refine_scale2d_stop_iter=7, refine_start_iter=1, refine_every=2,
                    reset_every=5, absgrad=absgrad)
    results = []
    for strategy in (FrozenBackgroundStrategy(**settings), DefaultStrategy(**settings)):
        torch.manual_seed(2)
        params, _ = scene()
        optimizers = {name: torch.optim.Adam([p], lr=0.01) for name, p in params.items()}
        state = strategy.initialize_state(scene_scale=1.3)
        for step in range(12):
            info = synthetic_info(len(params["means"]), cameras=2, packed=packed, seed=step)
            strategy.step_post_backward(params, optimizers, state, step, info, packed=packed)
        results.append((params, state))
    (ours, our_state), (theirs, their_state) = results
    assert len(theirs["means"]) != COUNT
    for name in theirs:
        assert torch.equal(ours[name], theirs[name]), name
    for name in ("grad2d", "count", "radii"):
        assert torch.equal(our_state[name], their_state[name]), name


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


def mark_frozen_only(params, optimizers, state, mask):
    """freeze_rows without its moment zeroing: the mask alone."""
    state["frozen"] = mask.clone()


def unmasked(decide):
    """A decision of ops.py that ignores the free mask."""
    return lambda *args, free=None, **kwargs: decide(*args, **kwargs)


CONTROLS = {
    "detaching off": dict(detach=False),
    "moments not zeroed": dict(freeze=mark_frozen_only),
    "growth not masked": dict(patch=("grow_masks", unmasked(ops.grow_masks))),
    "pruning not masked": dict(patch=("prune_mask", unmasked(ops.prune_mask))),
    "opacity reset not restored": dict(patch=("reset_free_opacities", reset_opa)),
}


@pytest.mark.parametrize("part", list(CONTROLS))
def test_each_part_of_the_freezing_is_needed(part, monkeypatch):
    """Controls on the same scene and steps, each with one part of the freezing taken away: the frozen rows are no
    longer all there bit for bit. Detaching off: rendered with their gradients, they move (Adam's moments are zero,
    its gradients are not); moments not zeroed: Adam's momentum moves them with zero gradients; growth not masked:
    they are duplicated (copies frozen too) or split (replaced); pruning not masked: the faint ones go; the opacity
    reset not restored: the reset at step 9 lowers theirs."""
    control = dict(CONTROLS[part])
    patch = control.pop("patch", None)
    if patch is not None:
        monkeypatch.setattr(strategy_module, *patch)
    assert not kept(*train(FrozenBackgroundStrategy(**DENSIFY), steps=11, freeze_at=2, **control))
    monkeypatch.undo()
    assert kept(*train(FrozenBackgroundStrategy(**DENSIFY), steps=11, freeze_at=2))  # the same run, intact


def test_clone_relevant_seeds_jittered_copies_of_relevant_free_gaussians():
    """n = 7 new Gaussians from the 3 relevant free ones (of 5 relevant, 2 of them frozen): appended, each a copy of
    one of them (each drawn 2 or 3 times) but its mean moved by about its own extent; not frozen, with fresh
    moments; every existing row, frozen or not, unchanged."""
    params, _ = scene()
    optimizers = {name: torch.optim.Adam([p], lr=0.01) for name, p in params.items()}
    sum(p.sum() for p in params.values()).backward()
    for optimizer in optimizers.values():
        optimizer.step()
    state = FrozenBackgroundStrategy().initialize_state()
    freeze_rows(params, optimizers, state, torch.arange(COUNT) < 12)
    before = {name: p.detach().clone() for name, p in params.items()}
    relevant = torch.zeros(COUNT, dtype=torch.bool)
    relevant[[3, 7, 14, 15, 20]] = True  # 3 and 7 frozen
    added = ops.clone_relevant(params, optimizers, state, relevant, 7, generator=torch.Generator().manual_seed(0))
    assert torch.equal(added, torch.arange(COUNT, COUNT + 7)) and len(params["means"]) == COUNT + 7
    assert len(state["frozen"]) == COUNT + 7 and not state["frozen"][COUNT:].any()
    for name, values in before.items():
        assert torch.equal(params[name].detach()[:COUNT], values), name
    # each new row's original: the row with its colour (random, so unique)
    sources = [int(torch.nonzero((before["colors"] == params["colors"][row]).all(-1))[0]) for row in added.tolist()]
    assert sorted(set(sources)) == [14, 15, 20] and max(sources.count(i) for i in (14, 15, 20)) <= 3
    for row, source in zip(added.tolist(), sources):
        for name in ("scales", "quats", "opacities", "colors"):
            assert torch.equal(params[name][row], before[name][source]), name
        offset = (params["means"][row] - before["means"][source]).norm()
        assert 0 < offset < 3 * torch.exp(before["scales"][source]).max()
    moments = optimizers["means"].state[params["means"]]
    assert (moments["exp_avg"][COUNT:] == 0).all() and (moments["exp_avg"][12:COUNT] != 0).any()
    assert len(ops.clone_relevant(params, optimizers, state, torch.zeros(COUNT + 7, dtype=torch.bool), 3)) == 0
