"""The pure-torch splatting renderer against a direct evaluation of the splatting formula, pixel by pixel.

The reference below is written from the formulas, not from gsplat: 3D covariance Σ = R S Sᵀ Rᵀ from a unit
quaternion (Kerbl et al. 2023, Eq. 6), EWA projection Σ' = J W Σ Wᵀ Jᵀ with the perspective Jacobian J (Zwicker et
al. 2001; 3DGS Eq. 5) plus gsplat's 0.3 px² low-pass, the 2D Gaussian at the pixel centre, and front-to-back
compositing C = Σ cᵢ αᵢ Πⱼ<ᵢ (1 − αⱼ) over the Gaussians sorted by depth (3DGS Eq. 3), with α = min(0.999, o·e^(−σ))
contributions under 1/255 skipped and a pixel done before its transmittance would fall to 1e-4 (3DGS's rasteriser,
as gsplat's). One Python loop per pixel.
"""

import math

import pytest
import torch

from nerf_edit_methods.splat.rasterize import composite, rasterize, rasterize_torch, rasterize_with_channels

ONE_TILE = 64  # a tile larger than the test images
SH_C0 = 0.28209479177387814  # the degree-0 real spherical harmonic, 1 / (2·sqrt(π))


def rotation(q):
    w, x, y, z = (q / q.norm()).tolist()
    return torch.tensor([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                         [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                         [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]], dtype=torch.float64)


def reference(means, quats, scales, opacities, colors, viewmat, K, width, height, antialiased=False, tile_size=None):
    """[H, W, D] colours and [H, W] alphas, pixel by pixel; `antialiased`: each opacity scaled by
    sqrt(|Σ'| / |Σ' + 0.3·I|) (Mip-Splatting's 2D filter, gsplat's `rasterize_mode="antialiased"`).

    `tile_size`: a Gaussian is tested only at the pixels of the tiles its box [centre ± r] touches, gsplat's rule
    (gsplat 1.4.0 fully_fused_projection_fwd.cu ~160-167: r = ceil(3·sqrt(b + sqrt(max(0.01, b² − det)))) with
    b the half trace and det the determinant of Σ' (the low-pass included); isect_tiles.cu ~60-70: tiles from
    floor((centre − r)/size) up to, not including, ceil((centre + r)/size)); None: every pixel."""
    fx, fy, cx, cy = K[0, 0].item(), K[1, 1].item(), K[0, 2].item(), K[1, 2].item()
    W, t = viewmat[:3, :3].double(), viewmat[:3, 3].double()
    projected = []
    for mean, quat, scale, opacity, colour in zip(means, quats, scales, opacities, colors):
        R, S = rotation(quat.double()), torch.diag(scale.double())
        covariance = R @ S @ S.T @ R.T
        x, y, z = (W @ mean.double() + t).tolist()
        J = torch.tensor([[fx / z, 0, -fx * x / z**2], [0, fy / z, -fy * y / z**2]], dtype=torch.float64)
        unblurred = J @ W @ covariance @ W.T @ J.T
        covariance2d = unblurred + 0.3 * torch.eye(2, dtype=torch.float64)
        if antialiased:
            opacity = opacity * math.sqrt(torch.linalg.det(unblurred) / torch.linalg.det(covariance2d))
        centre = (fx * x / z + cx, fy * y / z + cy)
        (a, b), (_, c) = torch.linalg.inv(covariance2d).tolist()
        half_trace, det = float(covariance2d.trace()) / 2, float(torch.linalg.det(covariance2d))
        radius = math.ceil(3 * math.sqrt(half_trace + math.sqrt(max(0.01, half_trace**2 - det))))
        projected.append((z, centre, (a, b, c), float(opacity), colour.double().tolist(), radius))
    projected.sort(key=lambda g: g[0])
    image = torch.zeros(height, width, colors.shape[-1], dtype=torch.float64)
    alphas = torch.zeros(height, width, dtype=torch.float64)
    for v in range(height):
        for u in range(width):
            transmittance, total, colour_sum = 1.0, 0.0, [0.0] * colors.shape[-1]
            for _, (mx, my), (a, b, c), opacity, colour, radius in projected:
                if tile_size is not None and not all(
                        math.floor((m - radius) / tile_size) <= pixel // tile_size < math.ceil((m + radius) / tile_size)
                        for m, pixel in ((mx, u), (my, v))):
                    continue  # the pixel's tile is not one this Gaussian's box touches
                dx, dy = u + 0.5 - mx, v + 0.5 - my  # to the pixel's centre
                alpha = min(0.999, opacity * math.exp(-0.5 * (a * dx * dx + 2 * b * dx * dy + c * dy * dy)))
                if alpha < 1 / 255:
                    continue
                if transmittance * (1 - alpha) <= 1e-4:  # the pixel is done, this Gaussian left out
                    break
                colour_sum = [s + value * alpha * transmittance for s, value in zip(colour_sum, colour)]
                total += alpha * transmittance
                transmittance *= 1 - alpha
            image[v, u] = torch.tensor(colour_sum, dtype=torch.float64)
            alphas[v, u] = total
    return image, alphas


def camera(width, height, focal, turn=0.0):
    """World-to-camera [4, 4] (turned by `turn` radians about the y axis) and intrinsics [3, 3]."""
    viewmat = torch.eye(4)
    c, s = math.cos(turn), math.sin(turn)
    viewmat[:3, :3] = torch.tensor([[c, 0, s], [0, 1.0, 0], [-s, 0, c]])
    viewmat[:3, 3] = torch.tensor([0.1, -0.05, 4.0])  # the scene 4 units in front of the camera
    K = torch.tensor([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1.0]])
    return viewmat, K


