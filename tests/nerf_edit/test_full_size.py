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


def test_vimaedit_grounding_runs_on_the_real_unets_levels(ip2p, scene, setup):
    """The grounding reads cross-attention at latent/4 and self-attention at latent/2: on SD-1.5's UNet those are
    the 16² and 32² layers of a 512² image (P2P's `res=16` store, 2 down and 3 up layers), here 2² and 4² of
    the 8² latent at 64²."""
    from nerf_edit.vimaedit.attention import grounding_factors, layer_cells
    from nerf_edit.vimaedit.localizer import ViMAEditLocalizer

    images, _ = scene
    size = setup[1]
    tokens = {}  # attention layer -> its query length during the localisation

    def record(name):
        def hook(module, args, kwargs):
            tokens.setdefault(name, (args[0] if args else kwargs["hidden_states"]).shape[1])
        return hook

    hooks = [module.register_forward_pre_hook(record(name), with_kwargs=True)
             for name, module in ip2p.unet.named_modules() if name.endswith(("attn1", "attn2"))]
    try:
        localization = ViMAEditLocalizer(EditorConfig(device=setup[0], steps=2), ip2p).localize(
            images, "turn the ball blue", generator=torch.Generator().manual_seed(0))
    finally:
        for hook in hooks:
            hook.remove()
    cross, self_factor = grounding_factors(ip2p.unet)
    latent = (size // 8, size // 8)
    cross_layers = sorted(n for n, t in tokens.items() if n.endswith("attn2") and t == layer_cells(latent, cross))
    self_layers = sorted(n for n, t in tokens.items() if n.endswith("attn1") and t == layer_cells(latent, self_factor))
    print("grounding cross-attention:", cross_layers, "\nself-attention:", self_layers)
    # (block, its attention layers): 2 in a down block, 3 in an up block
    at_16, at_32 = (("down_blocks.2", 2), ("up_blocks.1", 3)), (("down_blocks.1", 2), ("up_blocks.2", 3))
    assert cross_layers == [f"{block}.attentions.{i}.transformer_blocks.0.attn2" for block, n in at_16 for i in range(n)]
    assert self_layers == [f"{block}.attentions.{i}.transformer_blocks.0.attn1" for block, n in at_32 for i in range(n)]
    assert localization.mask.shape == (2, size, size) and localization.mask.dtype == torch.bool
    assert localization.soft.min() >= 0 and localization.soft.max() <= 1 and torch.isfinite(localization.soft).all()



def test_editaction_freezes_sd15s_cross_attention_and_its_loss_trains_the_rest(ip2p, setup):
    """EditAction's training step on the real UNet, fp32 (the bf16 step with 8-bit Adam through the trainer is
    test_full_size_training.py, minutes on the CPU: `make test-all`): freezing finds SD-1.5's 16 cross-attention
    layers (to_q, to_k, to_v, to_out: 80 tensors), and the loss L (Eq. 7) sends gradients to every other
    parameter and to none of them."""
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
        # the frozen reference is the same weights here (a second 3.4 GB copy proves nothing more): L_reg is 0
        losses = editaction_losses(unet, unet, training_noise_scheduler(ip2p.scheduler.config), *tensors, draw)
        losses["total"].backward()
        assert all(torch.isfinite(value) for value in losses.values())
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
