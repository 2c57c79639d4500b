"""Relevance traced per Gaussian (rasterize.weight_sums, WysSplatModel.trace_relevance): Σ_views Σ_pixels w·R and
Σ w, w = α·T of the Gaussian at the pixel, against a pixel-by-pixel evaluation of the compositing formula.

The reference is written from the formulas (3DGS, Kerbl et al. 2023: Σ = R S Sᵀ Rᵀ, EWA projection Σ' = J W Σ Wᵀ Jᵀ
plus gsplat's 0.3 px² low-pass, front-to-back weights αᵢ Πⱼ<ᵢ (1 − αⱼ) over the Gaussians sorted by depth, α =
min(0.999, o·e^(−σ)), contributions under 1/255 skipped, a pixel done before its transmittance would fall to 1e-4,
Gaussians nearer than the near plane culled), one Python loop per pixel, in float64."""

import math

import pytest
import torch
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.models.splatfacto import get_viewmat

from nerf_edit_methods.splat.model import WysSplatModelConfig
from nerf_edit_methods.splat.rasterize import weight_sums

WIDTH, HEIGHT, ONE_TILE = 24, 16, 64  # one tile larger than the image: every Gaussian tested at every pixel
BEHIND = 4  # Gaussians behind both cameras: unseen


def rotation(q):
    w, x, y, z = (q / q.norm()).tolist()
    return torch.tensor([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                         [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                         [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]], dtype=torch.float64)


def projected(means, quats, scales, opacities, viewmat, K):
    """Each Gaussian in front of the near plane: (depth, index, centre, conic (a, b, c), opacity)."""
    fx, fy, cx, cy = K[0, 0].item(), K[1, 1].item(), K[0, 2].item(), K[1, 2].item()
    W, t = viewmat[:3, :3].double(), viewmat[:3, 3].double()
    out = []
    for index, (mean, quat, scale, opacity) in enumerate(zip(means, quats, scales, opacities)):
        x, y, z = (W @ mean.double() + t).tolist()
        if z < 0.01:
            continue  # behind the camera
        R, S = rotation(quat.double()), torch.diag(scale.double())
        J = torch.tensor([[fx / z, 0, -fx * x / z**2], [0, fy / z, -fy * y / z**2]], dtype=torch.float64)
        covariance = J @ W @ R @ S @ S.T @ R.T @ W.T @ J.T + 0.3 * torch.eye(2, dtype=torch.float64)
        (a, b), (_, c) = torch.linalg.inv(covariance).tolist()
        out.append((z, index, (fx * x / z + cx, fy * y / z + cy), (a, b, c), float(opacity)))
    return sorted(out)


def brute_force(means, quats, scales, opacities, viewmats, Ks, targets, valid):
    """Σ w·R [N] and Σ w [N] over every view's valid pixels, pixel by pixel."""
    weighted = torch.zeros(len(means), dtype=torch.float64)
    weights = torch.zeros(len(means), dtype=torch.float64)
    for viewmat, K, target, counted in zip(viewmats, Ks, targets, valid):
        gaussians = projected(means, quats, scales, opacities, viewmat, K)
        for v in range(HEIGHT):
            for u in range(WIDTH):
                if not counted[v, u]:
                    continue
                transmittance = 1.0
                for _, index, (mx, my), (a, b, c), opacity in gaussians:
                    dx, dy = u + 0.5 - mx, v + 0.5 - my
                    alpha = min(0.999, opacity * math.exp(-0.5 * (a * dx * dx + 2 * b * dx * dy + c * dy * dy)))
                    if alpha < 1 / 255:
                        continue
                    if transmittance * (1 - alpha) <= 1e-4:
                        break
                    weighted[index] += alpha * transmittance * float(target[v, u])
                    weights[index] += alpha * transmittance
                    transmittance *= 1 - alpha
    return weighted, weights


def cameras():
    """Two views of the origin from 4 units, the second turned by 0.4 rad about y: world-to-camera [2, 4, 4], [2, 3, 3]."""
    viewmats = []
    for turn in (0.0, 0.4):
        viewmat = torch.eye(4)
        viewmat[:3, :3] = torch.tensor([[math.cos(turn), 0, math.sin(turn)], [0, 1.0, 0],
                                        [-math.sin(turn), 0, math.cos(turn)]])
        viewmat[:3, 3] = torch.tensor([0.1, -0.05, 4.0])
        viewmats.append(viewmat)
    K = torch.tensor([[30.0, 0, WIDTH / 2], [0, 30.0, HEIGHT / 2], [0, 0, 1.0]])
    return torch.stack(viewmats), torch.stack([K, K])


@pytest.mark.parametrize("every_pixel", [True, False], ids=["every-pixel", "valid-pixels"])
def test_weight_sums_equal_the_pixel_by_pixel_formula_and_unseen_gaussians_get_nothing(every_pixel):
    """20 Gaussians (4 of them behind both cameras), 2 views, random targets; every pixel, or those of a random
    validity mask."""
    g = torch.Generator().manual_seed(0)
    count = 20
    means = (torch.rand(count, 3, generator=g) - 0.5) * torch.tensor([1.0, 0.6, 1.0])
    means[:BEHIND, 2] = -6.0  # the cameras sit at z ≈ -4 looking along +z: these are behind them
    quats = torch.randn(count, 4, generator=g)
    scales = 0.05 + 0.15 * torch.rand(count, 3, generator=g)
    opacities = 0.3 + 0.6 * torch.rand(count, generator=g)
    targets = torch.rand(2, HEIGHT, WIDTH, generator=g)
    valid = torch.ones(2, HEIGHT, WIDTH, dtype=torch.bool) if every_pixel else torch.rand(2, HEIGHT, WIDTH) > 0.3
    viewmats, Ks = cameras()
    weighted, weights = weight_sums(means, quats, scales, opacities, viewmats, Ks, WIDTH, HEIGHT, targets,
                                    None if every_pixel else valid, tile_size=ONE_TILE)
    expected_weighted, expected_weights = brute_force(means, quats, scales, opacities, viewmats, Ks, targets, valid)
    assert weighted.shape == weights.shape == (count,)
    torch.testing.assert_close(weights.double(), expected_weights, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(weighted.double(), expected_weighted, atol=1e-4, rtol=1e-5)
    unseen = weights == 0
    assert torch.equal(unseen, expected_weights == 0) and int(unseen.sum()) == BEHIND and unseen[:BEHIND].all()
    assert expected_weights[BEHIND:].min() > 0.05  # the others are seen, and weigh something
    relevance = weighted[~unseen] / weights[~unseen]
    assert relevance.min() >= 0 and relevance.max() <= 1 and relevance.std() > 0.02  # means of the targets


def test_the_model_traces_relevance_over_its_cameras_views():
    """trace_relevance(cameras, targets, valid): weight_sums of the model's Gaussians view by view (the valid pixels),
    Σ w·R / Σ w per Gaussian, the unseen (behind the camera) reported with the field's neutral 0.5."""
    torch.manual_seed(1)
    splats = WysSplatModelConfig(num_random=30, random_scale=1.5, sh_degree=1).setup(
        scene_box=SceneBox(aabb=torch.tensor([[-1.0] * 3, [1.0] * 3])), num_train_data=2, metadata={})
    with torch.no_grad():
        splats.gauss_params["means"][:3, 2] = 6.0  # behind cameras at z = 4 looking down -z
        splats.gauss_params["opacities"][:] = torch.logit(torch.tensor(0.7))
    camera_to_worlds = torch.tensor([[[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 4]],
                                     [[1.0, 0, 0, 0.3], [0, 1, 0, 0], [0, 0, 1, 4]]])
    views = Cameras(camera_to_worlds=camera_to_worlds, fx=20.0, fy=20.0, cx=WIDTH / 2, cy=HEIGHT / 2, width=WIDTH,
                    height=HEIGHT, camera_type=CameraType.PERSPECTIVE)
    targets = torch.rand(2, HEIGHT, WIDTH, 1, generator=torch.Generator().manual_seed(2))
    valid = torch.ones_like(targets, dtype=torch.bool)
    valid[:, :, : WIDTH // 4] = False  # e.g. where the relevance map has no value
    trace = splats.trace_relevance(views, targets, valid)
    params = {name: p.detach() for name, p in splats.gauss_params.items()}
    weighted, weights = weight_sums(params["means"], params["quats"], torch.exp(params["scales"]),
                                    torch.sigmoid(params["opacities"]).squeeze(-1), get_viewmat(camera_to_worlds),
                                    views.get_intrinsics_matrices(), WIDTH, HEIGHT, targets[..., 0], valid[..., 0])
    torch.testing.assert_close(trace.weights, weights)
    seen = ~trace.unseen
    torch.testing.assert_close(trace.relevance[seen], weighted[seen] / weights[seen])
    assert trace.unseen[:3].all() and int(trace.unseen.sum()) < 10 and (trace.relevance[trace.unseen] == 0.5).all()
    assert trace.relevance.min() >= 0 and trace.relevance.max() <= 1
