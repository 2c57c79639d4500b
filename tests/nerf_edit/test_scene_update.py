"""The dataset update: render, mask from the rendered relevance, edit, put back; the photo outside the mask."""

import torch
from scene_fakes import OVER_EDIT, PlantedEditor, Views

from nerf_edit.core.progress import Progress
from nerf_edit.scene.chain import EditChain
from nerf_edit.scene.settings import EditSettings
from nerf_edit.scene.store import EditStore
from nerf_edit.scene.targets import RelevanceTargets
from nerf_edit.scene.update import DatasetUpdate
from nerf_edit.wys.ops import edit_region

SETTINGS = EditSettings("turn the left half blue", 7.5, 1.5, 0.5)


def render_with_ball(views):
    """A render that is not the photo (so a leak would show), with relevance 1 in a square 'ball'."""
    def render(index):
        relevance = torch.zeros(12, 12, 1)
        relevance[3:8, 2:9] = 1.0
        return {"rgb": (views.original_images[index] * 0.5).clamp(0, 1), "relevance": relevance}

    return render


def update_over(views, tmp_path, with_targets=True):
    editor = PlantedEditor()
    store = EditStore(tmp_path / "edits")
    chain = EditChain(None, views, store, say=lambda line: None)
    targets = RelevanceTargets(views, editor, render_with_ball(views), torch.device("cpu"), store) if with_targets else None
    mask = (lambda rendered, target, tau: edit_region(rendered, tau, target=target)) if with_targets else None
    update = DatasetUpdate(views, editor, render_with_ball(views), mask, targets, chain, seed=0,
                           log=Progress("update", enabled=False))
    return update, editor, store


def test_an_edit_changes_the_view_inside_the_rendered_relevance_and_leaves_the_photo_outside(tmp_path):
    views = Views(count=4)
    update, editor, store = update_over(views, tmp_path)
    before = views.image_batch["image"].clone()
    update.edit([2], SETTINGS, strength=0.6)
    ball = torch.zeros(12, 12, dtype=torch.bool)
    ball[3:8, 2:9] = True
    request = editor.requests[0]
    assert torch.equal(request.mask[0], ball) and request.strength == 0.6
    assert torch.equal(request.conditioning, views.original_images[2:3].permute(0, 3, 1, 2))
    trained = views.image_batch["image"]
    assert torch.equal(trained[2][~ball], before[2][~ball])  # the photo, bit for bit
    expected = (views.original_images[2] * 0.5 + OVER_EDIT).clamp(0, 1)
    assert torch.allclose(trained[2][ball], expected[ball])
    assert torch.equal(trained[[0, 1, 3]], before[[0, 1, 3]])
    images, relevance = store.load()
    assert list(images) == ["view_2"] and list(relevance) == ["view_2"]  # the edit refreshed its target
    assert (store.masks_dir / "view_2.png").is_file() and update.done == 1


def test_without_relevance_the_editor_decides_where(tmp_path):
    views = Views(count=2)
    update, editor, _ = update_over(views, tmp_path, with_targets=False)
    update.edit([0], SETTINGS, strength=0.5)
    assert editor.requests[0].mask is None
    assert torch.allclose(views.image_batch["image"][0], (views.original_images[0] * 0.5 + OVER_EDIT).clamp(0, 1))


def test_the_settings_reach_the_editor_and_the_mask():
    views = Views(count=1)
    update, editor, _ = update_over(views, __import__("pathlib").Path("/tmp") / "unused-scene-update")
    job = update.prepare([0], SETTINGS.replace(tau=1.01, guidance_scale=3.0), strength=0.4)
    assert not job.masks.any() and editor.config.guidance_scale == 3.0


def test_overlapped_edits_land_at_the_next_edit_step(tmp_path):
    views = Views(count=3)
    update, _, _ = update_over(views, tmp_path)
    before = views.image_batch["image"].clone()
    update.overlap([0], SETTINGS, 0.5, torch.device("cpu"))
    assert update.done == 0
    update.overlap([1], SETTINGS, 0.5, torch.device("cpu"))  # the first job is applied first
    assert update.done == 1 and not torch.equal(views.image_batch["image"][0], before[0])
    update.finish()
    assert update.done == 2 and not torch.equal(views.image_batch["image"][1], before[1])


def test_discarded_edits_in_flight_never_land(tmp_path):
    views = Views(count=2)
    update, editor, store = update_over(views, tmp_path)
    before = views.image_batch["image"].clone()
    update.overlap([0], SETTINGS, 0.5, torch.device("cpu"))
    update.discard()
    update.finish()  # nothing left to apply
    assert len(editor.requests) == 1 and update.done == 0  # it ran, and was dropped
    assert torch.equal(views.image_batch["image"], before) and store.num_images() == 0
    images, relevance = store.load()
    assert list(relevance) == ["view_0"]  # its refreshed target kept, as for an edit that landed before a reset