def gaussians(count, seed):
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(count, 3, generator=g) - 0.5) * torch.tensor([0.6, 0.6, 1.0])
    quats = torch.randn(count, 4, generator=g)
    scales = 0.1 + 0.2 * torch.rand(count, 3, generator=g)
    opacities = 0.3 + 0.6 * torch.rand(count, generator=g)
    colors = torch.rand(count, 3, generator=g)
    return means, quats, scales, opacities, colors


@pytest.mark.parametrize("seed", [0, 1])
def test_renders_what_the_splatting_formula_gives_at_every_pixel(seed):
    width, height = 32, 24
    means, quats, scales, opacities, colors = gaussians(5, seed)
    viewmat, K = camera(width, height, focal=40.0)
    # one tile larger than the image: every Gaussian is tested at every pixel, as in the reference (the tile rule
    # has its own test below)
    image, alphas, meta = rasterize(means, quats, scales, opacities, colors, viewmat[None], K[None], width, height,
                                    tile_size=ONE_TILE)
    expected_image, expected_alphas = reference(means, quats, scales, opacities, colors, viewmat, K, width, height)
    assert image.shape == (1, height, width, 3) and alphas.shape == (1, height, width, 1)
    assert (meta["radii"] > 0).all()  # all five are in view
    torch.testing.assert_close(image[0].double(), expected_image, atol=2e-5, rtol=0)
    torch.testing.assert_close(alphas[0, ..., 0].double(), expected_alphas, atol=2e-5, rtol=0)
    assert expected_alphas.max() > 0.9 and expected_alphas.min() < 0.5  # covered and uncovered pixels both tested


def test_spherical_harmonics_of_degree_zero_give_c0_times_the_coefficient_plus_a_half():
    width, height = 32, 24
    means, quats, scales, opacities, _ = gaussians(3, 2)
    coefficients = torch.rand(3, 1, 3, generator=torch.Generator().manual_seed(3)) - 0.5  # [N, K=1, 3]
    viewmat, K = camera(width, height, focal=40.0)
    image = rasterize(means, quats, scales, opacities, coefficients, viewmat[None], K[None], width, height,
                      sh_degree=0, tile_size=ONE_TILE)[0]
    expected = reference(means, quats, scales, opacities, (SH_C0 * coefficients[:, 0] + 0.5).clamp_min(0), viewmat, K,
                         width, height)[0]
    torch.testing.assert_close(image[0].double(), expected, atol=2e-5, rtol=0)


