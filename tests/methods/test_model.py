"""The relevance field: rendered with the main field's detached weights, supervised only where targets exist."""

import pytest
import torch
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.scene_box import SceneBox

from nerf_edit_methods.model import WYSModelConfig


@pytest.fixture(scope="module")
def model():
    config = WYSModelConfig(implementation="torch", num_proposal_samples_per_ray=(16, 8), num_nerf_samples_per_ray=8,
                            log2_hashmap_size=12, relevance_min_weight=0.0, use_lpips=False)
    config.camera_optimizer.mode = "off"
    torch.manual_seed(0)
    model = config.setup(scene_box=SceneBox(aabb=torch.tensor([[-1.0, -1, -1], [1, 1, 1]])), num_train_data=4, metadata={})
    model.train()
    return model


def rays(count=64):
    generator = torch.Generator().manual_seed(1)
    origins = torch.randn(count, 3, generator=generator) * 0.1 + torch.tensor([0.0, 0.0, 2.0])
    directions = torch.nn.functional.normalize(torch.tensor([0.0, 0.0, -1.0]) + 0.2 * torch.randn(count, 3, generator=generator), dim=-1)
    return RayBundle(origins=origins, directions=directions, pixel_area=torch.full((count, 1), 1e-4),
                     camera_indices=torch.zeros(count, 1, dtype=torch.long), nears=torch.full((count, 1), 0.05),
                     fars=torch.full((count, 1), 4.0))


def batch(valid: torch.Tensor, count=64):
    return {"image": torch.rand(count, 3), "relevance": torch.ones(count, 1), "relevance_valid": valid}


def test_relevance_is_rendered_per_ray_in_unit_range(model):
    outputs = model(rays())
    assert outputs["relevance"].shape == (64, 1)
    assert (outputs["relevance"] >= 0).all() and (outputs["relevance"] <= outputs["accumulation"] + 1e-5).all()


def test_relevance_loss_moves_only_the_relevance_field(model):
    model.zero_grad()
    outputs = model(rays())
    loss = model.get_loss_dict(outputs, batch(torch.ones(64, 1, dtype=torch.bool)), model.get_metrics_dict(outputs, batch(torch.ones(64, 1, dtype=torch.bool))))["relevance_loss"]
    loss.backward()
    relevance_grads = [p.grad for p in model.relevance_field.parameters() if p.grad is not None]
    assert relevance_grads and any(g.abs().sum() > 0 for g in relevance_grads)
    for name, parameter in list(model.field.named_parameters()) + list(model.proposal_networks.named_parameters()):
        assert parameter.grad is None or parameter.grad.abs().sum() == 0, name


def test_pixels_without_target_are_masked_out(model):
    outputs = model(rays())
    valid = torch.zeros(64, 1, dtype=torch.bool)
    empty = model.get_loss_dict(outputs, batch(valid), model.get_metrics_dict(outputs, batch(valid)))["relevance_loss"]
    assert empty.item() == 0  # wys.ops.masked_relevance_loss: no target, no loss (the splat model's rule too)
    valid[:16] = True
    targets = batch(valid)
    targets["relevance"][16:] = 123.0  # would dominate the loss if it were not masked
    loss = model.get_loss_dict(outputs, targets, model.get_metrics_dict(outputs, targets))["relevance_loss"]
    expected = ((outputs["relevance"][:16] - 1.0) ** 2).mean()
    torch.testing.assert_close(loss, expected)


def test_relevance_field_has_its_own_parameter_group(model):
    groups = model.get_param_groups()
    assert set(groups) >= {"fields", "proposal_networks", "relevance_field"}
    relevance_ids = {id(p) for p in groups["relevance_field"]}
    assert relevance_ids.isdisjoint(id(p) for p in groups["fields"])


def test_rgb_loss_is_mse_to_reconstruct_and_l1_to_edit(model):
    """Reconstruction is nerfacto's (MSE); while editing, in2n.py ~77-78 (SamsungLabs/WatchYourSteps):
    `self.rgb_loss = L1Loss()` when use_l1 (the default)."""
    outputs = model(rays())
    targets = batch(torch.zeros(64, 1, dtype=torch.bool))

    def rgb_loss():
        return model.get_loss_dict(outputs, targets, model.get_metrics_dict(outputs, targets))["rgb_loss"]

    assert not model.editing
    torch.testing.assert_close(rgb_loss(), (targets["image"] - outputs["rgb"]).square().mean())
    model.start_editing()
    try:
        torch.testing.assert_close(rgb_loss(), (targets["image"] - outputs["rgb"]).abs().mean())
    finally:
        model.editing, model.rgb_loss = False, torch.nn.MSELoss()


