"""WysSplatModel (methods/splat/model.py) on the CPU: splatfacto's model with a relevance value per Gaussian,
rendered with the colour in one pass, trained by the relevance loss, loaded from a plain splatfacto state, frozen."""

import pytest
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


def test_on_the_cpu_growth_uses_the_plain_gradient_threshold_and_decides_as_the_gpu_rule():
    """splatfacto's densify_grad_thresh 0.0008 is tuned for gsplat's absolute gradients (CUDA); the CPU renderer gives
    plain ones, for which the tuned value is 0.0002 (the ratio carried over to any setting). With gradients whose
    absolute sum is that ratio (4x) above the plain ones, the CPU model's strategy grows and splits exactly what
    splatfacto's own GPU strategy (nerfstudio's DefaultStrategy: absgrad, 0.0008) does."""
    from gsplat.strategy import DefaultStrategy

    from nerf_edit_methods.splat.model import ABSGRAD_THRESHOLD, PLAIN_GRAD_THRESHOLD, growth_gradient_rule

    assert (ABSGRAD_THRESHOLD, PLAIN_GRAD_THRESHOLD) == (0.0008, 0.0002)
    assert growth_gradient_rule(0.0008, use_absgrad=True, on_cuda=True) == (True, 0.0008)
    assert growth_gradient_rule(0.0008, use_absgrad=True, on_cuda=False) == (False, 0.0002)
    assert growth_gradient_rule(0.0012, use_absgrad=True, on_cuda=False) == (False, pytest.approx(0.0003))
    assert growth_gradient_rule(0.0005, use_absgrad=False, on_cuda=False) == (False, 0.0005)  # plain as asked
    splats = model(seed=10)
    assert splats.strategy.absgrad is False and splats.strategy.grow_grad2d == pytest.approx(0.0002)
    with offline_lpips():
        gpu_rule = SplatfactoModelConfig(num_random=40, sh_degree=1).setup(
            scene_box=SceneBox(aabb=torch.tensor([[-1.0] * 3, [1.0] * 3])), num_train_data=1, metadata={}).strategy
    assert isinstance(gpu_rule, DefaultStrategy) and gpu_rule.absgrad and gpu_rule.grow_grad2d == 0.0008
    g = torch.Generator().manual_seed(11)
    width, height = 200, 100  # radii of 1 px: below the screen-size split (0.05 of the image)
    ndc = (torch.rand(1, 40, 2, generator=g) - 0.5) * 6e-4  # [1, N, 2]: norms 0 .. 4.2e-4 around the 0.0002
    grad = ndc / torch.tensor([width / 2, height / 2])  # the pixel gradients the renderer gives
    decisions = []
    for strategy, kind in ((splats.strategy, "grad"), (gpu_rule, "absgrad")):
        torch.manual_seed(12)  # split's samples
        params = torch.nn.ParameterDict({k: v.detach().clone() for k, v in splats.gauss_params.items()})
        with torch.no_grad():
            params["opacities"][:] = 2.0  # none faint: growth is what differs
        optimizers = {name: torch.optim.Adam([p], lr=0.01) for name, p in params.items()}
        means2d = torch.zeros(1, 40, 2, requires_grad=True)
        setattr(means2d, kind, grad.abs() * 4 if kind == "absgrad" else grad)  # the gradients each device gives
        info = dict(means2d=means2d, radii=torch.ones(1, 40, dtype=torch.int32), width=width, height=height,
                    n_cameras=1, gaussian_ids=None)
        strategy.step_post_backward(params, optimizers, strategy.initialize_state(), 600, info)  # a refine step
        decisions.append(params)
    ours, gpu = decisions
    assert 40 < len(gpu["means"]) < 80  # some grew, not all
    for name in gpu:
        assert torch.equal(ours[name], gpu[name]), name


def continued_model():
    """A model loaded from a state (splatfacto's load: step 30000, past stop_split_at 15000) with nerfstudio's
    optimisers, the means' schedule at its end (1.6e-6) as a 30000-step checkpoint's. Every Gaussian at opacity 0.6
    (above the reset's 0.2); refining every 3 steps, from phase step 3, the reset period 9. -> model, optimizers"""
    from nerfstudio.engine.optimizers import Optimizers

    from nerf_edit_methods.splat.configs import splatfacto_optimizers

    trained = model(seed=13)
    with torch.no_grad():
        trained.gauss_params["opacities"][:] = torch.logit(torch.tensor(0.6))
    splats = model(seed=14, num_random=10, densify_grad_thresh=1e-9, warmup_length=0, refine_every=3,
                   reset_alpha_every=3)
    splats.load_state_dict(trained.state_dict())
    assert splats.step == 30000 and splats.strategy.refine_stop_iter == 15000
    optimizers = Optimizers(splatfacto_optimizers(), splats.get_param_groups())
    schedule = optimizers.schedulers["means"]
    schedule.load_state_dict({**schedule.state_dict(), "last_epoch": 30000})
    for group in optimizers.optimizers["means"].param_groups:
        group["lr"] = group["initial_lr"] * schedule.lr_lambdas[0](30000)
    assert optimizers.optimizers["means"].param_groups[0]["lr"] == pytest.approx(1.6e-6)
    with torch.no_grad():
        splats.gauss_params["relevance"][:] = torch.where(torch.arange(40) % 3 == 0, 4.0, -4.0)[:, None]
    return splats, optimizers


