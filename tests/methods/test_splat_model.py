"""WysSplatModel (methods/splat/model.py) on the CPU: splatfacto's model with a relevance value per Gaussian,
rendered with the colour in one pass, trained by the relevance loss, loaded from a plain splatfacto state, frozen."""

import torch
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.models.splatfacto import SplatfactoModel, SplatfactoModelConfig

from nerf_edit_methods.compat import offline_lpips
from nerf_edit_methods.splat.model import WysSplatModelConfig
from nerf_edit_methods.splat.rasterize import rasterize_torch

WIDTH, HEIGHT = 16, 12


def camera() -> Cameras:
    """One 16x12 pinhole camera 4 units from the origin, looking at it (nerfstudio's OpenGL axes)."""
    camera_to_world = torch.tensor([[[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 4]]])
    return Cameras(camera_to_worlds=camera_to_world, fx=20.0, fy=20.0, cx=WIDTH / 2, cy=HEIGHT / 2, width=WIDTH,
                   height=HEIGHT, camera_type=CameraType.PERSPECTIVE)


def model(seed: int = 0, **settings):
    torch.manual_seed(seed)
    config = WysSplatModelConfig(**{"num_random": 40, "random_scale": 1.5, "sh_degree": 1, **settings})
    return config.setup(scene_box=SceneBox(aabb=torch.tensor([[-1.0] * 3, [1.0] * 3])), num_train_data=1,
                        metadata={})


def test_relevance_renders_in_the_same_pass_as_the_colour_and_equals_a_render_of_it_alone():
    splats = model().eval()
    with torch.no_grad():
        outputs = splats.get_outputs(camera())
        params = splats.gauss_params
        viewmat = torch.eye(4)
        viewmat[2, 3] = -4.0  # world to camera: OpenCV axes, the camera at z = 4 looking down -z
        viewmat[1:3] *= -1
        alone, alpha, _ = rasterize_torch(params["means"], params["quats"], torch.exp(params["scales"]),
                                          torch.sigmoid(params["opacities"]).squeeze(-1),
                                          torch.sigmoid(params["relevance"]), viewmat[None],
                                          camera().get_intrinsics_matrices(), WIDTH, HEIGHT)
    assert outputs["rgb"].shape == (HEIGHT, WIDTH, 3) and outputs["relevance"].shape == (HEIGHT, WIDTH, 1)
    assert alpha.max() > 0.5  # the Gaussians are in view
    assert torch.allclose(outputs["relevance"], alone[0], atol=1e-6)
    assert torch.allclose(outputs["accumulation"], alpha[0], atol=1e-6)


