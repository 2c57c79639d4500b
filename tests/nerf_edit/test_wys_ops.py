import pytest
import torch
from diffusers import DDIMScheduler

from nerf_edit.config.editor import EditorConfig
from nerf_edit.core.masks import mask_iou
from nerf_edit.wys.editor import RelevanceGuidedEditor
from nerf_edit.wys.ops import (
    clip_and_normalize,
    composite,
    edit_region,
    feathered_weights,
    masked_relevance_loss,
    relevance_from_predictions,
    relevance_map,
    relevance_mask,
    rendered_relevance_mask,
)


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


def test_a_batch_gets_the_maps_its_images_get_one_by_one_from_the_same_generator():
    """The noise is drawn image by image, so a batch of 3 (2 samples each) equals the 3 images computed alone with
    one generator, in order; a predictor whose relevance is the noise itself makes any other draw order show."""
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    latents = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(1))

    def noise_reader(noisy, t):  # relevance follows z_t, i.e. the draws
        return noisy, torch.zeros_like(noisy)

    def maps(batch, generator):
        return relevance_map(noise_reader, batch, scheduler.add_noise, timestep=800, num_samples=2,
                             generator=generator)

    batched = maps(latents, torch.Generator().manual_seed(7))
    generator = torch.Generator().manual_seed(7)
    alone = torch.cat([maps(latents[k : k + 1], generator) for k in range(3)])
    torch.testing.assert_close(batched, alone)
    assert not torch.allclose(batched[0], batched[1])  # the images got different draws


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


def test_composite_is_exact_outside_and_inside():
    edited, original = torch.rand(1, 3, 10, 10), torch.rand(1, 3, 10, 10)
    mask = torch.zeros(1, 10, 10, dtype=torch.bool)
    mask[0, 2:8, 2:8] = True
    out = composite(edited, original, feathered_weights(mask, feather_px=2))
    outside = ~mask[:, None].expand_as(out)
    assert torch.equal(out[outside], original[outside])
    assert torch.equal(out[:, :, 4:6, 4:6], edited[:, :, 4:6, 4:6])  # the mask's core is all edit
    soft = out[:, :, 2, 2]  # the edge blends
    assert not torch.equal(soft, edited[:, :, 2, 2]) and not torch.equal(soft, original[:, :, 2, 2])


def test_the_rendered_relevance_mask_normalises_per_view_before_tau():
    """in2n_pipeline.py ~172-174: `(rendered - min) / (max - min) > threshold`; off: the raw values against τ."""
    ball = torch.zeros(16, 24, dtype=torch.bool)
    ball[4:9, 6:12] = True
    rendered = 0.2 + 0.1 * ball.float() + 0.01 * torch.rand(16, 24, generator=torch.Generator().manual_seed(0))
    assert torch.equal(rendered_relevance_mask(rendered, 0.5), ball)
    assert not rendered_relevance_mask(rendered, 0.5, normalize=False).any()
    flat = torch.full((4, 4), 0.3)  # max == min: no division by zero, nothing at τ 0.5
    assert not rendered_relevance_mask(flat, 0.5).any()


def test_the_relevance_loss_is_the_mean_over_valid_pixels_and_zero_without_any():
    predicted = torch.tensor([[0.2], [0.9], [0.5], [0.0]], requires_grad=True)
    target = torch.tensor([[0.0], [1.0], [1.0], [1.0]])
    valid = torch.tensor([[True], [True], [False], [False]])
    loss = masked_relevance_loss(predicted, target, valid)
    assert torch.isclose(loss, torch.tensor((0.2**2 + 0.1**2) / 2))
    loss.backward()
    assert predicted.grad[2:].abs().sum() == 0 and predicted.grad[:2].abs().sum() > 0  # no target, no gradient
    none = masked_relevance_loss(predicted, target, torch.zeros_like(valid))
    assert none.item() == 0 and none.requires_grad  # both backends: a step without targets moves nothing


def test_the_edit_region_is_the_rendered_mask_or_the_union_with_the_views_target():
    rendered = torch.zeros(8, 8)
    rendered[4:, 2:6] = 1.0
    target = torch.zeros(8, 8)
    target[1:4, 3:5] = 0.8  # where a new object will stand: no surface renders relevance there yet
    assert torch.equal(edit_region(rendered, 0.5), rendered > 0)
    assert torch.equal(edit_region(rendered, 0.5, target=target), (rendered > 0) | (target > 0))
    assert torch.equal(edit_region(rendered, 0.9, target=target), rendered > 0)  # the target below τ adds nothing
