"""A device-agnostic Gaussian-splatting renderer: gsplat's `rasterization` on CUDA, a small pure-torch one elsewhere.

splatfacto (nerfstudio 1.1.5) renders through gsplat's CUDA rasteriser only. The CPU path here is built on gsplat's
own pure-torch projection and spherical harmonics (`gsplat.cuda._torch_impl`) and composites, per pixel, the
Gaussians sorted by depth with gsplat's rules (EWA projection with a 0.3 px² low-pass, α = min(0.999, o·exp(-σ)),
α < 1/255 skipped, a Gaussian considered only in the 16² tiles its 3-σ box touches, stop before the transmittance
falls to 1e-4; gsplat 1.4.0's kernels: cuda/csrc/rasterize_to_pixels_fwd.cu lines 60-61 (pixel centres), 143-152
(σ, α, the skip and the stop), isect_tiles.cu lines 60-70 (the tiles), fully_fused_projection_fwd.cu line 167 (the
3-σ radius)). It works tile by tile (a tile's pixels against every Gaussian touching it, dense within the tile,
a Python loop over tiles): for tests and small scenes on a CPU, not for real scenes (use a GPU). Autograd differentiates it; gsplat's `means2d` is returned for densification.

`weight_sums` gives each Gaussian's summed compositing weights (and their sum weighted by a 2D target) through either
renderer, by differentiating a render of zero features.
"""

from __future__ import annotations

from typing import Literal, Optional

import torch
from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci, _spherical_harmonics

TILE_SIZE = 16  # gsplat's default tile: which pixels a Gaussian is tested against
ALPHA_MIN = 1.0 / 255.0  # gsplat skips fainter contributions
ALPHA_MAX = 0.999
TRANSMITTANCE_MIN = 1e-4  # gsplat stops a pixel before its transmittance would fall to this
RenderMode = Literal["RGB", "D", "ED", "RGB+D", "RGB+ED"]


