"""Localisers are parts: a new one plugs in by import path and decides where every editor may act."""

import pytest
import torch

from nerf_edit.config.editor import EditorConfig
from nerf_edit.config.zone import ZoneConfig
from nerf_edit.core.guided import Step, denoise
from nerf_edit.editing.localizer import Localization, localizer_class
from nerf_edit.errors import EditorError, UsageError
from nerf_edit.wys.editor import RelevanceGuidedEditor
from nerf_edit.zone import localizer as zone_localizer
from nerf_edit.zone.editor import ZoneEditor

INSTRUCTION = "turn the ball blue"


class BoxLocalizer:
    """A toy localiser: the left half of every image. Counts its calls."""

    calls = 0

    def __init__(self, config, ip2p):
        self.config = config

    def localize(self, images, instruction, conditioning, generator=None):
        BoxLocalizer.calls += 1
        mask = torch.zeros(images.shape[0], *images.shape[-2:], dtype=torch.bool)
        mask[..., : images.shape[-1] // 2] = True
        return Localization(mask=mask)


class WrongShapeLocalizer(BoxLocalizer):
    def localize(self, images, instruction, conditioning, generator=None):
        return Localization(mask=torch.ones(1, 4, 4, dtype=torch.bool))


@pytest.fixture()
def images():
    return torch.rand(2, 3, 32, 40, generator=torch.Generator().manual_seed(0))


def test_a_localizer_by_import_path_decides_where_the_relevance_editor_edits(images, tiny_ip2p):
    BoxLocalizer.calls = 0
    editor = RelevanceGuidedEditor(EditorConfig(model="tiny", steps=2, localizer=f"{__name__}:BoxLocalizer"),
                                   ip2p=tiny_ip2p)
    assert isinstance(editor.localizer, BoxLocalizer)
    result = editor.edit(images, INSTRUCTION, generator=torch.Generator().manual_seed(0))
    box = torch.zeros(2, 32, 40, dtype=torch.bool)
    box[..., :20] = True
    assert torch.equal(result.mask, box) and BoxLocalizer.calls == 1
    assert torch.equal(result.images[:, :, :, 20:], images[:, :, :, 20:])  # outside: the input, bit for bit
    assert (result.images[:, :, :, :20] != images[:, :, :, :20]).any()
    assert torch.equal(editor.relevance(images, INSTRUCTION), box.float())  # a hard mask as 0/1 relevance


def test_a_localizer_by_import_path_gives_zone_its_rough_mask(images, tiny_ip2p, monkeypatch):
    """With another localiser, ZONE's editor does not record attention (only the zone localiser needs it)."""
    recordings = []
    real = zone_localizer.record_cross_attention
    monkeypatch.setattr(zone_localizer, "record_cross_attention", lambda *a: recordings.append(1) or real(*a))
    settings = ZoneConfig(fusion_model="none", segmenter="none")
    editor = ZoneEditor(EditorConfig(model="tiny", steps=2, localizer=f"{__name__}:BoxLocalizer", zone=settings),
                        ip2p=tiny_ip2p)
    result = editor.edit(images, INSTRUCTION, generator=torch.Generator().manual_seed(0))
    assert torch.equal(result.localization.rough_mask[..., :20], torch.ones(2, 32, 20, dtype=torch.bool))
    assert not result.localization.rough_mask[..., 20:].any() and recordings == []
    ZoneEditor(EditorConfig(model="tiny", steps=2, zone=settings), ip2p=tiny_ip2p).edit(images, INSTRUCTION)
    assert recordings == [1]  # ZONE's own localiser records


def test_bad_localizers_are_one_line_errors(images, tiny_ip2p):
    with pytest.raises(EditorError, match="unknown --localizer 'boxes'"):
        RelevanceGuidedEditor(EditorConfig(model="tiny", localizer="boxes"), ip2p=tiny_ip2p)
    with pytest.raises(EditorError, match="cannot import localizer 'nowhere:Box'"):
        RelevanceGuidedEditor(EditorConfig(model="tiny", localizer="nowhere:Box"), ip2p=tiny_ip2p)
    with pytest.raises(EditorError, match="has no localize"):
        RelevanceGuidedEditor(EditorConfig(model="tiny", localizer=f"{__name__}:INSTRUCTION"), ip2p=tiny_ip2p)
    editor = RelevanceGuidedEditor(EditorConfig(model="tiny", localizer=f"{__name__}:WrongShapeLocalizer"),
                                   ip2p=tiny_ip2p)
    with pytest.raises(UsageError, match=r"must return a Localization with a \[B, H, W\] = \(2, 32, 40\) mask"):
        editor.edit(images, INSTRUCTION)


def test_registered_localizers_resolve():
    from nerf_edit.wys.localizer import RelevanceLocalizer
    from nerf_edit.zone.localizer import ZoneLocalizer

    assert localizer_class("relevance") is RelevanceLocalizer and localizer_class("zone") is ZoneLocalizer


def test_hooks_see_each_step_and_their_latents_are_the_next_steps_start(tiny_ip2p):
    """A hook's return value is where the next step starts: halving the latents after step 0 equals starting
    step 1 from the halved latents by hand; `predicted_original` is DDIM's z0 estimate (x_t − √(1−ᾱ)ε)/√ᾱ."""
    scheduler = tiny_ip2p.scheduler
    scheduler.set_timesteps(2)
    timesteps = scheduler.timesteps
    start = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(0))

    def predict(latents, t):
        return 0.3 * latents + 0.01 * t

    seen = []

    def halve_first(step: Step):
        seen.append(step)
        return step.latents / 2 if step.index == 0 else step.latents

    final = denoise(predict, scheduler, start, timesteps, [halve_first])
    by_hand = scheduler.step(predict(start, timesteps[0]), timesteps[0], start).prev_sample / 2
    by_hand = scheduler.step(predict(by_hand, timesteps[1]), timesteps[1], by_hand).prev_sample
    torch.testing.assert_close(final, by_hand)
    alpha = scheduler.alphas_cumprod[timesteps[0]]
    expected_z0 = (start - (1 - alpha).sqrt() * seen[0].noise_pred) / alpha.sqrt()
    torch.testing.assert_close(seen[0].predicted_original, expected_z0)
    assert [s.index for s in seen] == [0, 1] and torch.equal(seen[1].previous, seen[0].latents)