def sh_degree_1_colours(coefficients, means, viewmat):
    """Colours towards the camera from degree-1 real SH (3DGS's basis and signs: C0, -C1·y, C1·z, -C1·x of the unit
    direction from the camera centre), +0.5, clamped at 0. coefficients [N, 4, 3] -> [N, 3]"""
    C1 = 0.4886025119029199  # sqrt(3 / (4π))
    centre = -viewmat[:3, :3].T @ viewmat[:3, 3]
    x, y, z = torch.nn.functional.normalize(means - centre, dim=-1).unbind(-1)
    basis = torch.stack([torch.full_like(x, SH_C0), -C1 * y, C1 * z, -C1 * x], dim=-1)  # [N, 4]
    return ((basis[..., None] * coefficients).sum(1) + 0.5).clamp_min(0)


def test_two_cameras_see_their_own_view_dependent_colours():
    width, height = 32, 24
    means, quats, scales, opacities, _ = gaussians(5, 11)
    coefficients = torch.rand(5, 4, 3, generator=torch.Generator().manual_seed(12)) - 0.5
    cameras = [camera(width, height, focal=40.0), camera(width, height, focal=50.0, turn=0.4)]
    viewmats, Ks = torch.stack([c[0] for c in cameras]), torch.stack([c[1] for c in cameras])
    images = rasterize(means, quats, scales, opacities, coefficients, viewmats, Ks, width, height, sh_degree=1,
                       tile_size=ONE_TILE)[0]
    for image, (viewmat, K) in zip(images, cameras):
        colours = sh_degree_1_colours(coefficients, means, viewmat)
        expected = reference(means, quats, scales, opacities, colours, viewmat, K, width, height)[0]
        torch.testing.assert_close(image.double(), expected, atol=2e-5, rtol=0)
    assert (images[0] - images[1]).abs().max() > 0.1  # the two views differ


def test_expected_depth_and_antialiased_opacities_as_gsplat_defines_them():
    """"RGB+ED": the depth channel is the composited camera-space z divided by the alpha (gsplat's expected
    depth); "antialiased" scales the opacities as Mip-Splatting's 2D filter."""
    width, height = 32, 24
    means, quats, scales, opacities, colors = gaussians(5, 7)
    viewmat, K = camera(width, height, focal=40.0)
    image, alphas, _ = rasterize(means, quats, scales, opacities, colors, viewmat[None], K[None], width, height,
                                 tile_size=ONE_TILE, render_mode="RGB+ED", rasterize_mode="antialiased")
    z = (means @ viewmat[:3, :3].T + viewmat[:3, 3])[:, 2:]  # [N, 1] camera-space depth
    expected, expected_alphas = reference(means, quats, scales, opacities, torch.cat([colors, z], 1), viewmat, K,
                                          width, height, antialiased=True)
    assert image.shape == (1, height, width, 4)
    torch.testing.assert_close(image[0, ..., :3].double(), expected[..., :3], atol=2e-5, rtol=0)
    torch.testing.assert_close(alphas[0, ..., 0].double(), expected_alphas, atol=2e-5, rtol=0)
    covered = expected_alphas > 0.05
    torch.testing.assert_close(image[0, ..., 3][covered].double(), (expected[..., 3] / expected_alphas)[covered],
                               atol=1e-3, rtol=0)
    plain = rasterize(means, quats, scales, opacities, colors, viewmat[None], K[None], width, height,
                      tile_size=ONE_TILE)[1]
    assert (alphas <= plain + 1e-6).all() and (alphas < plain - 1e-3).any()  # the filter only lowers opacity