def rasterize(
    means: torch.Tensor,  # [N, 3]
    quats: torch.Tensor,  # [N, 4] (w, x, y, z), any norm
    scales: torch.Tensor,  # [N, 3]
    opacities: torch.Tensor,  # [N]
    colors: torch.Tensor,  # [N, K, 3] SH coefficients with sh_degree, else [N, D] features
    viewmats: torch.Tensor,  # [C, 4, 4] world-to-camera (OpenCV axes)
    Ks: torch.Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    sh_degree: Optional[int] = None,
    backgrounds: Optional[torch.Tensor] = None,  # [C, D]
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    tile_size: int = TILE_SIZE,
    render_mode: RenderMode = "RGB",
    rasterize_mode: Literal["classic", "antialiased"] = "classic",
    absgrad: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """gsplat's `rasterization` on CUDA tensors, `rasterize_torch` otherwise (the arguments splatfacto passes; the
    same results). -> colours [C, H, W, D(+1)], alphas [C, H, W, 1], meta (means2d [C, N, 2], radii [C, N], ...)"""
    if means.is_cuda:
        from gsplat import rasterization

        return rasterization(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                             sh_degree=sh_degree, backgrounds=backgrounds, near_plane=near_plane,
                             far_plane=far_plane, eps2d=eps2d, tile_size=tile_size, packed=False,
                             render_mode=render_mode, rasterize_mode=rasterize_mode, absgrad=absgrad)
    if absgrad:
        raise ValueError("absgrad needs gsplat's CUDA rasteriser: on the CPU use the gradients of meta['means2d']")
    return rasterize_torch(means, quats, scales, opacities, colors, viewmats, Ks, width, height, sh_degree,
                           backgrounds, near_plane, far_plane, eps2d, tile_size, render_mode, rasterize_mode)


def rasterize_torch(means, quats, scales, opacities, colors, viewmats, Ks, width: int, height: int,
                    sh_degree: Optional[int] = None, backgrounds: Optional[torch.Tensor] = None,
                    near_plane: float = 0.01, far_plane: float = 1e10, eps2d: float = 0.3,
                    tile_size: int = TILE_SIZE, render_mode: RenderMode = "RGB",
                    rasterize_mode: Literal["classic", "antialiased"] = "classic"):
    """The pure-torch renderer (shapes and modes as `rasterize`). `render_mode`: "RGB" colours, "D" accumulated
    depth, "ED" expected depth (accumulated / alpha), "RGB+D" / "RGB+ED" both, depth last; "antialiased" scales
    each opacity by gsplat's compensation sqrt(|Σ'| / |Σ' + eps2d·I|)."""
    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_covar=True, compute_preci=False)  # [N, 3, 3]
    radii, means2d, depths, conics, compensations = project_in_front(
        means, covars, viewmats, Ks, width, height, eps2d, near_plane, far_plane,
        rasterize_mode == "antialiased")  # [C, N], [C, N, 2], [C, N], [C, N, 3], [C, N] or None
    opacities = opacities[None].expand_as(depths) if compensations is None else opacities[None] * compensations
    features = view_colors(means, colors, viewmats, sh_degree, radii > 0)  # [C, N, D]
    # the depth channel's background is 0, as gsplat's
    if render_mode in ("D", "ED"):
        features = depths[..., None]
        backgrounds = None if backgrounds is None else backgrounds.new_zeros(backgrounds.shape[0], 1)
    elif render_mode in ("RGB+D", "RGB+ED"):
        features = torch.cat([features, depths[..., None]], dim=-1)
        backgrounds = None if backgrounds is None else torch.cat(
            [backgrounds, backgrounds.new_zeros(backgrounds.shape[0], 1)], dim=-1)
    renders, alphas = [], []
    for camera in range(viewmats.shape[0]):
        render, alpha = composite(means2d[camera], conics[camera], opacities[camera], features[camera],
                                  depths[camera], radii[camera], width, height, tile_size)
        if backgrounds is not None:
            render = render + backgrounds[camera] * (1 - alpha)
        if render_mode in ("ED", "RGB+ED"):  # gsplat's expected depth
            render = torch.cat([render[..., :-1], render[..., -1:] / alpha.clamp_min(1e-10)], dim=-1)
        renders.append(render)
        alphas.append(alpha)
    meta = dict(means2d=means2d, radii=radii, depths=depths, conics=conics, width=width, height=height,
                n_cameras=viewmats.shape[0], tile_size=tile_size, gaussian_ids=None)
    return torch.stack(renders), torch.stack(alphas), meta


def project_in_front(means, covars, viewmats, Ks, width: int, height: int, eps2d: float, near_plane: float,
                     far_plane: float, antialiased: bool):
    """gsplat's `_fully_fused_projection` of each camera's Gaussians between its near and far planes; the others get
    radius 0 (as there) and zeros, and no part of the projection: it divides by their depth, which near the camera
    gives infinities, and a zero gradient times an infinite derivative is NaN in every parameter of that Gaussian
    (the CUDA kernels cull them before projecting too). means [N, 3], covars [N, 3, 3]
    -> radii [C, N], means2d [C, N, 2], depths [C, N], conics [C, N, 3], compensations [C, N] or None"""
    with torch.no_grad():
        depths_all = means @ viewmats[:, 2, :3].T + viewmats[:, 2, 3]  # [N, C]: the camera-space z
    count, parts = means.shape[0], []
    for camera in range(viewmats.shape[0]):
        depth = depths_all[:, camera]
        keep = torch.nonzero((depth > near_plane) & (depth < far_plane)).squeeze(1)  # [K]
        projected = _fully_fused_projection(means[keep], covars[keep], viewmats[camera : camera + 1],
                                            Ks[camera : camera + 1], width, height, eps2d, near_plane, far_plane,
                                            calc_compensations=antialiased)
        parts.append([None if value is None else value[0].new_zeros((count, *value.shape[2:])).index_put(
            (keep,), value[0]) for value in projected])  # [N, ...] each, zeros where culled
    radii, means2d, depths, conics, compensations = (
        None if values[0] is None else torch.stack(values) for values in zip(*parts))
    return radii, means2d, depths, conics, compensations


