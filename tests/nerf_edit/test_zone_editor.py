"""ZoneEditor and the zone localizer on tiny random-weight models (IP2P, a second 'MagicBrush', SAM)."""

import dataclasses

import pytest
import torch

from nerf_edit.config.editor import EditorConfig
from nerf_edit.config.zone import ZoneConfig
from nerf_edit.editing.editor import editor_class
from nerf_edit.errors import EditorError
from nerf_edit.models.ip2p import InstructPix2Pix
from nerf_edit.models.segment import make_segmenter
from nerf_edit.models.tiny import build_tiny_ip2p_pipeline
from nerf_edit.wys.editor import RelevanceGuidedEditor
from nerf_edit.zone import ops as zone
from nerf_edit.zone.editor import ZoneEditor
from nerf_edit.zone.localizer import ZoneLocalizer
from nerf_edit.zone.parts import ZoneParts


class QuadrantSegmenter:
    """Segments whose answer is known: the four quadrants and the whole image. Counts its calls."""

    calls = 0

    def __call__(self, image):
        QuadrantSegmenter.calls += 1
        height, width = image.shape[-2:]
        segments = torch.zeros(5, height, width, dtype=torch.bool)
        segments[0, : height // 2, : width // 2] = True
        segments[1, : height // 2, width // 2 :] = True
        segments[2, height // 2 :, : width // 2] = True
        segments[3, height // 2 :, width // 2 :] = True
        segments[4] = True
        return segments


SEGMENTER = f"{__name__}:QuadrantSegmenter"


def config(**zone_settings):
    settings = dict(fusion_model="tiny:1", segmenter=SEGMENTER)
    settings.update(zone_settings)
    return EditorConfig(model="tiny", device="cpu", steps=3, image_guidance_scale=1.5, zone=ZoneConfig(**settings))


@pytest.fixture()
def images():
    return torch.rand(2, 3, 40, 56, generator=torch.Generator().manual_seed(0))


def test_zone_editor_changes_nothing_outside_its_final_mask(images):
    editor = ZoneEditor(config())
    result = editor.edit(images, "give him a red hat", generator=torch.Generator().manual_seed(0))
    found = result.localization
    assert result.images.shape == images.shape and found.actions == ["add", "add"]
    segments = QuadrantSegmenter()(images[0])
    for i in range(2):
        # the refined mask is one of the segments (Region-IoU) and the final mask stays near it
        assert any(torch.equal(found.refined_mask[i], s) for s in segments)
        near = zone.dilate(found.refined_mask[i : i + 1], zone.scaled_px(4.0, images.shape[-2:]))[0]
        assert not (result.mask[i] & ~near).any()
    outside = ~result.mask[:, None].expand_as(images)
    assert torch.equal(result.images[outside], images[outside])
    assert found.canvas.shape == images.shape and found.rough_mask.dtype == torch.bool


def test_one_fused_step_is_the_papers_formula(images):
    """z_{t-1} = (z*_{t-1} + β z'_{t-1}) / (1 + β), β = 0.2 for remove, with each model's own guided step."""
    editor = ZoneEditor(config())
    editor.config.steps = 1
    fusion = editor.zone.parts.fusion
    ip2p = editor.ip2p
    captured = []
    editor.edit(images, "remove the ball", generator=torch.Generator().manual_seed(1),
                on_step=lambda i, t, z: captured.append(z))
    noise = editor.draw_noise(images, torch.Generator().manual_seed(1))  # an edit draws its noise first
    image_latents = ip2p.encode_condition(images)
    timesteps = ip2p.edit_timesteps(1)
    t = timesteps[0]
    start = noise * ip2p.scheduler.init_noise_sigma

    def step(model, condition):
        eps = model.predict_guided(start, t, condition, "remove the ball", 7.5, 1.5)
        return ip2p.scheduler.step(eps, t, start).prev_sample

    expected = (step(ip2p, image_latents) + 0.2 * step(fusion, fusion.encode_condition(images))) / 1.2
    torch.testing.assert_close(captured[0], expected, rtol=1e-4, atol=1e-4)  # recording vs SDPA attention


def test_fusion_with_zero_weight_is_plain_ip2p(images, monkeypatch):
    generator = lambda: torch.Generator().manual_seed(2)  # noqa: E731
    plain = ZoneEditor(config(fusion_model="none")).edit(images, "turn the ball blue", generator=generator())
    monkeypatch.setattr(zone, "FUSION_BETA", {"add": 0.0, "remove": 0.0, "change": 0.0})
    fused = ZoneEditor(config()).edit(images, "turn the ball blue", generator=generator())
    torch.testing.assert_close(fused.localization.canvas, plain.localization.canvas, rtol=0, atol=1e-6)


def test_given_mask_skips_localisation(images):
    QuadrantSegmenter.calls = 0
    editor = ZoneEditor(config())
    mask = torch.zeros(2, 40, 56, dtype=torch.bool)
    mask[:, 10:30, 20:40] = True
    result = editor.edit(images, "turn the ball blue", mask=mask, strength=0.5, generator=torch.Generator().manual_seed(0))
    assert QuadrantSegmenter.calls == 0 and result.localization.rough_mask is None
    assert torch.equal(result.localization.refined_mask, mask)
    assert not (result.mask & ~zone.dilate(mask, zone.scaled_px(4.0, (40, 56)))).any()
    outside = ~result.mask[:, None].expand_as(images)
    assert torch.equal(result.images[outside], images[outside])


def test_zone_localizer_drives_the_relevance_editor(images):
    editor = RelevanceGuidedEditor(EditorConfig(model="tiny", device="cpu", steps=2, localizer="zone",
                                                zone=ZoneConfig(fusion_model="none", segmenter=SEGMENTER)))
    relevance = editor.relevance(images, "turn the ball blue", generator=torch.Generator().manual_seed(0))
    segments = QuadrantSegmenter()(images[0]).float()
    for i in range(2):  # a 0/1 map: the chosen segment
        assert any(torch.equal(relevance[i], s) for s in segments)
    result = editor.edit(images, "turn the ball blue", generator=torch.Generator().manual_seed(0))
    assert torch.equal(result.relevance, relevance)  # same seed, same localisation
    outside = ~result.mask[:, None].expand_as(images)
    assert torch.equal(result.images[outside], images[outside])


def test_relevance_localizer_feeds_zone_refinement(images):
    editor = ZoneEditor(EditorConfig(model="tiny", device="cpu", steps=2, localizer="relevance", tau=0.5,
                                     zone=ZoneConfig(fusion_model="none", segmenter="none")))
    result = editor.edit(images, "turn the ball blue", generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(0)
    editor.draw_noise(images, generator)  # the edit draws its noise first, then the localiser its own
    wys = editor.localizer.localize(images, "turn the ball blue", images, generator).soft
    assert wys.max() >= 0.5 and (wys < 0.5).any()
    assert torch.equal(result.localization.rough_mask, wys >= 0.5)  # no segmenter: refined = rough
    assert torch.equal(result.localization.refined_mask, result.localization.rough_mask)


class SpeckledSegmenter:
    """The top-left quadrant with a 2x2 speck in the opposite corner, and the whole image."""

    def __call__(self, image):
        height, width = image.shape[-2:]
        segments = torch.zeros(2, height, width, dtype=torch.bool)
        segments[0, : height // 2, : width // 2] = True
        segments[0, -2:, -2:] = True
        segments[1] = True
        return segments


def test_refinement_removes_small_regions_from_the_rough_and_the_refined_mask(images):
    """The official order (lsl001006/ZONE utils/mask_utils.py ~161-163): small regions out of M_b, Region-IoU, small
    regions out of M_f. 2048 px at 512² is 12.5 px at 40x56: the 4-px specks go, the 100-px block stays."""
    block = torch.zeros(2, 40, 56, dtype=torch.bool)
    block[:, 4:14, 4:14] = True
    rough = block.clone()
    rough[:, 2:4, 40:42] = True  # a speck of M_b far from the block
    speckled = SpeckledSegmenter()(images[0])[0]  # the best Region-IoU segment either way
    quadrant = speckled.clone()
    quadrant[-2:, -2:] = False
    ip2p = InstructPix2Pix(build_tiny_ip2p_pipeline())
    parts = ZoneParts(fusion=None, segmenter=SpeckledSegmenter(), classify=lambda instruction: "add")
    for area, rough_kept, refined_kept in ((2048.0, block, quadrant), (0.0, rough, speckled)):
        settings = EditorConfig(model="tiny", device="cpu", zone=ZoneConfig(small_regions_px=area))
        m_b, m_f = ZoneLocalizer(settings, ip2p, parts).refine(images, images, rough, "add")
        assert torch.equal(m_b, rough_kept) and torch.equal(m_f, refined_kept.expand(2, -1, -1)), area


def test_bad_zone_settings_are_one_line_errors():
    assert editor_class("zone") is ZoneEditor
    with pytest.raises(EditorError, match="unknown --localizer 'sam'"):
        ZoneEditor(EditorConfig(model="tiny", device="cpu", localizer="sam"))
    with pytest.raises(EditorError, match="cannot import segmenter"):
        ZoneEditor(config(segmenter="nowhere:Segmenter"))
    with pytest.raises(EditorError, match="unknown --zone.action 'mlp'"):
        ZoneEditor(config(action="mlp"))
    with pytest.raises(EditorError, match=r"unknown --zone.edge-difference 'gray': use one of \['max-channel', "):
        ZoneEditor(config(edge_difference="gray"))
    with pytest.raises(EditorError, match="--zone.small-regions-px"):
        ZoneEditor(config(small_regions_px=-1.0))
    editor = ZoneEditor(config(action=f"{__name__}:confused"))
    with pytest.raises(EditorError, match="must return one of"):
        editor.edit(torch.rand(1, 3, 16, 16), "make it red")


def confused(instruction):
    return "recolour"


def test_tiny_sam_segments_an_image():
    segmenter = make_segmenter("tiny")
    image = torch.rand(3, 40, 56, generator=torch.Generator().manual_seed(0))
    segmenter.options.update(pred_iou_thresh=0.0, stability_score_thresh=0.0, points_per_crop=4)
    segments = segmenter(image)
    assert segments.dtype == torch.bool and segments.shape[1:] == (40, 56) and len(segments) >= 1
    assert make_segmenter("none") is None


def test_unavailable_sam_is_one_line():
    from nerf_edit.errors import ModelUnavailableError

    with pytest.raises(ModelUnavailableError) as info:
        make_segmenter("some-org/no-such-sam")
    assert "some-org/no-such-sam" in str(info.value) and "\n" not in str(info.value)


@torch.no_grad()
def test_dpm_solver_fused_edit_is_diffusers_ip2p_with_zones_scheduler():
    """lsl001006/ZONE inference.py ~15: `DPMSolverMultistepScheduler.from_config(ip2p_pipe.scheduler.config)` in
    diffusers' own IP2P pipeline, and ~27 a second instance for MagicBrush. ZONE's fused edit from noise with
    `--zone.sampler dpm-solver++` is that pipeline's result for the same noise: without fusion, and with a fusion
    model that is a copy of IP2P (both chains alike, so the fused latents are IP2P's), which holds only if each
    chain keeps its own solver state."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionInstructPix2PixPipeline

    pipe = build_tiny_ip2p_pipeline()
    official = StableDiffusionInstructPix2PixPipeline(
        **{**pipe.components, "scheduler": DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)})
    official.set_progress_bar_config(disable=True)
    image = torch.rand(1, 3, 32, 48, generator=torch.Generator().manual_seed(1))
    expected = official("turn it red", image=image, num_inference_steps=6, guidance_scale=7.5, image_guidance_scale=1.5,
                        generator=torch.Generator().manual_seed(3), output_type="latent").images
    settings = EditorConfig(model="tiny", steps=6, image_guidance_scale=1.5, zone=ZoneConfig(sampler="dpm-solver++"))
    ip2p = InstructPix2Pix(pipe)
    encoded = ip2p.encode_inputs(image, image)
    noise = ip2p.draw_noise(image, torch.Generator().manual_seed(3))
    for fusion in (None, InstructPix2Pix(build_tiny_ip2p_pipeline())):
        parts = ZoneParts(fusion=fusion, segmenter=None, classify=lambda instruction: "remove")  # beta 0.2
        ours = ZoneLocalizer(settings, ip2p, parts).fused_edit(encoded, "turn it red", 1.0, noise).latents
        torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4)
    ddim = ZoneLocalizer(dataclasses.replace(settings, zone=ZoneConfig()), ip2p, parts)
    assert (ddim.fused_edit(encoded, "turn it red", 1.0, noise).latents - expected).abs().max() > 1e-2  # can fail