def test_relevance_renders_with_the_colour_in_one_pass_as_an_extra_channel():
    """Colour from SH (degree 1) and a relevance value per Gaussian, one rasterisation: each equals its own render."""
    width, height = 32, 24
    means, quats, scales, opacities, _ = gaussians(6, 9)
    g = torch.Generator().manual_seed(10)
    sh, relevance = torch.rand(6, 4, 3, generator=g) - 0.5, torch.rand(6, 1, generator=g)
    viewmat, K = camera(width, height, focal=40.0)
    both, alphas, _ = rasterize_with_channels(means, quats, scales, opacities, sh, relevance, viewmat[None], K[None],
                                              width, height, sh_degree=1)
    colour = rasterize(means, quats, scales, opacities, sh, viewmat[None], K[None], width, height, sh_degree=1)[0]
    alone = rasterize(means, quats, scales, opacities, relevance, viewmat[None], K[None], width, height)[0]
    assert both.shape == (1, height, width, 4)
    torch.testing.assert_close(both[..., :3], colour)
    torch.testing.assert_close(both[..., 3:], alone)
    assert alone.max() > 0.3  # the relevance is there to compare


def test_background_fills_what_the_gaussians_leave_uncovered():
    width, height = 32, 24
    means, quats, scales, opacities, colors = gaussians(4, 4)
    viewmat, K = camera(width, height, focal=40.0)
    background = torch.tensor([[0.2, 0.4, 0.9]])
    plain, alphas, _ = rasterize(means, quats, scales, opacities, colors, viewmat[None], K[None], width, height)
    filled = rasterize(means, quats, scales, opacities, colors, viewmat[None], K[None], width, height,
                       backgrounds=background)[0]
    torch.testing.assert_close(filled, plain + background * (1 - alphas))
    # with depth: the background fills the colour channels only (the depth's background is 0, as gsplat's)
    depth = rasterize(means, quats, scales, opacities, colors, viewmat[None], K[None], width, height,
                      render_mode="RGB+ED")[0]
    filled_depth = rasterize(means, quats, scales, opacities, colors, viewmat[None], K[None], width, height,
                             render_mode="RGB+ED", backgrounds=background)[0]
    torch.testing.assert_close(filled_depth[..., :3], filled)
    torch.testing.assert_close(filled_depth[..., 3], depth[..., 3])


def test_a_gaussian_is_only_tested_in_the_tiles_its_3_sigma_box_touches():
    """A small, opaque Gaussian in the top-left 16² tile: pixels of the next tile get nothing, however close."""
    means2d = torch.tensor([[13.0, 8.0]])
    conics = torch.tensor([[1 / 16.0, 0.0, 1 / 16.0]])  # σ² = 16 px²; radius 2: box 11..15, tile 0 only; 6: tiles 0, 1
    for radius, touches_next_tile in ((2, False), (6, True)):
        image, _ = composite(means2d, conics, torch.tensor([0.99]), torch.ones(1, 1), torch.ones(1),
                             torch.tensor([radius]), 32, 16, 16)
        assert image[8, 15, 0] > 0.3  # in its own tile
        assert (image[8, 16, 0] > 0.3) == touches_next_tile  # 16.5 - 13 = 3.5 px away: bright if tested



