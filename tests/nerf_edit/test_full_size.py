"""Conformance tier: the real architectures (full size, random weights, nerf_edit.models.full_size) run once on the
CPU at a small input, with the properties their tiny tests check. `make test-conformance`; each test's seconds and
peak memory are in docs/benchmarks.md ("Conformance tier").

Sizes are checked against the published parameter counts (SD-1.5's model card: an 860M UNet; the DINO README:
ViT-B/8 85M; OpenCLIP's table: ViT-H/14 986M in all, 632M of it the image tower; TimeSformer paper, Table 8:
121.4M), so a builder that drifts from the real configuration fails here.
"""

import numpy as np
import pytest
import torch

from nerf_edit.config.editor import EditorConfig
from nerf_edit.models import full_size
from nerf_edit.models.ip2p import InstructPix2Pix

pytestmark = pytest.mark.conformance

# The same tests on a CPU here (the smallest input the 4-level SD UNet takes without padding: 64², an 8² latent) and
# on a CUDA GPU at the real 512² (marker `gpu`: skipped without one).
SETUPS = [pytest.param(("cpu", 64), id="cpu-64"), pytest.param(("cuda", 512), id="cuda-512", marks=pytest.mark.gpu)]


def parameters(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module", params=SETUPS)
def setup(request):
    """(device, image size)"""
    return request.param


@pytest.fixture(scope="module")
def ip2p(setup):
    return InstructPix2Pix(full_size.build_full_size_ip2p_pipeline().to(setup[0]))


@pytest.fixture(scope="module")
def scene(setup):
    """Two views with a red disc; the mask is a square around it. -> images [2, 3, S, S], mask [2, S, S]"""
    device, size = setup
    k = size / 64  # the layout is drawn for 64² and scaled
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = ((y - 32 * k) ** 2 + (x - 30 * k) ** 2 < (12 * k) ** 2).float()
    images = torch.stack([torch.full((size, size), 0.7), torch.full((size, size), 0.75), torch.full((size, size), 0.8)])
    images = torch.where(disc.bool(), torch.tensor([0.85, 0.1, 0.1])[:, None, None], images)
    images = torch.stack([images, images.flip(-1)])
    mask = torch.zeros(2, size, size, dtype=torch.bool)
    mask[:, int(16 * k) : int(48 * k), int(14 * k) : int(48 * k)] = True
    return images.to(device), mask.to(device)


def test_ip2p_has_sd15s_unet_and_its_attention_levels(ip2p):
    from nerf_edit.vimaedit.attention import attention_factors, grounding_factors

    unet = parameters(ip2p.unet)
    print(f"UNet {unet:,}, VAE {parameters(ip2p.vae):,}, text encoder {parameters(ip2p.text_encoder):,} parameters")
    assert 859e6 < unet < 860e6  # SD-1.5's 859.52M and IP2P's 4 more input channels (11 520)
    assert 83e6 < parameters(ip2p.vae) < 84e6 and 123e6 < parameters(ip2p.text_encoder) < 124e6
    assert attention_factors(ip2p.unet) == [1, 2, 4]
    # ViMAEdit grounds with cross-attention at latent/4 and self-attention at latent/2: 16² and 32² at 512²
    assert grounding_factors(ip2p.unet) == (4, 2)


def test_wys_relevance_and_guided_edit_keep_every_pixel_outside_the_mask(ip2p, scene, setup):
    from nerf_edit.wys.editor import RelevanceGuidedEditor

    images, mask = scene
    size = setup[1]
    editor = RelevanceGuidedEditor(EditorConfig(device=setup[0], steps=2), ip2p=ip2p)
    relevance = editor.relevance(images, "turn the ball blue", generator=torch.Generator().manual_seed(0))
    assert relevance.shape == (2, size, size) and torch.isfinite(relevance).all()
    assert relevance.min() >= 0 and relevance.max() <= 1
    result = editor.edit(images, "turn the ball blue", mask=mask, generator=torch.Generator().manual_seed(0))
    outside = ~mask[:, None].expand_as(images)
    assert torch.equal(result.images[outside], images[outside])
    assert torch.isfinite(result.images).all() and (result.images[~outside] != images[~outside]).any()



def sd15_ddim():
    """DDIM as instruct-nerf2nerf and WYS take it (`CompVis/stable-diffusion-v1-4` scheduler_config.json: betas
    0.00085-0.012 scaled_linear over 1000 steps, steps_offset 1, clip_sample false, set_alpha_to_one false), with
    trailing spacing, written out here independently of our code."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                         steps_offset=1, clip_sample=False, set_alpha_to_one=False, timestep_spacing="trailing")


def diffusers_ip2p(ip2p, scheduler):
    """diffusers' own IP2P pipeline on the same UNet, VAE, text encoder and tokenizer (no copies)."""
    from diffusers import StableDiffusionInstructPix2PixPipeline

    pipe = StableDiffusionInstructPix2PixPipeline(vae=ip2p.vae, text_encoder=ip2p.text_encoder, tokenizer=ip2p.tokenizer,
                                                  unet=ip2p.unet, scheduler=scheduler, safety_checker=None,
                                                  feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.no_grad()
def test_the_ip2p_edit_of_wys_and_zone_is_diffusers_pipeline_on_the_real_networks(ip2p, scene, setup):
    """What WYS's and ZONE's edits are made of, on the full-size networks: the global IP2P edit (strength 1, from
    noise, 2 steps, s_T 7.5, s_I 1.5) with our DDIM equals diffusers' StableDiffusionInstructPix2PixPipeline with
    SD-1.x's DDIM, and ZONE's fused edit without a fusion model under the zone-official preset's sampler equals the
    pipeline with `DPMSolverMultistepScheduler.from_config(<IP2P's config>, final_sigmas_type="sigma_min")`
    (lsl001006/ZONE inference.py ~15, its pinned diffusers 0.18's last step): same noise from the same seed."""
    from diffusers import DPMSolverMultistepScheduler

    from nerf_edit.config.presets import official_zone_config
    from nerf_edit.editing.global_editor import GlobalEditor
    from nerf_edit.zone.localizer import ZoneLocalizer
    from nerf_edit.zone.parts import ZoneParts

    device, _ = setup
    images, instruction = scene[0][:1], "turn the ball blue"
    settings = dict(num_inference_steps=2, guidance_scale=7.5, image_guidance_scale=1.5)
    expected = diffusers_ip2p(ip2p, sd15_ddim())(instruction, image=images, generator=torch.Generator().manual_seed(7),
                                                 output_type="pt", **settings).images
    editor = GlobalEditor(EditorConfig(device=device, steps=2, guidance_scale=7.5, image_guidance_scale=1.5), ip2p=ip2p)
    ours = editor.edit(images, instruction, generator=torch.Generator().manual_seed(7)).images
    assert ((expected > 0.02) & (expected < 0.98)).float().mean() > 0.5  # not clamped flat: the pixels carry the UNet
    torch.testing.assert_close(ours, expected.to(ours), atol=1e-4, rtol=1e-4)

    solver = DPMSolverMultistepScheduler.from_config(ip2p.model_scheduler_config, final_sigmas_type="sigma_min")
    expected = diffusers_ip2p(ip2p, solver)(instruction, image=images, generator=torch.Generator().manual_seed(7),
                                            output_type="latent", **settings).images
    config = official_zone_config(device=device, steps=2)
    encoded = ip2p.encode_inputs(images, images)
    noise = ip2p.draw_noise(images, torch.Generator().manual_seed(7))
    parts = ZoneParts(fusion=None, segmenter=None, classify=lambda _: "change")
    fused = ZoneLocalizer(config, ip2p, parts).fused_edit(encoded, instruction, 1.0, noise).latents
    torch.testing.assert_close(fused, expected.to(fused), atol=1e-4, rtol=1e-4)


# SD-1.5's attention layers (stable-diffusion-v1-5 unet/config.json: CrossAttnDownBlock2D ×3 then DownBlock2D,
# UpBlock2D then CrossAttnUpBlock2D ×3, layers_per_block 2, a cross-attention mid block; each CrossAttn block has one
# transformer per resnet: 2 in a down block, 3 in an up block): block -> (its attention layers, its downsampling
# of the latent: 1 is 64² at 512², 2 is 32², 4 is 16², 8 is 8²).
SD15_ATTENTION = {"down_blocks.0": (2, 1), "down_blocks.1": (2, 2), "down_blocks.2": (2, 4), "mid_block": (1, 8),
                  "up_blocks.1": (3, 4), "up_blocks.2": (3, 2), "up_blocks.3": (3, 1)}


def sd15_layers(kind: str, factor=None) -> list:
    """SD-1.5's `attn1` (self) or `attn2` (cross) layer names, all or those at 1/factor of the latent."""
    return sorted(f"{block}.attentions.{i}.transformer_blocks.0.{kind}" for block, (count, at) in SD15_ATTENTION.items()
                  if factor in (None, at) for i in range(count))


def test_vimaedit_grounding_runs_on_the_real_unets_levels(ip2p, scene, setup, monkeypatch):
    """The layers whose maps the grounding's attention control actually stores (recorded as it stores them, the
    layer named by a hook on every attention module): on SD-1.5's UNet, cross-attention at 16² of 512² (latent/4:
    down_blocks.2's 2 and up_blocks.1's 3 layers, P2P's `res=16` store) and self-attention at 32² (down_blocks.1,
    up_blocks.2), once per step each, and no other layer (none at 64², none of the 8² mid block); here 2² and 4² of
    the 8² latent at 64²."""
    from nerf_edit.vimaedit import localizer as vimaedit_localizer
    from nerf_edit.vimaedit.attention import AttentionControl
    from nerf_edit.vimaedit.localizer import ViMAEditLocalizer

    images, _ = scene
    size, steps = setup[1], 2
    running, stored, cells = [], [], {}  # the layer running now; (kind, layer) per stored map; layer -> query length

    class StoringControl(AttentionControl):
        def cross_attention(self, probs):
            if self.record_cross(probs.shape[2]):
                stored.append(("cross", running[-1]))
            return super().cross_attention(probs)

        def self_attention(self, probs):
            if self.record_self(probs.shape[2]):
                stored.append(("self", running[-1]))
            return super().self_attention(probs)

    def enter(name):
        def hook(module, args, kwargs):
            running.append(name)
            cells[name] = (args[0] if args else kwargs["hidden_states"]).shape[1]
        return hook

    monkeypatch.setattr(vimaedit_localizer, "AttentionControl", StoringControl)
    attention = {name: module for name, module in ip2p.unet.named_modules() if name.endswith(("attn1", "attn2"))}
    assert sorted(attention) == sorted(sd15_layers("attn1") + sd15_layers("attn2"))  # the table is this UNet's
    hooks = [module.register_forward_pre_hook(enter(name), with_kwargs=True) for name, module in attention.items()]
    try:
        localization = ViMAEditLocalizer(EditorConfig(device=setup[0], steps=steps), ip2p).localize(
            images, "turn the ball blue", generator=torch.Generator().manual_seed(0))
    finally:
        for hook in hooks:
            hook.remove()
    latent = size // 8
    for name, (count, factor) in ((n, SD15_ATTENTION[n.split(".attentions")[0]]) for n in attention):
        assert cells[name] == (-(-latent // factor)) ** 2, name  # each block's layers at the table's resolution
    cross = sorted({layer for kind, layer in stored if kind == "cross"})
    self_layers = sorted({layer for kind, layer in stored if kind == "self"})
    print("stored cross-attention:", cross, "\nstored self-attention:", self_layers)
    assert cross == sd15_layers("attn2", 4) and self_layers == sd15_layers("attn1", 2)
    assert len(stored) == steps * (len(cross) + len(self_layers))  # each layer's map once per step
    assert localization.mask.shape == (2, size, size) and localization.mask.dtype == torch.bool
    assert localization.soft.min() >= 0 and localization.soft.max() <= 1 and torch.isfinite(localization.soft).all()


class PerturbedReference(torch.nn.Module):
    """The frozen pre-fine-tuning UNet of L_reg as a copy of `unet` that differs in a few tensors: the named ones
    are detached copies plus noise, every other weight is the UNet's own, read through torch.func.functional_call
    (no second 3.4 GB copy)."""

    def __init__(self, unet, names, scale=0.05, seed=1):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        weights = dict(unet.named_parameters())
        self.unet = [unet]  # not registered: the reference owns no trainable parameter
        self.replaced = {name: weights[name].detach() + scale * weights[name].detach().abs().mean()
                         * torch.randn(weights[name].shape, generator=generator).to(weights[name])
                         for name in names}

    def forward(self, *args, **kwargs):
        return torch.func.functional_call(self.unet[0], self.replaced, args, kwargs)


def test_editaction_freezes_sd15s_cross_attention_and_its_loss_trains_the_rest(ip2p, setup):
    """EditAction's training step on the real UNet, fp32 (the bf16 step with 8-bit Adam through the trainer is
    test_full_size_training.py, minutes on the CPU: `make test-all`): freezing finds SD-1.5's 16 cross-attention
    layers (to_q, to_k, to_v, to_out: 80 tensors), and the loss L (Eq. 7) sends gradients to every other
    parameter and to none of them. The frozen reference differs from the UNet in a few layers (as a pre-fine-tuning
    copy does after some steps): L_reg is positive and its own gradient reaches every trained tensor."""
    from nerf_edit.action.losses import draw_noise, editaction_losses, freeze_cross_attention, training_noise_scheduler

    device, size = setup
    unet = ip2p.unet
    trainable = {name: parameter.requires_grad for name, parameter in unet.named_parameters()}
    try:
        frozen = freeze_cross_attention(unet)
        assert len(frozen) == 16 * 5 and {name.split(".attn2.")[1] for name in frozen} == {
            "to_q.weight", "to_k.weight", "to_v.weight", "to_out.0.weight", "to_out.0.bias"}
        generator = torch.Generator().manual_seed(0)
        latent = (1, 4, size // 8, size // 8)
        latents, image_latents = torch.randn(latent, generator=generator), torch.randn(latent, generator=generator)
        text, negative, null = (torch.randn(1, 77, 768, generator=generator) for _ in range(3))
        draw = draw_noise(latent, 1000, generator)
        tensors = [t.to(device) for t in (latents, image_latents, text, negative, null)]
        reference = PerturbedReference(unet, ["conv_in.weight", "down_blocks.1.resnets.0.conv1.weight",
                                              "mid_block.resnets.1.conv2.weight", "up_blocks.2.resnets.2.conv1.weight"])
        losses = editaction_losses(unet, reference, training_noise_scheduler(ip2p.scheduler.config), *tensors, draw)
        assert all(torch.isfinite(value) for value in losses.values()) and losses["reg"] > 0
        trained = [(name, p) for name, p in unet.named_parameters() if p.requires_grad]
        assert len(trained) == len(trainable) - 80
        losses["reg"].backward(retain_graph=True)  # L_reg alone first
        reg_moved = [name for name, p in trained if p.grad is not None and bool(p.grad.abs().sum() > 0)]
        assert len(reg_moved) == len(trained), f"L_reg reached {len(reg_moved)} of {len(trained)} trained tensors"
        unet.zero_grad(set_to_none=True)
        losses["total"].backward()
        for name, parameter in unet.named_parameters():
            if ".attn2." in name:
                assert parameter.grad is None, name
            else:
                assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        moved = [bool(p.grad.abs().sum() > 0) for n, p in unet.named_parameters() if ".attn2." not in n]
        assert all(moved), f"{moved.count(False)} of {len(moved)} trainable tensors got a zero gradient"
    finally:  # the module's other tests use the same UNet for inference
        unet.zero_grad(set_to_none=True)
        for name, parameter in unet.named_parameters():
            parameter.requires_grad_(trainable[name])


# SD-1.5's cross-attention layers at 1/32 of the image (16² of 512²): the coarsest the UNet has, what ZONE's code
# averages for its rough mask (its AttentionStore at res 16): 2 in down_blocks.2, 3 in up_blocks.1.
COARSEST_CROSS_ATTENTION = [f"{block}.attentions.{i}.transformer_blocks.0.attn2"
                            for block, count in (("down_blocks.2", 2), ("up_blocks.1", 3)) for i in range(count)]


def test_zone_localises_with_the_real_layers_and_edits_only_inside(ip2p, scene, setup, monkeypatch):
    """ZONE end to end on the real diffusion shapes: IP2P fused with a full-size MagicBrush (20-step DPM-Solver++ as
    the official preset, here 2 steps), its cross-attention recorded on SD-1.5's real 1/32 layers, the official
    action classifier on the 768-wide text encoder, SAM's automatic masks (the tiny SAM here: SAM ViT-H's 1024²
    encoder alone is a multi-minute CPU run, `test_sam_vit_h_automatic_masks_feed_zones_refinement`, `make test-all`)
    and the Region-IoU refinement; nothing outside the final mask changes."""
    from nerf_edit.config.zone import ZoneConfig
    from nerf_edit.models import attention
    from nerf_edit.models.segment import SamSegmenter
    from nerf_edit.models.tiny import build_tiny_sam
    from nerf_edit.zone import localizer as zone_localizer
    from nerf_edit.zone import ops as zone
    from nerf_edit.zone.editor import ZoneEditor

    recorders = []

    class KeptRecorder(attention.CrossAttentionRecorder):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            recorders.append(self)

    monkeypatch.setattr(zone_localizer, "CrossAttentionRecorder", KeptRecorder)
    device, size = setup
    # random weights score every mask low: keep all SAM returns, so the Region-IoU choice has segments to choose from
    sam = SamSegmenter(build_tiny_sam(), device=device, points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    segments = []

    def segmenter(image):
        segments.append(sam(image))
        return segments[-1]

    fusion = InstructPix2Pix(full_size.build_full_size_magicbrush_pipeline().to(device))
    assert not torch.equal(next(fusion.unet.parameters()), next(ip2p.unet.parameters()))  # other weights
    config = EditorConfig(device=device, steps=2, guidance_scale=7.5, image_guidance_scale=1.5,
                          zone=ZoneConfig(fusion_model="none", segmenter="none", sampler="dpm-solver++"))
    editor = ZoneEditor(config, ip2p=ip2p, fusion=fusion, segmenter=segmenter)
    images = scene[0][:1]
    result = editor.edit(images, "turn the ball blue", generator=torch.Generator().manual_seed(0))
    found = result.localization

    (recorder,) = recorders
    coarsest = min(total.shape[1] for total in recorder.sums.values())
    layers = sorted(layer for layer, total in recorder.sums.items() if total.shape[1] == coarsest)
    print("ZONE's rough mask reads", layers, "action", found.actions, "by", found.action_classifier)
    assert layers == COARSEST_CROSS_ATTENTION and coarsest == (size // 32) ** 2
    assert recorder.num_steps == 2 and found.attention.shape == (1, size // 32, size // 32, 77)
    assert found.actions[0] in zone.ACTIONS and "ZONE" in found.action_classifier
    (image_segments,) = segments  # SAM ran once, and answers at the image's size
    assert image_segments.dtype == torch.bool and image_segments.shape[1:] == (size, size) and len(image_segments) > 0
    assert found.rough_mask.shape == found.refined_mask.shape == (1, size, size)
    best = zone.refine_mask(image_segments, found.rough_mask[0])[0]
    assert torch.equal(found.refined_mask[0], best)
    outside = ~result.mask[:, None].expand_as(images)
    assert torch.equal(result.images[outside], images[outside]) and torch.isfinite(result.images).all()
    assert (result.images[~outside] != images[~outside]).any()  # and the edit happened inside

@pytest.mark.heavy
def test_sam_vit_h_automatic_masks_feed_zones_refinement(scene, setup):
    """SAM ViT-H (632M image encoder, its 1024² input whatever the image's size: minutes on one CPU thread) gives
    ZONE's segmenter boolean segments at the image's size, few points per side, and the Region-IoU refinement picks
    one of them for a rough mask. The rest of ZONE on the real shapes: test_zone_localises_with_the_real_layers_...
    """
    from nerf_edit.models.segment import SamSegmenter
    from nerf_edit.zone import ops as zone

    device, size = setup
    sam_model, processor = full_size.build_full_size_sam()
    print(f"SAM ViT-H image encoder {parameters(sam_model.vision_encoder):,} parameters")
    assert 630e6 < parameters(sam_model.vision_encoder) < 640e6  # segment-anything's ViT-H: 632M (its README)
    sam = SamSegmenter((sam_model, processor), device=device, points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    images, mask = scene
    segments = sam(images[0])
    assert segments.dtype == torch.bool and segments.shape[1:] == (size, size) and len(segments) > 0
    refined, index = zone.refine_mask(segments, mask[0])
    scores = zone.region_iou(segments, mask[0])
    assert refined.shape == (size, size) and index == int(scores.argmax()) and torch.equal(refined, segments[index])


def test_pie_bench_metrics_on_clip_l14_and_dino_vitb8():
    from nerf_edit.eval.pie_bench import PieMetrics

    dino = full_size.build_full_size_dino_vitb8()
    clip, tokenizer, processor = full_size.build_full_size_clip_l14()
    print(f"DINO ViT-B/8 {parameters(dino):,}, CLIP ViT-L/14 {parameters(clip):,} parameters")
    assert 85e6 < parameters(dino) < 87e6
    assert 427e6 < parameters(clip) < 428e6  # openai/clip-vit-large-patch14: 427.6M
    metrics = PieMetrics.from_models(dino, clip, tokenizer, processor, PieMetrics._load_lpips("tiny"))
    rng = np.random.default_rng(0)
    source = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    edited = source.copy()
    edited[64:160, 64:160] = 255 - edited[64:160, 64:160]
    similarity = metrics.dino_key_self_similarity(source)
    assert similarity.shape == (785, 785)  # (224/8)² patches and the class token: the last layer's keys
    assert metrics.structure_distance(source, source) == 0 and metrics.structure_distance(source, edited) > 0
    mask = np.zeros((224, 224), dtype=bool)
    mask[64:160, 64:160] = True
    results = metrics.all(source, edited, mask, "a photo of a cat")
    print({name: round(value, 4) for name, value in results.items()})
    assert 0 <= results["clip_whole"] <= 100 and 0 <= results["clip_edited"] <= 100
    # the background metrics see only what is outside the edit's mask: untouched there, they are perfect
    assert results["mse"] == 0 and results["psnr"] == float("inf") and results["ssim"] == pytest.approx(1)
    assert results["lpips"] == pytest.approx(0, abs=1e-6)
    spilled = edited.copy()
    spilled[:32] = 255 - spilled[:32]  # an edit that also changes the background
    background = metrics.background(source, spilled, mask)
    assert background["mse"] > 0 and np.isfinite(background["psnr"]) and background["ssim"] < 1
    assert background["lpips"] > 0


def test_clip_vit_h14_feeds_the_ip_adapter_projection_four_sd15_tokens():
    clip, _, processor = full_size.build_full_size_clip_h14()
    projection = full_size.build_full_size_ip_adapter_projection()
    print(f"CLIP ViT-H/14 {parameters(clip):,} (image tower {parameters(clip.vision_model):,}), "
          f"IP-Adapter projection {parameters(projection):,} parameters")
    assert 980e6 < parameters(clip) < 990e6 and 630e6 < parameters(clip.vision_model) < 635e6
    pixels = processor(images=[np.zeros((64, 64, 3), dtype=np.uint8)], return_tensors="pt").pixel_values
    with torch.no_grad():
        embeds = clip.get_image_features(pixel_values=pixels)
        embeds = embeds if isinstance(embeds, torch.Tensor) else embeds.pooler_output
        tokens = projection(embeds)
    assert pixels.shape == (1, 3, 224, 224) and embeds.shape == (1, 1024)
    assert tokens.shape == (1, 4, 768)  # four image tokens for SD-1.5's cross-attention


def test_timesformer_reads_eight_frames_into_400_kinetics_classes():
    model = full_size.build_full_size_timesformer()
    print(f"TimeSformer base {parameters(model):,} parameters")
    assert 121e6 < parameters(model) < 122e6
    with torch.no_grad():
        logits = model(pixel_values=torch.rand(1, 8, 3, 224, 224, generator=torch.Generator().manual_seed(0))).logits
    assert logits.shape == (1, 400) and torch.isfinite(logits).all()