def test_adaptive_variance_hook_is_ddim_with_eta_inside_the_critical_region_only(tiny_ip2p):
    """ViMAEdit's variance rule as a step hook (built as a plug-in, from the edit's soft map and generator): inside
    the critical region (soft map > 0.8) the step equals diffusers' DDIMScheduler.step(eta=1, variance_noise=z)
    (the reference), outside it the deterministic step, bit for bit."""
    from nerf_edit.vimaedit.hooks import AdaptiveVariance

    scheduler = tiny_ip2p.scheduler
    scheduler.set_timesteps(4)
    timesteps = scheduler.timesteps
    start = torch.randn(1, 4, 6, 6, generator=torch.Generator().manual_seed(0))
    critical = torch.zeros(1, 1, 6, 6, dtype=torch.bool)
    critical[..., :3, 2:5] = True

    def predict(latents, t):
        return 0.5 * latents + 0.001 * t

    steps = []
    denoise(predict, scheduler, start, timesteps[:1], [lambda step: steps.append(step) or step.latents])
    deterministic = steps[0].latents.clone()
    steps[0].region = torch.where(critical, 0.9, 0.7)  # the soft map per latent cell: critical above 0.8
    steps[0].generator = torch.Generator().manual_seed(7)
    result = AdaptiveVariance(EditorConfig(model="tiny"), tiny_ip2p)(steps[0])
    z = torch.randn(start.shape, generator=torch.Generator().manual_seed(7))  # the z the hook drew
    reference = scheduler.step(predict(start, timesteps[0]), timesteps[0], start, eta=1.0, variance_noise=z).prev_sample
    inside = critical.expand_as(start)
    torch.testing.assert_close(result[inside], reference[inside], rtol=1e-5, atol=1e-5)
    assert torch.equal(result[~inside], deterministic[~inside])
    assert not torch.allclose(result[inside], deterministic[inside])  # the variance did act


def test_adaptive_variance_in_the_relevance_editor_keeps_the_background(tiny_ip2p):
    images = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    plain = RelevanceGuidedEditor(EditorConfig(model="tiny", steps=3), ip2p=tiny_ip2p)
    varied = RelevanceGuidedEditor(EditorConfig(model="tiny", steps=3, adaptive_variance=True), ip2p=tiny_ip2p)
    a = plain.edit(images, INSTRUCTION, generator=torch.Generator().manual_seed(0))
    b = varied.edit(images, INSTRUCTION, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.mask, b.mask) and not torch.equal(a.images, b.images)
    outside = ~b.mask[:, None].expand_as(images)
    assert torch.equal(b.images[outside], images[outside])