def test_the_tile_path_renders_many_gaussians_across_tile_borders_as_the_formula_with_gsplats_tile_rule():
    """60 Gaussians centred within 3 px of the 16-px tile borders of a 64 x 48 image (4 x 3 tiles) and 4 wide ones
    whose 3-σ box ends just short of a border: the default tile path (tile size 16) against the pixel-by-pixel
    formula restricted to the tiles each box touches. Every border is crossed by several boxes, and without the
    tile restriction the reference differs at the wide ones' neighbouring tiles (the rule acts here)."""
    width, height, focal, depth = 64, 48, 80.0, 4.0
    g = torch.Generator().manual_seed(21)
    count = 60
    borders_x, borders_y = torch.tensor([16.0, 32.0, 48.0]), torch.tensor([16.0, 32.0])
    u = borders_x[torch.randint(0, 3, (count,), generator=g)] + (torch.rand(count, generator=g) - 0.5) * 6
    v = borders_y[torch.randint(0, 2, (count,), generator=g)] + (torch.rand(count, generator=g) - 0.5) * 6
    u[::3] = torch.rand(count, generator=g)[::3] * width  # a third anywhere along the horizontal borders
    z = depth + (torch.rand(count, generator=g) - 0.5) * 0.5
    quats = torch.randn(count, 4, generator=g)
    scales = 0.02 + 0.2 * torch.rand(count, 3, generator=g)  # σ of 0.4 to 4.4 px at the image
    opacities = 0.5 + 0.49 * torch.rand(count, generator=g)
    # wide along x (σ 6 px: box radius 19), thin along y, in front, each on its own pixel row: their boxes end
    # 0.01 px short of a border, where they still give the next pixel α = 0.005 >= 1/255
    u = torch.cat([u, torch.tensor([12.99, 35.01, 28.99, 51.01])])
    v = torch.cat([v, torch.tensor([4.5, 8.5, 40.5, 44.5])])
    z = torch.cat([z, torch.full((4,), depth - 0.5)])
    quats = torch.cat([quats, torch.tensor([[1.0, 0, 0, 0]] * 4)])
    scales = torch.cat([scales, torch.tensor([[6 * (depth - 0.5) / focal, 0.02, 0.02]] * 4)])
    opacities = torch.cat([opacities, torch.full((4,), 0.99)])
    colors = torch.rand(count + 4, 3, generator=g)
    viewmat, K = camera(width, height, focal)
    camera_points = torch.stack([(u - width / 2) * z / focal, (v - height / 2) * z / focal, z], dim=-1)
    means = (camera_points - viewmat[:3, 3]) @ viewmat[:3, :3]  # back to the world (camera rotation: none)
    image, alphas, meta = rasterize(means, quats, scales, opacities, colors, viewmat[None], K[None], width, height)
    assert meta["tile_size"] == 16 and (meta["radii"] > 0).all()
    radii, centres = meta["radii"][0].float(), meta["means2d"][0]
    for axis, borders in ((0, borders_x), (1, borders_y)):  # every border is crossed by several boxes
        for border in borders:
            crossing = ((centres[:, axis] - radii < border) & (centres[:, axis] + radii > border)).sum()
            assert crossing >= 3, (axis, border, int(crossing))
    expected_image, expected_alphas = reference(means, quats, scales, opacities, colors, viewmat, K, width, height,
                                                tile_size=16)
    torch.testing.assert_close(image[0].double(), expected_image, atol=2e-5, rtol=0)
    torch.testing.assert_close(alphas[0, ..., 0].double(), expected_alphas, atol=2e-5, rtol=0)
    untiled = reference(means, quats, scales, opacities, colors, viewmat, K, width, height)[1]
    assert (untiled - expected_alphas).abs().max() > 4e-3  # the tile rule changes pixels here: it is tested


def test_a_pixel_stops_before_its_transmittance_falls_to_1e_4():
    """Three layers of α = 0.98: after two T = 0.02² = 4e-4; the third would take it to 8e-6 and is left out, its
    colour (100) with it (gsplat's rule, and 3DGS's)."""
    means2d = torch.tensor([[8.0, 8.0]] * 3)
    conics = torch.tensor([[1e-8, 0.0, 1e-8]] * 3)  # flat: α = the opacity near the centre
    features = torch.tensor([[1.0], [2.0], [100.0]])
    image, alphas = composite(means2d, conics, torch.full((3,), 0.98), features, torch.tensor([1.0, 2.0, 3.0]),
                              torch.tensor([20, 20, 20]), 16, 16, 16)
    torch.testing.assert_close(image[8, 8, 0], torch.tensor(0.98 * 1 + 0.98 * 0.02 * 2), atol=1e-5, rtol=0)
    torch.testing.assert_close(alphas[8, 8, 0], torch.tensor(1 - 0.02**2), atol=1e-6, rtol=0)