def test_a_continued_run_refines_again_in_its_edit_phase_and_frozen_rows_stay_bit_identical():
    """Continued past stop_split_at (gsplat would never densify again), start_edit_phase(30001) at the first edit
    puts the means' learning rate back at 1.6e-4 and the strategy refines again, counted from there (paused 1 + 3
    steps after a reset: a refinement at phase step 6, an opacity reset at 9, none at 0). The Gaussian count
    changes, and every frozen row is bit-identical after both. The phase start is saved with the model."""
    splats, optimizers = continued_model()
    counts = []
    for step in range(30001, 30011):  # phase steps 0 .. 9
        splats.step_cb(optimizers, step)
        if step == 30001:  # the pipeline's first edit: freeze, then the edit phase
            splats.freeze_irrelevant(0.5)
            frozen_values = {name: p.detach()[splats.frozen].clone() for name, p in splats.gauss_params.items()}
            splats.start_edit_phase(step, optimizers)
            assert optimizers.optimizers["means"].param_groups[0]["lr"] == pytest.approx(1.6e-4, rel=1e-9)
        loss = splats.get_loss_dict(splats.get_outputs(camera()), {"image": torch.rand(HEIGHT, WIDTH, 3)})
        optimizers.zero_grad_all()
        loss["main_loss"].backward()
        optimizers.optimizer_step_all()
        optimizers.scheduler_step_all(step)
        splats.step_post_backward(step)
        counts.append(splats.num_points)
        if step == 30001:  # the phase's step 0 resets nothing (the edit starts from a trained scene)
            assert torch.sigmoid(splats.gauss_params["opacities"].detach()).min() > 0.5
        for name, values in frozen_values.items():
            assert torch.equal(splats.gauss_params[name].detach()[splats.frozen], values), (step, name)
    # the restarted schedule, 10 steps on: 10 of its 30000 steps from 1.6e-4 towards 1.6e-6
    assert optimizers.optimizers["means"].param_groups[0]["lr"] == pytest.approx(1.6e-4 * 0.01 ** (10 / 30000))
    assert counts[:6] == [40] * 6 and counts[6] > 40  # refined at phase step 6 (3 was within the pause)
    opacities = torch.sigmoid(splats.gauss_params["opacities"].detach()).flatten()
    assert opacities[~splats.frozen].max() <= 0.2 + 1e-6 < 0.5 < opacities[splats.frozen].min()  # reset at 9
    assert int(splats.state_dict()["edit_start"]) == 30001
    restored = model(seed=15)
    restored.load_state_dict(splats.state_dict())
    assert restored.edit_start == 30001 and torch.equal(restored.frozen, splats.frozen)


def test_a_colour_channel_below_gsplats_clamp_is_raised_so_an_edit_can_bring_it_back():
    """A red reconstruction's blue lies below gsplat's clamp (colour = max(SH·Y + 0.5, 0)): it renders 0 and gets no
    gradient, so a blue target turns the ball black. unclamp_free_colors raises the free Gaussians' channels to
    EDIT_COLOR_FLOOR: the render moves by less than that, the frozen rows stay bit-identical, and the same training
    towards a blue target then makes the view blue (without it the blue stays exactly 0)."""
    from nerfstudio.models.splatfacto import RGB2SH

    from nerf_edit_methods.splat.ops import EDIT_COLOR_FLOOR

    def render(splats) -> torch.Tensor:
        with torch.no_grad():
            rgb = splats.eval().get_outputs(camera())["rgb"]
        splats.train()
        return rgb

    def trained_blue(unclamp: bool) -> tuple:
        splats = model(seed=5, background_color="black").train()
        splats.step = 10000  # full resolution
        splats.optimizers = {name: torch.optim.Adam([p], lr=0.05) for name, p in splats.gauss_params.items()}
        with torch.no_grad():
            splats.gauss_params["opacities"][:] = torch.logit(torch.tensor(0.9))
            splats.gauss_params["features_rest"].zero_()
            splats.gauss_params["features_dc"][:] = RGB2SH(torch.tensor([0.8, 0.05, -0.3]))  # red
            splats.gauss_params["relevance"][:10] = -4.0
        splats.freeze_irrelevant(0.5)
        frozen_dc = splats.gauss_params["features_dc"][:10].clone()
        before = render(splats)
        raised = splats.unclamp_free_colors() if unclamp else 0
        after = render(splats)
        target = before[..., [2, 1, 0]].clamp_min(0)  # the red turned blue
        for _ in range(40):
            loss = (splats.get_outputs(camera())["rgb"] - target).abs().mean()
            for optimizer in splats.optimizers.values():
                optimizer.zero_grad()
            loss.backward()
            for optimizer in splats.optimizers.values():
                optimizer.step()
        rendered = render(splats)
        assert torch.equal(splats.gauss_params["features_dc"][:10], frozen_dc)
        return raised, float((after - before).abs().max()), float(before[..., 2].max()), float(rendered[..., 2].mean())

    raised, moved, blue_at_start, blue_without = trained_blue(unclamp=False)
    assert raised == 0 and moved == 0 and blue_at_start == 0 and blue_without == 0
    raised, moved, _, blue_with = trained_blue(unclamp=True)
    assert raised == 30 and moved <= EDIT_COLOR_FLOOR
    assert blue_with > 0.2, blue_with
