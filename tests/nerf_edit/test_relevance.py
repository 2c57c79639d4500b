import pytest
import torch
from diffusers import DDIMScheduler

from nerf_edit.config.editor import EditorConfig
from nerf_edit.core.masks import mask_iou
from nerf_edit.core.relevance import clip_and_normalize, relevance_from_predictions, relevance_map, relevance_mask
from nerf_edit.wys.editor import RelevanceGuidedEditor


def square_predictor(top: int, left: int, size: int, bump: float = 3.0):
    """ε with text = ε without text, plus a bump inside one latent square: the right relevance map is known."""

    def predict(noisy, t):
        eps_null = torch.sin(noisy * 3.0)  # any function of the input: it cancels out
        eps_text = eps_null.clone()
        eps_text[:, :, top : top + size, left : left + size] += bump
        return eps_text, eps_null

    return predict


def test_planted_predictor_relevance_localises_the_square():
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    latents = torch.randn(2, 4, 12, 16, generator=torch.Generator().manual_seed(0))
    relevance = relevance_map(square_predictor(3, 5, 4), latents, scheduler.add_noise, timestep=800, output_size=(96, 128))
    assert relevance.shape == (2, 96, 128)
    assert relevance.min() >= 0 and relevance.max() <= 1
    truth = torch.zeros(2, 96, 128, dtype=torch.bool)
    truth[:, 24:56, 40:72] = True  # the latent square, 8x upsampled
    assert mask_iou(relevance_mask(relevance, 0.5), truth) >= 0.9


def test_clip_and_normalize_by_hand():
    # values 0..99 plus one huge outlier: Q1 = 25, Q3 = 75 (linear), IQR = 50, upper = 75 + 1.5 * 50 = 150
    values = torch.cat([torch.arange(99.0), torch.tensor([1e6])]).reshape(1, 10, 10)
    q1, q3 = torch.quantile(values.flatten(), torch.tensor([0.25, 0.75]))
    upper = q3 + 1.5 * (q3 - q1)
    normalized = clip_and_normalize(values, iqr_k=1.5)
    assert normalized.max() == 1.0 and normalized.min() == 0.0
    # the outlier is clipped to `upper`, so ordinary values keep their spread
    torch.testing.assert_close(normalized.flatten()[:99], torch.arange(99.0) / upper)


def test_clip_and_normalize_constant_map_is_zero():
    assert torch.equal(clip_and_normalize(torch.full((1, 4, 4), 2.0)), torch.zeros(1, 4, 4))


def test_raw_relevance_sums_absolute_channel_differences():
    eps_text = torch.zeros(1, 4, 2, 2)
    eps_text[0, :, 0, 0] = torch.tensor([1.0, -2.0, 0.5, 0.0])
    raw = relevance_from_predictions(eps_text, torch.zeros(1, 4, 2, 2))
    assert raw[0, 0, 0] == 3.5 and raw[0, 1, 1] == 0


def test_mask_threshold_and_dilation():
    relevance = torch.zeros(1, 9, 9)
    relevance[0, 4, 4] = 0.7
    assert relevance_mask(relevance, 0.5).sum() == 1
    assert relevance_mask(relevance, 0.8).sum() == 0
    assert relevance_mask(relevance, 0.0).all()  # tau 0 edits everywhere
    assert relevance_mask(relevance, 0.5, dilate_px=2).sum() == 25


def test_samples_are_averaged():
    scheduler = DDIMScheduler()
    latents = torch.zeros(1, 4, 8, 8)
    calls = []

    def predict(noisy, t):
        calls.append(t)
        return noisy, torch.zeros_like(noisy)

    relevance_map(predict, latents, scheduler.add_noise, timestep=800, num_samples=3)
    assert len(calls) == 3 and all(int(t) == 800 for t in calls)
    with pytest.raises(ValueError):
        relevance_map(predict, latents, scheduler.add_noise, timestep=800, num_samples=0)


def test_tiny_model_relevance_shape_range_and_timestep(tiny_ip2p):
    editor = RelevanceGuidedEditor(EditorConfig(model="tiny"), ip2p=tiny_ip2p)
    seen = []
    original = tiny_ip2p.predict_text_and_null

    def spy(noisy, t, image_latents, instruction):
        seen.append((int(t), instruction, noisy.shape))
        return original(noisy, t, image_latents, instruction)

    tiny_ip2p.predict_text_and_null = spy
    try:
        relevance = editor.relevance(torch.rand(2, 3, 44, 60), "turn the ball blue")
    finally:
        del tiny_ip2p.predict_text_and_null
    assert relevance.shape == (2, 44, 60)
    assert relevance.min() >= 0 and relevance.max() <= 1 and relevance.max() > 0.5
    assert seen == [(800, "turn the ball blue", (2, 4, 6, 8))]  # one call at 0.8 T, padded to 48x64


def test_sparse_map_is_not_erased_by_clipping():
    sparse = torch.zeros(1, 8, 8)
    sparse[0, 2:4, 2:4] = 5.0  # 4 of 64 pixels: Q3 = IQR = 0
    normalized = clip_and_normalize(sparse)
    assert torch.equal(normalized > 0.5, sparse > 0)
