import math

import pytest
import torch

from nerf_edit.eval.metrics import (
    ClipEmbedder,
    background_metrics,
    cosine,
    direction_consistency,
    directional_similarity,
    edit_metrics,
    text_image_similarity,
)


def test_background_metrics_by_hand():
    original = torch.zeros(1, 3, 4, 4)
    edited = original.clone()
    edited[..., :2, :] = 0.1  # top half off by 0.1 everywhere ...
    edited[..., 3, 3] = 1.0  # ... and one pixel changed completely, inside the mask
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, 3, 3] = True
    metrics = background_metrics(edited, original, mask)
    # outside the mask: 15 pixels x 3 channels, 8 of 15 pixels off by 0.1
    l2 = 8 * 0.01 / 15
    assert metrics["l2"] == pytest.approx(l2)
    assert metrics["l1"] == pytest.approx(8 * 0.1 / 15)
    assert metrics["psnr"] == pytest.approx(10 * math.log10(1 / l2))
    with pytest.raises(ValueError, match="no background"):
        background_metrics(edited, original, torch.ones(1, 4, 4, dtype=torch.bool))


def test_cosine_metrics_by_hand():
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert torch.allclose(text_image_similarity(e, torch.tensor([1.0, 0.0])), torch.tensor([1.0, 0.0, 2**-0.5]))
    # edit direction (0,1)-(1,0) vs caption direction the same -> 1; opposite -> -1
    d = directional_similarity(e[1:2], e[0:1], torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]))
    assert torch.allclose(d, torch.tensor([1.0]))
    d = directional_similarity(e[1:2], e[0:1], torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.0]))
    assert torch.allclose(d, torch.tensor([-1.0]))
    # a video that moves like the original is consistent
    assert torch.allclose(direction_consistency(e, e), torch.ones(2))
    assert torch.allclose(direction_consistency(e, -e), -torch.ones(2))


@pytest.fixture(scope="module")
def clip():
    return ClipEmbedder("tiny")


def test_clip_metrics_are_bounded_and_symmetric(clip):
    generator = torch.Generator().manual_seed(0)
    a, b = torch.rand(4, 3, 40, 52, generator=generator), torch.rand(4, 3, 40, 52, generator=generator)
    ea, eb = clip.images(a), clip.images(b)
    assert torch.allclose(ea.norm(dim=-1), torch.ones(4))
    assert torch.allclose(cosine(ea, eb), cosine(eb, ea))
    assert torch.allclose(cosine(ea, ea), torch.ones(4), atol=1e-5)
    results = edit_metrics(clip, a, b, "turn the ball blue", "a red ball", "a blue ball", torch.zeros(4, 40, 52, dtype=torch.bool))
    for name in ("clip_text_image", "clip_image_to_original", "clip_direction_consistency", "clip_directional"):
        assert -1 <= results[name] <= 1, name
    assert len(results["per_frame"]["clip_direction_consistency"]) == 3
    same = edit_metrics(clip, a, a, "turn the ball blue")
    assert same["clip_image_to_original"] == pytest.approx(1.0, abs=1e-5)
    assert same["clip_direction_consistency"] == pytest.approx(1.0, abs=1e-4)


def test_mismatched_sequences_are_refused(clip):
    with pytest.raises(ValueError, match="differ in shape"):
        edit_metrics(clip, torch.rand(2, 3, 32, 32), torch.rand(3, 3, 32, 32), "x")


def test_unavailable_clip_is_one_line(monkeypatch, tmp_path):
    from nerf_edit.errors import ModelUnavailableError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ModelUnavailableError, match="openai/clip-vit-base-patch32") as info:
        ClipEmbedder()
    assert "\n" not in str(info.value)
