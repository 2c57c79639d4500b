"""Per-Gaussian operations of the frozen-background strategy (strategy.py), in gsplat's style (strategy/ops.py):
plain functions over the Gaussians' parameter dict, their optimisers and the strategy's state, or over per-Gaussian
tensors; the strategy imports these, never the reverse.

The densification decisions are gsplat 1.4.0 DefaultStrategy's (gsplat/strategy/default.py), written out as
functions of the statistics so that a `free` mask can be ANDed into each (GaussianEditor's masked densification,
gaussiansplatting/scene/gaussian_model.py lines 768-807: gradients outside the mask zeroed, pruning ANDed with it).
They change Gaussians only through gsplat's public ops (`duplicate`, `split`, `remove`, `reset_opa`), which index
every tensor of the strategy's state like the parameters (strategy/ops.py lines 111-114, 169-174, 201-204): a bool
`frozen` mask there follows the Gaussians through densification.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from gsplat.strategy.ops import duplicate, remove, reset_opa, split
from gsplat.utils import normalized_quat_to_rotmat
from nerfstudio.models.splatfacto import RGB2SH

Params = Union[Dict[str, torch.nn.Parameter], torch.nn.ParameterDict]
Optimizers = Dict[str, torch.optim.Optimizer]

# The least colour a free Gaussian's channel has while an edit runs (lift_clamped_colors): above gsplat's clamp at 0,
# so the channel has a gradient, and under a 255th, so a render changes by less than one 8-bit level there.
EDIT_COLOR_FLOOR = 1e-3


def frozen_mask(state: Dict[str, Any]) -> Optional[torch.Tensor]:
    """The state's [N] bool mask of frozen Gaussians, or None before anything was frozen."""
    return state.get("frozen")


def free_mask(state: Dict[str, Any]) -> Optional[torch.Tensor]:
    """[N] bool: the Gaussians densification may touch (not frozen); None when nothing is frozen (all free)."""
    frozen = frozen_mask(state)
    return None if frozen is None else ~frozen


@torch.no_grad()
def freeze_rows(params: Params, optimizers: Optimizers, state: Dict[str, Any], mask: torch.Tensor) -> None:
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


@torch.no_grad()
def update_screen_statistics(state: Dict[str, Any], info: Dict[str, Any], n_gaussians: int, absgrad: bool = False,
                             packed: bool = False, key: str = "means2d", track_radii: bool = False) -> None:
    """Add one rendering's screen-space statistics to the state (DefaultStrategy._update_state, default.py lines
    203-261): per Gaussian, the norm of its 2D-mean gradient in NDC units (`grad2d`, the pixel gradient times W/2
    and H/2, times the number of cameras the loss averaged over), how often it was visible (`count`), and with
    `track_radii` its largest radius as a fraction of the image (`radii`). `absgrad`: gsplat's absolute gradients
    (`info[key].absgrad`, CUDA only). `packed`: info holds [nnz] entries with `gaussian_ids`; else [C, N] (radii
    [C, N], or [C, N, 2] as in gsplat >= 1.5). `n_gaussians`: N, for creating the statistics at the first call."""
    for name in ("width", "height", "n_cameras", "radii", "gaussian_ids", key):
        assert name in info, f"{name} is required but missing."
    grads = (info[key].absgrad if absgrad else info[key].grad).clone()  # [C, N, 2] or [nnz, 2]
    grads[..., 0] *= info["width"] / 2.0 * info["n_cameras"]
    grads[..., 1] *= info["height"] / 2.0 * info["n_cameras"]
    for name in ("grad2d", "count") + (("radii",) if track_radii else ()):
        if state.get(name) is None:
            state[name] = torch.zeros(n_gaussians, device=grads.device)  # [N]
    radii = info["radii"]
    if packed:
        ids = info["gaussian_ids"]  # [nnz]
    else:
        visible = radii > 0 if radii.dim() == 2 else (radii > 0).all(-1)  # [C, N]
        ids = torch.where(visible)[1]  # [nnz]
        grads = grads[visible]  # [nnz, 2]
        radii = radii[visible] if radii.dim() == 2 else radii[visible].max(-1).values  # [nnz]
    state["grad2d"].index_add_(0, ids, grads.norm(dim=-1))
    state["count"].index_add_(0, ids, torch.ones_like(ids, dtype=torch.float32))
    if track_radii:
        state["radii"][ids] = torch.maximum(state["radii"][ids], radii / float(max(info["width"], info["height"])))


