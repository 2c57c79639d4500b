"""The colour-key demonstration editor on the bundled scene, against its ground-truth object masks."""

import colorsys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nerf_edit.config.editor import EditorConfig
from nerf_edit.core.masks import mask_iou
from nerf_edit.editing.colorkey import ColorKeyEditor, parse_instruction, recolour
from nerf_edit.editing.editor import Editor, editor_class, make_editor
from nerf_edit.errors import EditorError
from nerf_edit.eval.synthetic import load_object_masks

SCENE = Path(__file__).resolve().parents[2] / "data" / "synthetic"
BALL, CUBE = 1, 2


@pytest.fixture(scope="module")
def views():
    """The bundled scene's 40 views [40, 3, 96, 96] and their object labels [40, 96, 96] (0 background)."""
    masks = load_object_masks(SCENE)
    names = sorted(masks)
    images = np.stack([np.asarray(Image.open(SCENE / name), dtype=np.float32) / 255 for name in names])
    return torch.from_numpy(images).permute(0, 3, 1, 2), np.stack([masks[name] for name in names])


def test_registered_by_name_and_follows_the_editor_protocol():
    assert editor_class("colorkey") is ColorKeyEditor
    editor = make_editor("colorkey", EditorConfig(model="no/such-model"))  # loads no weights at all
    assert isinstance(editor, Editor)
    assert ColorKeyEditor.is_demonstration


def test_relevance_finds_the_red_ball_and_nothing_else(views):
    images, labels = views
    relevance = ColorKeyEditor(EditorConfig()).relevance(images, "turn the red ball blue").numpy()
    assert relevance.shape == labels.shape and relevance.min() >= 0 and relevance.max() <= 1
    ious = [float(mask_iou(r >= 0.5, label == BALL)) for r, label in zip(relevance, labels)]
    print(f"relevance IoU vs the ball: mean {np.mean(ious):.3f}, worst {np.min(ious):.3f}")
    assert np.mean(ious) >= 0.9 and np.min(ious) >= 0.8
    assert relevance[labels == CUBE].mean() < 0.02  # the blue cube and the floor are not red
    assert relevance[labels == 0].mean() < 0.02


def test_relevance_reads_the_images_alone_as_it_declares(views):
    """`relevance_reads_conditioning = False` lets the 3D method skip rendering views for colorkey's relevance
    targets: true only if the conditioning never changes the answer."""
    images, _ = views
    editor = ColorKeyEditor(EditorConfig())
    assert editor.relevance_reads_conditioning is False
    alone = editor.relevance(images[:8], "turn the red ball blue")
    for conditioning in (images[8:16], torch.rand_like(images[:8]), torch.zeros_like(images[:8])):
        assert torch.equal(editor.relevance(images[:8], "turn the red ball blue", conditioning=conditioning), alone)


def test_edit_turns_the_ball_blue_and_keeps_every_other_pixel(views):
    images, labels = views
    result = ColorKeyEditor(EditorConfig()).edit(images, "turn the red ball blue")
    mask = result.mask.numpy()
    assert mask_iou(mask, labels == BALL) >= 0.9
    outside = torch.from_numpy(~mask)[:, None].expand_as(images)
    assert torch.equal(result.images[outside], images[outside])  # exactly the input outside the mask
    ball = torch.from_numpy(labels == BALL)[:, None].expand_as(images) & ~outside
    before = images.permute(1, 0, 2, 3)[ball.permute(1, 0, 2, 3)].view(3, -1)
    after = result.images.permute(1, 0, 2, 3)[ball.permute(1, 0, 2, 3)].view(3, -1)
    assert (before[0] - before[2]).mean() > 0.3  # red before
    assert (after[2] - after[0]).mean() > 0.3 and (after[2] > after[0]).float().mean() > 0.99  # blue after
    assert torch.allclose(after.max(0).values, before.max(0).values, atol=1e-6)  # shading kept (HSV value)


def test_given_mask_is_obeyed_and_the_conditioning_view_is_recoloured(views):
    images, _ = views
    render, original = images[:2] * 0.5, images[:2]  # a darker "render" conditioned on the original view
    mask = torch.zeros(2, 96, 96, dtype=torch.bool)
    mask[:, 20:60, 10:50] = True
    result = ColorKeyEditor(EditorConfig()).edit(render, "make the red ball green", conditioning=original, mask=mask)
    assert torch.equal(result.images[~mask[:, None].expand_as(render)], render[~mask[:, None].expand_as(render)])
    expected = recolour(original, 120.0)
    assert torch.allclose(result.images.permute(0, 2, 3, 1)[mask], expected.permute(0, 2, 3, 1)[mask])


def test_recolour_matches_colorsys_with_the_hue_replaced():
    pixels = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    ours = recolour(pixels, 230.0)[0].permute(1, 2, 0).reshape(-1, 3)
    for rgb, got in zip(pixels[0].permute(1, 2, 0).reshape(-1, 3).tolist(), ours.tolist()):
        _, saturation, value = colorsys.rgb_to_hsv(*rgb)
        assert got == pytest.approx(colorsys.hsv_to_rgb(230 / 360, saturation, value), abs=1e-5)


def test_instruction_parsing():
    assert parse_instruction("turn the red ball blue") == ("red", "blue")
    assert parse_instruction("Change the Yellow cup to purple.") == ("yellow", "purple")
    for bad in ("give him a hat", "make it blue", "turn the red ball red"):
        with pytest.raises(EditorError) as error:
            ColorKeyEditor(EditorConfig()).relevance(torch.zeros(1, 3, 8, 8), bad)
        assert "\n" not in str(error.value) and "turn the red ball blue" in str(error.value)


def test_bad_mask_and_conditioning_are_editor_errors():
    editor, images = ColorKeyEditor(EditorConfig()), torch.zeros(2, 3, 16, 16)
    with pytest.raises(EditorError, match="mask must be"):
        editor.edit(images, "turn the red ball blue", mask=torch.ones(2, 8, 8, dtype=torch.bool))
    with pytest.raises(EditorError, match="conditioning is"):
        editor.edit(images, "turn the red ball blue", conditioning=images[:1])
