"""Nerfacto with a relevance field: a scalar head rendered with the main field's detached weights (nerfacto's forward
pass written out with its public parts, so the final pass's samples and weights are at hand)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Tuple, Type

import torch
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.field_components.field_heads import FieldHeadNames
from nerfstudio.field_components.mlp import MLPWithHashEncoding
from nerfstudio.field_components.spatial_distortions import SceneContraction
from nerfstudio.model_components.losses import orientation_loss, pred_normal_loss, scale_gradients_by_distance_squared
from nerfstudio.model_components.renderers import SemanticRenderer
from nerfstudio.models.nerfacto import NerfactoModel, NerfactoModelConfig
from nerfstudio.utils import colormaps
from nerfstudio.viewer.viewer_elements import ViewerControl
from torch import nn
from torch.nn import L1Loss, Parameter
from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

from nerf_edit.wys.ops import masked_relevance_loss
from nerf_edit_methods.compat import UnavailableLPIPS, offline_lpips


class RelevanceField(nn.Module):
    """Relevance r(x) in [0, 1] per sample: a small hash grid + MLP of position only.

    Its own field rather than a copy of nerfacto's: relevance is a smooth, view-independent scalar, so a
    coarse grid and a 2-layer MLP suffice at a fraction of the cost; the geometry comes from the main field's
    weights, never from this field, so it needs no density of its own.
    """

    def __init__(self, log2_hashmap_size: int = 16, num_levels: int = 4, max_res: int = 256, hidden_dim: int = 32,
                 implementation: str = "tcnn"):
        super().__init__()
        self.spatial_distortion = SceneContraction(order=float("inf"))
        self.mlp = MLPWithHashEncoding(
            num_levels=num_levels,
            min_res=16,
            max_res=max_res,
            log2_hashmap_size=log2_hashmap_size,
            features_per_level=2,
            num_layers=2,
            layer_width=hidden_dim,
            out_dim=1,
            activation=nn.ReLU(),
            out_activation=nn.Sigmoid(),
            implementation=implementation,
        )

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        """World positions [N, 3] -> relevance [N, 1]."""
        contracted = self.spatial_distortion(positions)  # [N, 3] in [-2, 2]
        return self.mlp((contracted + 2.0) / 4.0).float()  # the hash grid's unit cube, as in nerfacto's field


@dataclass
class WYSModelConfig(NerfactoModelConfig):
    """Nerfacto plus the WYS relevance field."""

    _target: Type = field(default_factory=lambda: WYSModel)
    relevance_loss_mult: float = 1.0
    """Weight of the relevance MSE (on pixels that have a relevance target)."""
    relevance_log2_hashmap_size: int = 16
    """Hash table size (log2) of the relevance field."""
    relevance_num_levels: int = 4
    """Hash grid levels of the relevance field."""
    relevance_max_res: int = 256
    """Finest hash grid resolution of the relevance field."""
    relevance_hidden_dim: int = 32
    """MLP width of the relevance field."""
    relevance_min_weight: float = 1e-4
    """Samples whose render weight is below this skip the relevance field (their contribution is negligible)."""
    use_l1: bool = True
    """While editing, the RGB loss is L1 (instruct-nerf2nerf / WYS, in2n.py ~77); off keeps nerfacto's MSE. A
    plain reconstruction phase (before edits start) always uses nerfacto's MSE, as the official recipe
    reconstructs with nerfacto first (from scratch, L1 reconstructs far worse: 16.5 vs 24.0 dB here)."""
    use_lpips: bool = True
    """While editing, add an LPIPS loss on patches of `patch_size`² rays (in2n.py ~126-129); needs the
    datamanager's patch_size to match. Where AlexNet's weights can't be had offline it falls back to L1 on the
    patches."""
    patch_size: int = 32
    """Side of the square ray patches the LPIPS loss compares (the datamanager must sample the same)."""
    lpips_loss_mult: float = 1.0
    """Weight of the LPIPS loss."""


RELEVANCE_COLORMAP = colormaps.ColormapOptions(colormap="viridis", normalize=False, colormap_min=0.0, colormap_max=1.0)
"""Relevance is a value in [0, 1]: shown with a perceptually uniform colormap over the fixed range 0..1, so the
same colour means the same relevance in every frame (a per-frame min..max stretch would make an irrelevant view
look relevant)."""


class RelevanceViewerColormap(ViewerControl):
    """When the viewer's output type becomes `relevance`, set its colormap controls to RELEVANCE_COLORMAP (the
    viewer's default for one-channel outputs is turbo, stretched to each frame's min..max). Users may change
    them afterwards. nerfstudio hands every ViewerControl found on the pipeline the viewer (ns-train, ns-viewer)."""

    def _setup(self, viewer) -> None:
        super()._setup(viewer)
        panel = getattr(viewer, "control_panel", None)
        output = getattr(panel, "_output_render", None)  # nerfstudio 1.1's control panel
        if output is None or getattr(output, "gui_handle", None) is None:
            return
        output.gui_handle.on_update(lambda _: self._apply(panel))

    @staticmethod
    def _apply(panel) -> None:
        if panel.output_render != "relevance":
            return
        panel.update_colormap_options(dimensions=1, dtype=torch.float32)  # the options the render will offer
        panel._colormap.value = RELEVANCE_COLORMAP.colormap
        panel._normalize.value = RELEVANCE_COLORMAP.normalize
        panel._min.value = RELEVANCE_COLORMAP.colormap_min
        panel._max.value = RELEVANCE_COLORMAP.colormap_max


class WYSModel(NerfactoModel):
    """Nerfacto whose outputs include `relevance` [..., 1]; works offline (LPIPS falls back when unavailable)."""

    config: WYSModelConfig

    def populate_modules(self):
        with offline_lpips():
            super().populate_modules()
            # Its own module, as instruct-nerf2nerf: the metric's running state stays out of the loss graph.
            self.lpips_loss = None
            if self.config.use_lpips and not isinstance(self.lpips, UnavailableLPIPS):
                self.lpips_loss = LearnedPerceptualImagePatchSimilarity(normalize=True)
        self.editing = False  # set by the pipeline when edits start: switches on the editing losses
        self.relevance_field = self._new_relevance_field()
        self.renderer_relevance = SemanticRenderer()
        self.relevance_viewer_colormap = RelevanceViewerColormap()

    def _new_relevance_field(self) -> RelevanceField:
        return RelevanceField(
            log2_hashmap_size=self.config.relevance_log2_hashmap_size,
            num_levels=self.config.relevance_num_levels,
            max_res=self.config.relevance_max_res,
            hidden_dim=self.config.relevance_hidden_dim,
            implementation=self.config.implementation,
        )

    @torch.no_grad()
    def reset_relevance_field(self, seed: int) -> None:
        """Back to a freshly initialised relevance field, in place (the optimiser keeps the same parameters): a field
        trained for another instruction knows nothing of this one, and unlearning it takes longer than learning.
        Drawn from `seed` on a forked generator: the same run resets to the same field, and training's own random
        stream is untouched."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            fresh = self._new_relevance_field()
        self.relevance_field.load_state_dict(fresh.state_dict())

    def start_editing(self) -> None:
        """From now on train with instruct-nerf2nerf's losses (L1, LPIPS on patches) instead of nerfacto's MSE."""
        if not self.editing and self.config.use_l1:
            self.rgb_loss = L1Loss()
        self.editing = True

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        param_groups = super().get_param_groups()
        param_groups["relevance_field"] = list(self.relevance_field.parameters())
        return param_groups

    def get_outputs(self, ray_bundle: RayBundle):
        """nerfacto's outputs and `relevance` [..., 1]: the relevance field rendered with the final pass's weights."""
        outputs, ray_samples, weights = self.render_scene(ray_bundle)
        weights = weights.detach()  # the relevance loss must not move the main field's geometry
        # Only samples that contribute to the render are worth a field query (most of them are empty space).
        contributing = weights[..., 0] > self.config.relevance_min_weight  # [..., S]
        relevance = torch.zeros_like(weights)  # [..., S, 1]
        if contributing.any():
            positions = ray_samples.frustums.get_positions()[contributing]  # [K, 3]
            relevance[contributing] = self.relevance_field(positions).to(relevance.dtype)
        outputs["relevance"] = self.renderer_relevance(relevance, weights=weights)  # [..., 1]
        return outputs

    def render_scene(self, ray_bundle: RayBundle):
        """nerfacto 1.1.5's forward pass (models/nerfacto.py lines 298-348), written out with its public parts so
        that the final pass's samples and weights are kept (nerfacto keeps them to itself outside training).
        -> (nerfacto's outputs, the final ray samples [..., S], their weights [..., S, 1])"""
        if self.training:
            self.camera_optimizer.apply_to_raybundle(ray_bundle)
        ray_samples, weights_list, ray_samples_list = self.proposal_sampler(ray_bundle, density_fns=self.density_fns)
        field_outputs = self.field.forward(ray_samples, compute_normals=self.config.predict_normals)
        if self.config.use_gradient_scaling:
            field_outputs = scale_gradients_by_distance_squared(field_outputs, ray_samples)
        weights = ray_samples.get_weights(field_outputs[FieldHeadNames.DENSITY])
        weights_list.append(weights)
        ray_samples_list.append(ray_samples)
        rgb = self.renderer_rgb(rgb=field_outputs[FieldHeadNames.RGB], weights=weights)
        with torch.no_grad():
            depth = self.renderer_depth(weights=weights, ray_samples=ray_samples)
        outputs = {"rgb": rgb, "accumulation": self.renderer_accumulation(weights=weights), "depth": depth,
                   "expected_depth": self.renderer_expected_depth(weights=weights, ray_samples=ray_samples)}
        if self.config.predict_normals:
            outputs.update(self.rendered_normals(field_outputs, weights, ray_bundle))
        if self.training:  # nerfacto keeps these for training's losses only (their memory)
            outputs["weights_list"], outputs["ray_samples_list"] = weights_list, ray_samples_list
        for i in range(self.config.num_proposal_iterations):
            outputs[f"prop_depth_{i}"] = self.renderer_depth(weights=weights_list[i], ray_samples=ray_samples_list[i])
        return outputs, ray_samples, weights

    def rendered_normals(self, field_outputs, weights: torch.Tensor, ray_bundle: RayBundle) -> Dict[str, torch.Tensor]:
        """nerfacto's normal outputs and, in training, their losses (nerfacto.py lines 325-344)."""
        normals, predicted = field_outputs[FieldHeadNames.NORMALS], field_outputs[FieldHeadNames.PRED_NORMALS]
        outputs = {"normals": self.normals_shader(self.renderer_normals(normals=normals, weights=weights)),
                   "pred_normals": self.normals_shader(self.renderer_normals(predicted, weights=weights))}
        if self.training:
            outputs["rendered_orientation_loss"] = orientation_loss(weights.detach(), normals, ray_bundle.directions)
            outputs["rendered_pred_normal_loss"] = pred_normal_loss(weights.detach(), normals.detach(), predicted)
        return outputs

    def get_loss_dict(self, outputs, batch, metrics_dict=None):
        loss_dict = super().get_loss_dict(outputs, batch, metrics_dict)
        if self.training and self.editing and self.config.use_lpips:
            loss_dict["lpips_loss"] = self.config.lpips_loss_mult * self.patch_lpips(outputs["rgb"], batch["image"])
        if "relevance" in batch and "relevance_valid" in batch:  # [R, 1] each
            loss = masked_relevance_loss(outputs["relevance"], batch["relevance"], batch["relevance_valid"])
            loss_dict["relevance_loss"] = self.config.relevance_loss_mult * loss
        return loss_dict

    def patch_lpips(self, rgb: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """LPIPS between rendered and target ray patches (in2n.py ~127-129). [R, 3] x2, R a multiple of
        patch_size², rays in patch order (nerfstudio's PatchPixelSampler) -> scalar. L1 on the patches where
        LPIPS is unavailable offline."""
        size = self.config.patch_size
        if rgb.shape[0] % (size * size):
            raise ValueError(f"the LPIPS loss needs whole {size}x{size} ray patches, got {rgb.shape[0]} rays: set "
                             f"--pipeline.datamanager.patch-size {size} (or --pipeline.model.use-lpips False)")
        out_patches = rgb.view(-1, size, size, 3).permute(0, 3, 1, 2).clamp(0, 1)  # [P, 3, size, size]
        gt_patches = image.to(rgb).view(-1, size, size, 3).permute(0, 3, 1, 2).clamp(0, 1)
        if self.lpips_loss is None:
            return torch.nn.functional.l1_loss(out_patches, gt_patches)
        return self.lpips_loss(out_patches, gt_patches)

    def get_image_metrics_and_images(
        self, outputs: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor]
    ) -> Tuple[Dict[str, float], Dict[str, torch.Tensor]]:
        metrics_dict, images_dict = super().get_image_metrics_and_images(outputs, batch)
        if isinstance(self.lpips, UnavailableLPIPS):
            metrics_dict.pop("lpips", None)  # not computed offline: report nothing rather than NaN
        images_dict["relevance"] = colormaps.apply_colormap(outputs["relevance"], RELEVANCE_COLORMAP)
        return metrics_dict, images_dict