def grow_masks(grad2d: torch.Tensor, count: torch.Tensor, scales: torch.Tensor, scene_scale: float,
               grow_grad2d: float, grow_scale3d: float, radii: Optional[torch.Tensor] = None,
               grow_scale2d: float = 0.0, free: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Which Gaussians to duplicate and which to split (DefaultStrategy._grow_gs, default.py lines 271-287): the
    average NDC gradient above `grow_grad2d`, duplicated when small in 3D (largest scale <= grow_scale3d ·
    scene_scale), split when larger; with `radii` (while the screen-size rule is on) also split when larger than
    `grow_scale2d` on screen. Only `free` ones (None: all).
    grad2d [N], count [N], scales [N, 3] (log), radii [N], free [N] bool -> duplicate [N] bool, split [N] bool"""
    high = grad2d / count.clamp_min(1) > grow_grad2d  # [N]
    small = torch.exp(scales).max(dim=-1).values <= grow_scale3d * scene_scale  # [N]
    is_dupli, is_split = high & small, high & ~small
    if radii is not None:
        is_split |= radii > grow_scale2d
    if free is not None:
        is_dupli, is_split = is_dupli & free, is_split & free
    return is_dupli, is_split


def prune_mask(opacities: torch.Tensor, scales: torch.Tensor, scene_scale: float, prune_opa: float,
               prune_scale3d: Optional[float] = None, radii: Optional[torch.Tensor] = None,
               prune_scale2d: float = 0.0, free: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Which Gaussians to remove (DefaultStrategy._prune_gs, default.py lines 320-334): fainter than `prune_opa`;
    with `prune_scale3d` (after the first opacity reset) also larger than it · scene_scale in 3D, and with `radii`
    (while the screen-size rule is on) larger than `prune_scale2d` on screen. Only `free` ones (None: all).
    opacities [N, 1] (logits), scales [N, 3] (log), radii [N], free [N] bool -> [N] bool"""
    is_prune = torch.sigmoid(opacities.flatten()) < prune_opa  # [N]
    if prune_scale3d is not None:
        is_prune |= torch.exp(scales).max(dim=-1).values > prune_scale3d * scene_scale
        if radii is not None:
            is_prune |= radii > prune_scale2d
    return is_prune if free is None else is_prune & free


@torch.no_grad()
def grow(params: Params, optimizers: Optimizers, state: Dict[str, Any], is_dupli: torch.Tensor,
         is_split: torch.Tensor, revised_opacity: bool = False) -> Tuple[int, int]:
    """Duplicate, then split, as DefaultStrategy._grow_gs does (default.py lines 289-310): the copies are appended
    and never split; split Gaussians are replaced by two children at the end. is_dupli, is_split [N] bool ->
    (duplicated, split)"""
    n_dupli, n_split = int(is_dupli.sum().item()), int(is_split.sum().item())
    if n_dupli > 0:
        duplicate(params=params, optimizers=optimizers, state=state, mask=is_dupli)
    is_split = torch.cat([is_split, torch.zeros(n_dupli, dtype=torch.bool, device=is_split.device)])  # [N + D]
    if n_split > 0:
        split(params=params, optimizers=optimizers, state=state, mask=is_split, revised_opacity=revised_opacity)
    return n_dupli, n_split


@torch.no_grad()
def prune(params: Params, optimizers: Optimizers, state: Dict[str, Any], is_prune: torch.Tensor) -> int:
    """Remove the Gaussians of `is_prune` [N] bool (gsplat's `remove`); -> how many."""
    n_prune = int(is_prune.sum().item())
    if n_prune > 0:
        remove(params=params, optimizers=optimizers, state=state, mask=is_prune)
    return n_prune


@torch.no_grad()
def reset_free_opacities(params: Params, optimizers: Optimizers, state: Dict[str, Any], value: float) -> None:
    """gsplat's opacity reset (`reset_opa`: every opacity clamped to at most `value`, the opacities' Adam moments
    zeroed), with the frozen rows' opacities put back (their moments were zero already)."""
    frozen = frozen_mask(state)
    kept = None if frozen is None else params["opacities"].detach()[frozen].clone()  # [F, 1]
    reset_opa(params=params, optimizers=optimizers, state=state, value=value)
    if frozen is not None:
        params["opacities"][frozen] = kept  # reset_opa made a new Parameter: write into that one


@torch.no_grad()
def lift_clamped_colors(features_dc: torch.Tensor, rows: Optional[torch.Tensor], floor: float = EDIT_COLOR_FLOOR) -> int:
    """Raise each channel of the degree-0 colour of `rows` [N] bool (None: every Gaussian) to at least `floor`.
    gsplat turns SH into colour as max(SH·Y + 0.5, 0) (rendering.py ~392): a channel the reconstruction drove below
    0 renders as 0 and gets no gradient, so no edit can bring it back (a red ball's blue: a blue target turned it
    black). Raised to `floor` it renders (nearly) the same and can move both ways. features_dc [N, 3] (SH
    coefficients, changed in place) -> how many channels were raised."""
    least = RGB2SH(floor)  # the coefficient whose colour is `floor` (splatfacto's own conversion)
    low = features_dc < least  # [N, 3]
    if rows is not None:
        low &= rows[:, None]
    features_dc[low] = least
    return int(low.sum())


@torch.no_grad()
def clone_relevant(params: Params, optimizers: Optimizers, state: Dict[str, Any], relevant: torch.Tensor, n: int,
                   jitter: float = 0.5, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Seed `n` new Gaussians where an edit should add something: copies of relevant, free Gaussians (drawn
    uniformly, with replacement once every one was drawn), appended as gsplat's `duplicate` appends (fresh Adam
    moments, the state's tensors copied, so a copy is not frozen), each moved from its original by a random offset
    of `jitter` times its own extent (N(0, R·S) as gsplat's `split` samples, scaled), so an added object can grow
    from the one it stands on. The originals are unchanged.
    relevant [N] bool -> the new rows' indices [n] (empty when no relevant free Gaussian exists)"""
    free = free_mask(state)
    candidates = torch.nonzero(relevant if free is None else relevant & free).squeeze(1)  # [M], ascending
    if n <= 0 or len(candidates) == 0:
        return torch.zeros(0, dtype=torch.long, device=relevant.device)
    rounds = -(-n // len(candidates))
    order = torch.cat([torch.randperm(len(candidates), generator=generator) for _ in range(rounds)])[:n]
    copies = torch.bincount(order, minlength=len(candidates)).to(candidates.device)  # [M] copies of each
    start, sources = len(params["means"]), []
    for round_ in range(int(copies.max())):  # `duplicate` copies each masked row once, appended in row order
        picked = candidates[copies > round_]
        mask = torch.zeros(len(params["means"]), dtype=torch.bool, device=candidates.device)  # [N + copies so far]
        mask[picked] = True
        duplicate(params=params, optimizers=optimizers, state=state, mask=mask)
        sources.append(picked)
    source = torch.cat(sources)  # [n]: the original of each new row, in the order appended
    added = torch.arange(start, start + n, device=candidates.device)  # [n]
    rotations = normalized_quat_to_rotmat(F.normalize(params["quats"][source], dim=-1))  # [n, 3, 3]
    noise = torch.randn(n, 3, generator=generator).to(candidates.device)  # [n, 3]
    offsets = torch.einsum("nij,nj,nj->ni", rotations, torch.exp(params["scales"][source]), noise)  # [n, 3]
    params["means"][added] += jitter * offsets
    return added