def test_lpips_loss_compares_whole_ray_patches():
    """in2n.py ~127-129: `outputs["rgb"].view(-1, p, p, 3).permute(0, 3, 1, 2) * 2 - 1` (our LPIPS is built with
    normalize=True, so it takes [0, 1] and does the `* 2 - 1` itself), weighted by lpips_loss_mult."""
    config = WYSModelConfig(implementation="torch", num_proposal_samples_per_ray=(16, 8), num_nerf_samples_per_ray=8,
                            log2_hashmap_size=12, use_lpips=True, patch_size=4, lpips_loss_mult=0.5)
    config.camera_optimizer.mode = "off"
    model = config.setup(scene_box=SceneBox(aabb=torch.tensor([[-1.0, -1, -1], [1, 1, 1]])), num_train_data=4, metadata={})
    model.train()
    seen = []

    def planted_lpips(out_patches, gt_patches):  # any function of the patches: the test checks what it is given
        seen.append((out_patches, gt_patches))
        return (out_patches - gt_patches).square().mean() + 1.0

    model.lpips_loss = planted_lpips
    outputs = model(rays())  # 64 rays = 4 patches of 4x4
    targets = batch(torch.zeros(64, 1, dtype=torch.bool))
    assert "lpips_loss" not in model.get_loss_dict(outputs, targets, model.get_metrics_dict(outputs, targets))
    model.start_editing()  # LPIPS is an editing loss, as in instruct-nerf2nerf
    loss = model.get_loss_dict(outputs, targets, model.get_metrics_dict(outputs, targets))["lpips_loss"]
    out_patches, gt_patches = seen[0]
    assert out_patches.shape == (4, 3, 4, 4)
    for k, i, j in [(0, 0, 0), (1, 2, 3), (3, 3, 1)]:
        torch.testing.assert_close(out_patches[k, :, i, j], outputs["rgb"][k * 16 + i * 4 + j].clamp(0, 1))
        torch.testing.assert_close(gt_patches[k, :, i, j], targets["image"][k * 16 + i * 4 + j])
    torch.testing.assert_close(loss, 0.5 * planted_lpips(out_patches, gt_patches))
    model.lpips_loss = None  # AlexNet unavailable offline: L1 on the same patches
    fallback = model.get_loss_dict(outputs, targets, model.get_metrics_dict(outputs, targets))["lpips_loss"]
    torch.testing.assert_close(fallback, 0.5 * (out_patches - gt_patches).abs().mean())
    with pytest.raises(ValueError, match="patch-size 4"):
        model.patch_lpips(outputs["rgb"][:60], targets["image"][:60])


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("normals", [False, True])
def test_the_forward_pass_is_nerfactos_own(training, normals):
    """WYSModel writes nerfacto's forward pass out (to keep the final samples and weights, which nerfacto keeps to
    itself outside training): every output equals nerfstudio's NerfactoModel.get_outputs on the same weights, rays
    and random draws (the proposal sampler's jitter), in training and in evaluation, with predicted normals too."""
    from nerfstudio.models.nerfacto import NerfactoModel

    from nerf_edit_methods.compat import offline_lpips

    config = WYSModelConfig(implementation="torch", num_proposal_samples_per_ray=(16, 8), num_nerf_samples_per_ray=8,
                            log2_hashmap_size=12, use_lpips=False, predict_normals=normals)
    config.camera_optimizer.mode = "off"
    box = SceneBox(aabb=torch.tensor([[-1.0, -1, -1], [1, 1, 1]]))
    torch.manual_seed(0)
    ours = config.setup(scene_box=box, num_train_data=4, metadata={})
    with offline_lpips():  # nerfacto's LPIPS metric: its AlexNet weights can't be downloaded here
        reference = NerfactoModel(config, scene_box=box, num_train_data=4, metadata={})
    state = {key: value for key, value in ours.state_dict().items() if not key.startswith("relevance_field.")}
    reference.load_state_dict(state, strict=False)
    ours.train(training), reference.train(training)
    outputs = {}
    for name, model in (("ours", ours), ("nerfacto", reference)):
        torch.manual_seed(3)
        with torch.set_grad_enabled(training):
            outputs[name] = model.get_outputs(rays())
    assert set(outputs["ours"]) == set(outputs["nerfacto"]) | {"relevance"}
    for key, value in outputs["nerfacto"].items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(outputs["ours"][key], value, msg=key)
    if training:
        for mine, theirs in zip(outputs["ours"]["weights_list"], outputs["nerfacto"]["weights_list"]):
            torch.testing.assert_close(mine, theirs)