def test_gradients_reach_every_gaussian_parameter_and_the_2d_means():
    width, height = 16, 12
    means, quats, scales, opacities, colors = gaussians(3, 5)
    parameters = [t.requires_grad_() for t in (means, quats, scales, opacities, colors)]
    viewmat, K = camera(width, height, focal=20.0)
    image, _, meta = rasterize_torch(means, quats, scales, opacities, colors, viewmat[None], K[None], width, height)
    meta["means2d"].retain_grad()  # splatfacto's densification reads these gradients
    image.square().mean().backward()
    for parameter in parameters:
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0
    assert meta["means2d"].grad.shape == (1, 3, 2) and meta["means2d"].grad.abs().sum() > 0


def test_gaussians_at_or_behind_the_camera_get_no_nan_gradient_and_change_nothing():
    """A Gaussian in the camera's plane (depth 1e-9) or behind it is culled before the projection (radius 0, as
    gsplat's kernels cull it): the render is the one without it, and every gradient is finite (projecting it divides
    by its depth: 0 × ∞ = NaN in all its parameters, which a 300-step reconstruction met)."""
    width, height = 16, 12
    viewmat, K = camera(width, height, focal=20.0)
    means, quats, scales, opacities, colors = gaussians(4, 7)
    plane = torch.linalg.solve(viewmat, torch.tensor([0.3, 0.2, 1e-9, 1.0]))[:3]  # camera-space z = 1e-9
    behind = torch.linalg.solve(viewmat, torch.tensor([0.1, 0.0, -0.5, 1.0]))[:3]
    means = torch.cat([means, plane[None], behind[None]])
    quats, scales = torch.cat([quats, torch.randn(2, 4)]), torch.cat([scales, torch.full((2, 3), 0.2)])
    opacities, colors = torch.cat([opacities, torch.full((2,), 0.9)]), torch.cat([colors, torch.rand(2, 3)])
    parameters = [t.clone().requires_grad_() for t in (means, quats, scales, opacities, colors)]
    image, _, meta = rasterize_torch(*parameters, viewmat[None], K[None], width, height)
    without, _, _ = rasterize_torch(*(t[:4] for t in (means, quats, scales, opacities, colors)), viewmat[None],
                                    K[None], width, height)
    assert meta["radii"][0, 4:].tolist() == [0, 0]
    torch.testing.assert_close(image, without)
    image.square().mean().backward()
    for parameter in parameters:
        assert torch.isfinite(parameter.grad).all()
        assert parameter.grad[4:].abs().sum() == 0


@pytest.mark.gpu
@pytest.mark.parametrize("modes", [dict(), dict(render_mode="RGB+ED", rasterize_mode="antialiased", sh_degree=1)])
def test_equals_gsplats_cuda_rasteriser(modes):
    width, height = 64, 48
    means, quats, scales, opacities, colors = gaussians(50, 6)
    scales = scales / 4  # small ones too: the tile rule matters
    if "sh_degree" in modes:
        colors = torch.rand(50, 4, 3, generator=torch.Generator().manual_seed(8)) - 0.5  # degree 1: 4 coefficients
    viewmat, K = camera(width, height, focal=80.0)
    cuda = [t.cuda() for t in (means, quats, scales, opacities, colors, viewmat[None], K[None])]
    expected, expected_alphas, _ = rasterize(*cuda, width, height, **modes)  # gsplat's CUDA kernels
    image, alphas, _ = rasterize_torch(*cuda, width, height, **modes)
    torch.testing.assert_close(image, expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(alphas, expected_alphas, atol=1e-4, rtol=0)
    if "sh_degree" in modes:  # colour and a relevance channel in one pass, on CUDA
        relevance = torch.rand(50, 1, generator=torch.Generator().manual_seed(13)).cuda()
        both = rasterize_with_channels(*cuda[:4], cuda[4], relevance, *cuda[5:], width, height, sh_degree=1)[0]
        torch.testing.assert_close(both[..., :3], rasterize(*cuda, width, height, sh_degree=1)[0])