def test_the_relevance_loss_teaches_each_gaussian_its_relevance():
    """Target: relevant on the left half of the view, not on the right. Trained on the relevance loss alone, the
    rendered relevance splits the view as the target does, through the Gaussians' own values."""
    splats = model(seed=1).train()
    with torch.no_grad():
        splats.gauss_params["opacities"][:] = torch.logit(torch.tensor(0.9))  # a covered view (splatfacto starts at 0.1)
    splats.optimizers = {}  # splatfacto's training callback sets these; only the relevance is optimised here
    target = torch.zeros(HEIGHT, WIDTH, 1)
    target[:, : WIDTH // 2] = 1.0
    optimizer = torch.optim.Adam([splats.gauss_params["relevance"]], lr=0.1)
    splats.step = 10000  # past splatfacto's downscaling schedule: the loss at full resolution
    for _ in range(60):
        outputs = splats.get_outputs(camera())
        loss = splats.get_loss_dict(outputs, {"image": torch.zeros(HEIGHT, WIDTH, 3), "relevance": target})
        optimizer.zero_grad()
        loss["relevance_loss"].backward()
        optimizer.step()
    with torch.no_grad():
        rendered = splats.eval().get_outputs(camera())
    covered = rendered["accumulation"][..., 0] > 0.5
    relevant = rendered["relevance"][..., 0] / rendered["accumulation"][..., 0].clamp_min(1e-6) > 0.5
    agreement = (relevant == target[..., 0].bool())[covered].float().mean()
    print(f"covered {int(covered.sum())} of {HEIGHT * WIDTH} pixels, agreement with the target {float(agreement):.3f}")
    # Gaussians straddling the middle can't be both: the split is right where the view is covered, not everywhere
    assert covered.sum() > 0.5 * HEIGHT * WIDTH and agreement > 0.85, float(agreement)
    assert splats.relevance.min() < 0.3 and splats.relevance.max() > 0.7


def test_a_plain_splatfacto_state_loads_with_every_gaussian_at_relevance_one_half():
    torch.manual_seed(2)
    with offline_lpips():
        plain = SplatfactoModelConfig(num_random=30, sh_degree=1).setup(
            scene_box=SceneBox(aabb=torch.tensor([[-1.0] * 3, [1.0] * 3])), num_train_data=1, metadata={})
    assert isinstance(plain, SplatfactoModel) and "relevance" not in plain.gauss_params
    splats = model()
    splats.load_state_dict(plain.state_dict())
    assert splats.num_points == 30 and torch.equal(splats.gauss_params["means"], plain.gauss_params["means"])
    assert torch.equal(splats.relevance, torch.full((30,), 0.5))


def test_frozen_gaussians_get_no_gradient_and_the_others_do():
    splats = model(seed=3).train()
    splats.optimizers = {name: torch.optim.Adam([p], lr=0.01) for name, p in splats.gauss_params.items()}
    with torch.no_grad():
        splats.gauss_params["relevance"][:20] = -4.0  # relevance 0.018
        splats.gauss_params["relevance"][20:] = 4.0
    assert splats.freeze_irrelevant(0.5) == 20
    outputs = splats.get_outputs(camera())
    splats.get_loss_dict(outputs, {"image": torch.rand(HEIGHT, WIDTH, 3)})["main_loss"].backward()
    for name, parameter in splats.gauss_params.items():
        if name in ("features_rest", "relevance"):  # not in the colour loss: SH of degree 0 at step 0
            continue
        assert torch.all(parameter.grad[:20] == 0), name
        assert parameter.grad[20:].abs().sum() > 0, name


def test_the_frozen_mask_is_saved_with_the_model_and_comes_back_on_load():
    splats = model(seed=4)
    splats.optimizers = {name: torch.optim.Adam([p], lr=0.01) for name, p in splats.gauss_params.items()}
    with torch.no_grad():
        splats.gauss_params["relevance"][:] = -4.0
        splats.gauss_params["relevance"][::3] = 4.0
    splats.freeze_irrelevant(0.5)
    state = splats.state_dict()
    assert torch.equal(state["frozen"], splats.frozen)
    restored = model(seed=5)
    assert not restored.frozen.any()
    restored.load_state_dict(state)
    assert torch.equal(restored.frozen, splats.frozen) and restored.frozen.sum() == 40 - 14
    assert "frozen" not in model(seed=6).state_dict()  # nothing frozen: nothing saved (a plain splat state)


def test_after_loading_a_checkpoint_the_optimisers_step_the_models_parameters():
    """nerfstudio builds the optimisers, then loads the checkpoint; splatfacto's load replaces its parameters (the
    checkpoint's count). Rebound, each optimiser holds the model's tensor with the loaded moments, and gsplat's
    densification grows the model's Gaussians, not the stale ones."""
    from gsplat.strategy.ops import duplicate
    from nerfstudio.engine.optimizers import Optimizers

    from nerf_edit_methods.splat.configs import splatfacto_optimizers
    from nerf_edit_methods.trainer import rebind_optimizers

    trained = model(seed=7)  # 40 Gaussians, one Adam step taken
    trained.optimizers = {}
    optimizers = Optimizers(splatfacto_optimizers(), trained.get_param_groups())
    trained.get_outputs(camera())["rgb"].sum().backward()
    optimizers.optimizer_step_all()
    checkpoint = {"model": trained.state_dict(), "optimizers": {k: v.state_dict() for k, v in optimizers.optimizers.items()}}

    splats = model(seed=8, num_random=25)  # nerfstudio's order: the model, its optimisers, then the load
    fresh = Optimizers(splatfacto_optimizers(), splats.get_param_groups())
    splats.load_state_dict(checkpoint["model"])
    fresh.load_optimizers(checkpoint["optimizers"])
    assert fresh.optimizers["means"].param_groups[0]["params"][0] is not splats.gauss_params["means"]  # the bug
    rebind_optimizers(fresh, splats.get_param_groups())
    for name, parameter in splats.gauss_params.items():
        held = fresh.optimizers[name].param_groups[0]["params"][0]
        assert held is parameter and fresh.parameters[name][0] is parameter, name
        moments = fresh.optimizers[name].state[held]
        assert moments["exp_avg"].shape == parameter.shape, name
    torch.testing.assert_close(fresh.optimizers["means"].state[splats.gauss_params["means"]]["exp_avg"],
                               optimizers.optimizers["means"].state[trained.gauss_params["means"]]["exp_avg"])
    duplicate(splats.gauss_params, fresh.optimizers, splats.strategy_state, torch.arange(40) < 5)
    assert splats.num_points == 45 and torch.equal(splats.gauss_params["means"][40:], trained.gauss_params["means"][:5])


def test_while_only_the_relevance_trains_no_other_parameter_gets_a_gradient():
    splats = model(seed=9).train()
    splats.optimizers = {}
    splats.relevance_only = True
    target = torch.ones(HEIGHT, WIDTH, 1)
    losses = splats.get_loss_dict(splats.get_outputs(camera()), {"image": torch.rand(HEIGHT, WIDTH, 3), "relevance": target})
    sum(losses.values()).backward()
    assert splats.gauss_params["relevance"].grad.abs().sum() > 0
    assert all(p.grad is None for name, p in splats.gauss_params.items() if name != "relevance")
    splats.step_post_backward(splats.step)  # densification is skipped (it would need screen-space gradients)
