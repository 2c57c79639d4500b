"""splatfacto with WYS's relevance per Gaussian, a background that can be frozen, and a renderer for any device.

- **Relevance per Gaussian**: `gauss_params["relevance"]` [N, 1] (a logit; 0.5 before training) with its own
  optimiser entry, so gsplat's densification carries it to split and duplicated Gaussians like every other
  parameter; rendered with the colour in one rasterisation as an extra channel (`relevance` output, [H, W, 1]).
- **Frozen background**: `freeze_irrelevant(tau)` freezes the Gaussians whose relevance is below τ
  (FrozenBackgroundStrategy, ops.py); the renderer sees them detached. The mask is saved with the model (key
  `frozen`), so a resumed run keeps it. While `relevance_only` is on (the relevance field's warm-up before the first
  edit) only the relevance values train and nothing is densified: the Gaussians frozen next are the
  reconstruction's, unchanged.
- **Edit phase**: `start_edit_phase(step)` (at the instruction's first edit) makes the strategy refine again,
  counted from that step, and restarts the Gaussians' learning-rate schedules; densification then touches only the
  free Gaussians.
- **Relevance traced per Gaussian**: `trace_relevance(cameras, targets)` gives each Gaussian the rendering-weighted
  mean of 2D relevance targets over the views (rasterize.weight_sums), e.g. to initialise the relevance logits.
- **Densification threshold by device**: `growth_gradient_rule` (absgrad's threshold on CUDA, the plain-gradient
  one on the CPU renderer).
- **Any device**: splatfacto 1.1.5 renders with gsplat's CUDA kernels and calls `.cuda()` (splatfacto.py lines 261,
  579); `get_outputs` here is splatfacto's with `rasterize` (CUDA: gsplat's `rasterization`; CPU: the pure-torch
  renderer, for tests and small scenes) and the intrinsics on the model's device.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Type, Union

import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.engine.optimizers import Optimizers
from nerfstudio.models.splatfacto import SplatfactoModel, SplatfactoModelConfig, get_viewmat
from torch.nn import Parameter

from nerf_edit.wys.ops import masked_relevance_loss
from nerf_edit_methods.compat import offline_lpips
from nerf_edit_methods.splat.ops import detach_frozen, free_mask, freeze_rows, frozen_mask, lift_clamped_colors
from nerf_edit_methods.splat.rasterize import rasterize_with_channels, weight_sums
from nerf_edit_methods.splat.strategy import FrozenBackgroundStrategy

# splatfacto's densify_grad_thresh 0.0008 is tuned for gsplat's absolute gradients (nerfstudio commit b190874e "Use
# AbsGrad to get better results with less gaussians (#3113)" changed 0.0002 -> 0.0008 together with use_absgrad
# True; gsplat's DefaultStrategy docstring, default.py lines 29-31: absgrad "requires to set the `grow_grad2d` to a
# higher value, e.g., 0.0008"). The plain-gradient threshold is 0.0002: Inria 3DGS (arguments/__init__.py,
# densify_grad_threshold), gsplat's default (default.py line 80), splatfacto before that commit (v1.0.3).
ABSGRAD_THRESHOLD = 0.0008
PLAIN_GRAD_THRESHOLD = 0.0002


def growth_gradient_rule(densify_grad_thresh: float, use_absgrad: bool, on_cuda: bool) -> Tuple[bool, float]:
    """The strategy's (absgrad, grow_grad2d) for splatfacto's settings on this device. Absolute 2D gradients come
    from gsplat's CUDA backward only; the CPU renderer gives plain ones. So where absgrad was asked for and the
    renderer is the CPU one, the threshold is carried over to plain gradients by the ratio of the two tuned values:
    densify_grad_thresh / 0.0008 · 0.0002 (splatfacto's 0.0008 -> 0.0002), so the CPU grows what the GPU rule
    would for gradients whose absolute sum is that ratio above the plain one. Otherwise the settings as given."""
    if use_absgrad and not on_cuda:
        return False, densify_grad_thresh / ABSGRAD_THRESHOLD * PLAIN_GRAD_THRESHOLD
    return use_absgrad, densify_grad_thresh


class RelevanceTrace(NamedTuple):
    """Relevance traced per Gaussian from 2D targets: relevance [N] (Σ w·R / Σ w over every view's pixels, w = α·T
    of the Gaussian there; 0.5, the field's neutral value, where no view shows it), weights [N] (Σ w) and unseen
    [N] bool (Σ w = 0: no view's pixel received any of it)."""

    relevance: torch.Tensor
    weights: torch.Tensor
    unseen: torch.Tensor


@dataclass
class WysSplatModelConfig(SplatfactoModelConfig):
    """splatfacto plus a relevance value per Gaussian and a background that can be frozen."""

    _target: Type = field(default_factory=lambda: WysSplatModel)
    relevance_loss_mult: float = 1.0
    """Weight of the relevance MSE on the pixels that have a relevance target."""
    edit_lr_scales: Dict[str, float] = field(default_factory=dict)
    """Learning-rate multipliers of the Gaussian parameter groups for the edit phase (start_edit_phase), applied to
    the whole restarted schedule. Empty by default: the edit starts at splatfacto's initial rates (means 1.6e-4
    decaying again). GaussianEditor raises them for editing (webui.py "Learning Rate Scaler": xyz 3.0, colour 3.0,
    opacity, scale and rotation 2.0) alongside its anchor loss, which wys-splat has not: e.g. `means 3.0
    features_dc 3.0 opacities 2.0 scales 2.0 quats 2.0` for its values."""


class WysSplatModel(SplatfactoModel):
    config: WysSplatModelConfig

    def populate_modules(self):
        if self.seed_points is not None and not torch.cuda.is_available():
            self.seed_points = tuple(points.cpu() for points in self.seed_points)  # splatfacto's `.cuda()` at 261
        with _cuda_calls_stay_put(), offline_lpips():  # LPIPS's AlexNet weights: a download
            super().populate_modules()
        self.gauss_params["relevance"] = Parameter(torch.zeros(self.num_points, 1))  # logit 0: relevance 0.5
        settings = {f.name: getattr(self.strategy, f.name) for f in dataclasses.fields(self.strategy)}
        # absolute 2D gradients come from gsplat's CUDA kernels only; the CPU renderer gives plain ones
        settings["absgrad"], settings["grow_grad2d"] = growth_gradient_rule(
            self.config.densify_grad_thresh, self.config.use_absgrad, torch.cuda.is_available())
        self.strategy = FrozenBackgroundStrategy(**settings)
        self.strategy_state = self.strategy.initialize_state(scene_scale=1.0)
        self.relevance_only = False

    def start_editing(self) -> None:
        """The edit schedule's switch to editing: splatfacto's own losses (L1 + SSIM) train on edited views as on
        photos, so nothing changes here (the nerfacto model switches to instruct-nerf2nerf's losses)."""

    def reset_relevance(self) -> None:
        """A new instruction's relevance: every Gaussian back to 0.5 (its logit 0), and no Gaussian frozen."""
        with torch.no_grad():
            self.gauss_params["relevance"].zero_()
        self.strategy_state["frozen"] = None
        self.strategy_state["edit_start"] = None

    def set_relevance(self, relevance: torch.Tensor) -> None:
        """Set each Gaussian's relevance [N] in [0, 1] (its logit, clamped to 1e-4 .. 1 - 1e-4), e.g. a trace's."""
        with torch.no_grad():
            self.gauss_params["relevance"][:] = torch.logit(relevance.clamp(1e-4, 1 - 1e-4)).view(-1, 1)

    @property
    def relevance(self) -> torch.Tensor:
        """[N] relevance of each Gaussian in [0, 1]."""
        return torch.sigmoid(self.gauss_params["relevance"]).squeeze(-1)

    @property
    def frozen(self) -> torch.Tensor:
        """[N] bool: the Gaussians that no longer change."""
        mask = frozen_mask(self.strategy_state)
        return torch.zeros(self.num_points, dtype=torch.bool, device=self.device) if mask is None else mask

    @property
    def has_frozen_set(self) -> bool:
        """Whether this instruction's Gaussians were frozen (an empty set counts: it was decided)."""
        return frozen_mask(self.strategy_state) is not None

    def freeze_irrelevant(self, tau: float) -> int:
        """Freeze every Gaussian whose relevance is below `tau`; returns how many are frozen now."""
        freeze_rows(self.gauss_params, self.optimizers, self.strategy_state, self.relevance.detach() < tau)
        return int(self.frozen.sum())

    def unclamp_free_colors(self) -> int:
        """Keep every free Gaussian's colour channels where gsplat's clamp at 0 still passes a gradient
        (ops.lift_clamped_colors); frozen ones are untouched. With sh_degree 0 colours are a sigmoid: nothing to do.
        -> how many channels were raised"""
        if self.config.sh_degree <= 0:
            return 0
        return lift_clamped_colors(self.gauss_params["features_dc"].data, free_mask(self.strategy_state))

    @property
    def edit_start(self) -> Optional[int]:
        """The step this instruction's edit phase started at (start_edit_phase), or None."""
        return self.strategy_state.get("edit_start")

    def start_edit_phase(self, step: int, optimizers: Optional[Optimizers] = None) -> None:
        """The instruction's first edit: the strategy refines again, its window and reset period counted from `step`
        (the free Gaussians only), and the Gaussian parameter groups' learning-rate schedules start over, as for a
        fresh training (config.edit_lr_scales multiplying them), e.g. means back at 1.6e-4 from the 1.6e-6 a
        30000-step reconstruction ends at. `optimizers`: the trainer's (nerfstudio's Optimizers, with their
        schedules); None restarts no schedule."""
        self.strategy.start_edit_phase(self.strategy_state, step)
        if optimizers is None:
            return
        for name in self.gauss_params:
            optimizer, settings = optimizers.optimizers.get(name), optimizers.config.get(name)
            if optimizer is None or settings is None:
                continue
            lr = settings["optimizer"].lr * self.config.edit_lr_scales.get(name, 1.0)
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"] = lr
            if name in optimizers.schedulers:  # a new schedule from its first step, based at `lr`
                optimizers.schedulers[name] = settings["scheduler"].setup().get_scheduler(
                    optimizer=optimizer, lr_init=settings["optimizer"].lr)

    def trace_relevance(self, cameras: Cameras, targets: torch.Tensor, valid: Optional[torch.Tensor] = None,
                        camera_indices: Optional[Sequence[int]] = None) -> RelevanceTrace:
        """Each Gaussian's relevance from 2D relevance targets [V, H, W] (or [V, H, W, 1]) of `cameras` [V] at their
        resolution: Σ_views Σ_pixels w·R / Σ w, w = α·T of the Gaussian at the pixel (rasterize.weight_sums, one
        view at a time). `valid` (shaped as targets, bool): only those pixels count (both sums). `camera_indices`:
        the views' training indices, for the optimised poses."""
        targets = targets.reshape(len(cameras), *targets.shape[1:3]).to(self.device)
        if valid is not None:
            valid = valid.reshape(targets.shape).to(self.device, torch.bool)
        weighted = torch.zeros(self.num_points, device=self.device)
        weights = torch.zeros(self.num_points, device=self.device)
        params = {name: value.detach() for name, value in self.gauss_params.items()}
        for view in range(len(cameras)):
            camera = cameras[view : view + 1].to(self.device)
            if camera_indices is not None:
                camera.metadata = {**(camera.metadata or {}), "cam_idx": int(camera_indices[view])}
            width, height = int(camera.width.item()), int(camera.height.item())
            if (height, width) != tuple(targets.shape[1:3]):
                raise ValueError(f"view {view}: target {tuple(targets.shape[1:3])}, camera {(height, width)}")
            viewmat = get_viewmat(self.camera_optimizer.apply_to_camera(camera))  # [1, 4, 4]
            Ks = camera.get_intrinsics_matrices().to(self.device)  # [1, 3, 3]
            view_weighted, view_weights = weight_sums(
                params["means"], params["quats"], torch.exp(params["scales"]),
                torch.sigmoid(params["opacities"]).squeeze(-1), viewmat, Ks, width, height, targets[view : view + 1],
                None if valid is None else valid[view : view + 1], rasterize_mode=self.config.rasterize_mode)
            weighted += view_weighted
            weights += view_weights
        unseen = weights <= 0
        relevance = torch.where(unseen, torch.full_like(weights, 0.5), weighted / weights.clamp_min(1e-12))
        return RelevanceTrace(relevance, weights, unseen)

    def get_gaussian_param_groups(self) -> Dict[str, List[Parameter]]:
        return {**super().get_gaussian_param_groups(), "relevance": [self.gauss_params["relevance"]]}

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if frozen_mask(self.strategy_state) is not None:
            destination[prefix + "frozen"] = self.frozen.cpu()
        if self.edit_start is not None:
            destination[prefix + "edit_start"] = torch.tensor(self.edit_start)

    def load_state_dict(self, dict, **kwargs):  # type: ignore  # nerfstudio's signature
        if "gauss_params.means" in dict and "gauss_params.relevance" not in dict:  # a splatfacto run: no relevance yet
            dict["gauss_params.relevance"] = torch.zeros(dict["gauss_params.means"].shape[0], 1)
        frozen, edit_start = dict.pop("frozen", None), dict.pop("edit_start", None)
        super().load_state_dict(dict, **kwargs)
        self.strategy_state = self.strategy.initialize_state(scene_scale=1.0)  # statistics of the old Gaussians go
        self.strategy_state["frozen"] = None if frozen is None else frozen.to(self.device, torch.bool)
        self.strategy_state["edit_start"] = None if edit_start is None else int(edit_start)

    def step_post_backward(self, step):
        """Densification after each step (splatfacto's callback), but not while only the relevance trains: the
        Gaussians get no screen-space gradients then, and must stay the reconstruction's."""
        if not self.relevance_only:
            super().step_post_backward(step)

    def get_outputs(self, camera: Cameras) -> Dict[str, Union[torch.Tensor, List]]:
        """splatfacto's outputs (rgb, depth, accumulation, background), `relevance` [H, W, 1] and `frozen` [H, W, 1]
        (how much of each pixel frozen Gaussians cover: their share of the accumulated opacity; the viewer and
        ns-render show it), on any device."""
        if not isinstance(camera, Cameras):
            return {}
        if self.training:
            assert camera.shape[0] == 1, "Only one camera at a time"
            camera_to_world = self.camera_optimizer.apply_to_camera(camera)
        else:
            camera_to_world = camera.camera_to_worlds
        seen = self.seen_params()
        if seen is None:  # the crop box holds no Gaussian
            empty = self.get_empty_outputs(int(camera.width.item()), int(camera.height.item()), self.background_color)
            return {**empty, "relevance": torch.zeros_like(empty["accumulation"]),
                    "frozen": torch.zeros_like(empty["accumulation"])}
        viewmat, Ks, width, height = self.camera_matrices(camera, camera_to_world)
        with_depth = self.config.output_depth_during_training or not self.training
        sh = torch.cat([seen["features_dc"][:, None, :], seen["features_rest"]], dim=1)  # [N, K, 3]
        if self.config.sh_degree > 0:
            sh_degree = min(self.step // self.config.sh_degree_interval, self.config.sh_degree)
        else:  # splatfacto's colour-only mode: the DC term is a logit
            sh, sh_degree = torch.sigmoid(sh).squeeze(1), None
        render, alpha, self.info = rasterize_with_channels(
            seen["means"], seen["quats"], torch.exp(seen["scales"]), torch.sigmoid(seen["opacities"]).squeeze(-1),
            sh, torch.cat([torch.sigmoid(seen["relevance"]), seen["frozen"]], dim=-1), viewmat, Ks, width, height, sh_degree,
            near_plane=0.01, far_plane=1e10, render_mode="RGB+ED" if with_depth else "RGB",
            rasterize_mode=self.config.rasterize_mode, absgrad=self.strategy.absgrad,
        )  # [1, H, W, 3 + 2 (+ 1)], [1, H, W, 1]
        if self.training and not self.relevance_only:
            self.strategy.step_pre_backward(self.gauss_params, self.optimizers, self.strategy_state, self.step,
                                            self.info)
        background = self._get_background_color()
        rgb = torch.clamp(render[..., :3] + (1 - alpha) * background, 0.0, 1.0)
        if self.config.use_bilateral_grid and self.training and camera.metadata and "cam_idx" in camera.metadata:
            rgb = self._apply_bilateral_grid(rgb, camera.metadata["cam_idx"], height, width)
        depth = None
        if with_depth:
            depth = render[..., 5:6]
            depth = torch.where(alpha > 0, depth, depth.detach().max()).squeeze(0)
        if background.shape[0] == 3 and not self.training:
            background = background.expand(height, width, 3)
        return {"rgb": rgb.squeeze(0), "depth": depth, "accumulation": alpha.squeeze(0), "background": background,
                "relevance": render[..., 3:4].squeeze(0),  # composited as a colour: 0 where nothing is
                "frozen": render[..., 4:5].squeeze(0).detach()}

    def seen_params(self) -> Optional[Dict[str, torch.Tensor]]:
        """The Gaussians' parameters as the renderer sees them: frozen rows detached (and, while only the relevance
        trains, everything but it), less what the crop box leaves out when rendering for the viewer; None when it
        leaves nothing."""
        seen = {name: detach_frozen(value, self.strategy_state) for name, value in self.gauss_params.items()}
        seen["frozen"] = self.frozen.float()[:, None]  # [N, 1], rendered as a channel
        if self.relevance_only:
            seen = {name: value if name == "relevance" else value.detach() for name, value in seen.items()}
        if self.crop_box is not None and not self.training:
            inside = self.crop_box.within(seen["means"]).squeeze()
            if inside.sum() == 0:
                return None
            seen = {name: value[inside] for name, value in seen.items()}
        return seen

    def camera_matrices(self, camera: Cameras, camera_to_world: torch.Tensor):
        """The world-to-camera matrix [1, 4, 4], intrinsics [1, 3, 3] and size at splatfacto's current downscale.
        -> (viewmat, Ks, width, height)"""
        scale = self._get_downscale_factor()
        camera.rescale_output_resolution(1 / scale)
        viewmat = get_viewmat(camera_to_world)  # [1, 4, 4]
        Ks = camera.get_intrinsics_matrices().to(self.device)  # [1, 3, 3]
        width, height = int(camera.width.item()), int(camera.height.item())
        self.last_size = (height, width)
        camera.rescale_output_resolution(scale)
        return viewmat, Ks, width, height

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, torch.Tensor]:
        """splatfacto's losses, and the relevance MSE where the batch has a relevance target ([H, W, 1], with
        `relevance_valid` [H, W, 1] bool saying where)."""
        losses = super().get_loss_dict(outputs, batch, metrics_dict)
        if "relevance" in batch:
            target = self._downscale_if_required(batch["relevance"].float())  # [h, w, 1]
            valid = batch.get("relevance_valid")
            valid = torch.ones_like(target) if valid is None else self._downscale_if_required(valid.float())
            loss = masked_relevance_loss(outputs["relevance"], target, valid)
            losses["relevance_loss"] = self.config.relevance_loss_mult * loss
        return losses


class _cuda_calls_stay_put:
    """While splatfacto's populate_modules runs without CUDA, `Tensor.cuda()` returns the tensor where it is (its
    seed-point colours are made with `.cuda()`, splatfacto.py line 261)."""

    def __enter__(self):
        self.real = torch.Tensor.cuda
        if not torch.cuda.is_available():
            torch.Tensor.cuda = lambda tensor, *args, **kwargs: tensor  # type: ignore[method-assign]

    def __exit__(self, *exc):
        torch.Tensor.cuda = self.real  # type: ignore[method-assign]