def rasterize_with_channels(means, quats, scales, opacities, sh, channels, viewmats, Ks, width: int, height: int,
                            sh_degree: int, **options):
    """The colour from spherical harmonics and further per-Gaussian channels (WYS's relevance) in one rasterisation:
    the colour is evaluated per camera first, then both go through as N-D features (gsplat renders any number).
    sh [N, K, 3], channels [N, E] -> [C, H, W, 3 + E], alphas [C, H, W, 1], meta"""
    colours = view_colors(means, sh, viewmats, sh_degree)
    features = torch.cat([colours, channels[None].expand(viewmats.shape[0], *channels.shape)], dim=-1)
    return rasterize(means, quats, scales, opacities, features, viewmats, Ks, width, height, sh_degree=None, **options)


def weight_sums(means, quats, scales, opacities, viewmats, Ks, width: int, height: int, targets: torch.Tensor,
                valid: Optional[torch.Tensor] = None, **options) -> tuple[torch.Tensor, torch.Tensor]:
    """Per Gaussian, Σ_views Σ_pixels w·R and Σ_views Σ_pixels w, w = α·T its compositing weight at the pixel (what
    the render adds of its colour there) and R the pixel's target, by the gradient trick: a render is linear in the
    per-Gaussian features and its weights do not depend on them, so with the geometry detached and 2 feature
    channels c (zeros), d/dc of Σ_p R(p)·render_0(p) + Σ_p render_1(p) is (Σ w·R, Σ w). One forward and backward
    of `rasterize` (gsplat's CUDA kernels, whose colour backward accumulates α·T times the output gradient, or the
    CPU renderer) with the weights of the forward's rules (the 1/255 skip, the transmittance stop). `valid`: only
    the pixels where it is True count (both sums). `options`: rasterize's (near_plane, rasterize_mode, tile_size).
    means [N, 3], quats [N, 4], scales [N, 3], opacities [N], viewmats [C, 4, 4], Ks [C, 3, 3], targets [C, H, W],
    valid [C, H, W] bool -> weighted [N], weights [N]"""
    features = torch.zeros(means.shape[0], 2, device=means.device, dtype=means.dtype, requires_grad=True)  # [N, 2]
    with torch.enable_grad():
        render, _, _ = rasterize(means.detach(), quats.detach(), scales.detach(), opacities.detach(), features,
                                 viewmats, Ks, width, height, **options)  # [C, H, W, 2]
        counted = render if valid is None else render * valid[..., None].to(render.dtype)  # [C, H, W, 2]
        objective = (counted[..., 0] * targets.to(render.dtype)).sum() + counted[..., 1].sum()
        (gradient,) = torch.autograd.grad(objective, features)  # [N, 2]
    return gradient[:, 0], gradient[:, 1]


def view_colors(means: torch.Tensor, colors: torch.Tensor, viewmats: torch.Tensor, sh_degree: Optional[int],
                visible: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Each camera's colour of each Gaussian: SH evaluated towards the camera, +0.5 and clamped at 0 as gsplat's
    `rasterization` does (0 where `visible` [C, N] is False); features without `sh_degree` are the same for every
    camera. -> [C, N, D]"""
    cameras = viewmats.shape[0]
    if sh_degree is None:  # [N, D] for every camera, or already [C, N, D]
        return colors if colors.dim() == 3 else colors[None].expand(cameras, *colors.shape)
    centres = torch.linalg.inv(viewmats)[:, :3, 3]  # [C, 3] camera positions in the world
    directions = means[None] - centres[:, None]  # [C, N, 3]
    rgb = _spherical_harmonics(sh_degree, directions, colors[None].expand(cameras, *colors.shape))  # [C, N, 3]
    rgb = torch.clamp_min(rgb + 0.5, 0.0)
    return rgb if visible is None else rgb * visible[..., None]


def composite(means2d, conics, opacities, features, depths, radii, width: int, height: int, tile_size: int):
    """Front-to-back alpha compositing of one camera's visible Gaussians at every pixel centre, tile by tile: a
    tile's pixels against the Gaussians whose box touches it (gsplat's isect_tiles), near to far.
    means2d [N, 2], conics [N, 3], opacities [N], features [N, D], depths [N], radii [N] -> [H, W, D], [H, W, 1]"""
    visible = torch.nonzero(radii > 0).squeeze(1)
    order = visible[torch.argsort(depths[visible], stable=True)]  # near to far; ties keep gsplat's index order
    mean, conic, opacity, feature = means2d[order], conics[order], opacities[order], features[order]
    radius = radii[order].to(mean.dtype)
    # the tiles each Gaussian is tested in: those its box [mean ± radius] touches
    tile_min = torch.floor((mean - radius[:, None]) / tile_size)  # [M, 2] (x, y)
    tile_max = torch.ceil((mean + radius[:, None]) / tile_size)
    colour_rows, alpha_rows = [], []
    for top in range(0, height, tile_size):
        colour_row, alpha_row = [], []
        for left in range(0, width, tile_size):
            tile = torch.tensor([left // tile_size, top // tile_size], dtype=mean.dtype, device=mean.device)
            ids = torch.nonzero(((tile >= tile_min) & (tile < tile_max)).all(-1)).squeeze(1)  # [m], still near to far
            rows, cols = min(tile_size, height - top), min(tile_size, width - left)
            colour, alpha = _composite_tile(mean[ids], conic[ids], opacity[ids], feature[ids], left, top, cols, rows)
            colour_row.append(colour)
            alpha_row.append(alpha)
        colour_rows.append(torch.cat(colour_row, dim=1))
        alpha_rows.append(torch.cat(alpha_row, dim=1))
    return torch.cat(colour_rows, dim=0), torch.cat(alpha_rows, dim=0)


def _composite_tile(mean, conic, opacity, feature, left: int, top: int, width: int, height: int):
    """One tile's pixels against its Gaussians, sorted near to far (gsplat's rasterize_to_pixels for one tile).
    mean [m, 2], conic [m, 3], opacity [m], feature [m, D] -> [h, w, D], [h, w, 1]"""
    y, x = torch.meshgrid(torch.arange(top, top + height, device=mean.device),
                          torch.arange(left, left + width, device=mean.device), indexing="ij")
    pixel = torch.stack([x.flatten(), y.flatten()], dim=-1).to(mean.dtype)  # [p, 2]
    delta = pixel[None] + 0.5 - mean[:, None]  # [m, p, 2] from the Gaussian to the pixel's centre
    sigma = (0.5 * (conic[:, None, 0] * delta[..., 0] ** 2 + conic[:, None, 2] * delta[..., 1] ** 2)
             + conic[:, None, 1] * delta[..., 0] * delta[..., 1])  # [m, p]
    alpha = torch.clamp_max(opacity[:, None] * torch.exp(-sigma), ALPHA_MAX)
    alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_MIN), alpha, torch.zeros_like(alpha))
    after = torch.cumprod(1 - alpha, dim=0)  # [m, p] transmittance after each Gaussian
    before = torch.cat([torch.ones_like(after[:1]), after[:-1]])
    weight = alpha * before * (after > TRANSMITTANCE_MIN)  # a pixel stops before T would reach the floor
    colour = weight.T @ feature  # [p, D]
    return colour.view(height, width, -1), weight.sum(0).view(height, width, 1)
