"""Relevance targets: every view's relevance for one prompt, conditioned on its render unless the editor reads the
original alone, kept in the views and on disk."""

import torch
from scene_fakes import PlantedEditor, Views

from nerf_edit.scene.store import EditStore
from nerf_edit.scene.targets import RelevanceTargets


def renders_of(views):
    rendered = []

    def render(index):
        rendered.append(index)
        return {"rgb": views.original_images[index].flip(0), "relevance": torch.zeros(*views.original_images.shape[1:3], 1)}

    return render, rendered


def test_targets_are_the_editors_relevance_of_the_originals_conditioned_on_the_renders(tmp_path):
    views, editor = Views(count=5), PlantedEditor()
    render, rendered = renders_of(views)
    store = EditStore(tmp_path / "edits")
    targets = RelevanceTargets(views, editor, render, torch.device("cpu"), store=store, batch=2)
    assert targets.needed_for("turn it blue")
    targets.compute("turn it blue")
    assert targets.ready and not targets.needed_for("turn it blue") and targets.needed_for("turn it red")
    assert sorted(rendered) == list(range(5)) and [len(call[0]) for call in editor.relevance_calls] == [2, 2, 1]
    originals = torch.cat([images for images, _, _ in editor.relevance_calls])
    conditioning = torch.cat([cond for _, cond, _ in editor.relevance_calls])
    assert torch.equal(originals, views.original_images.permute(0, 3, 1, 2))
    assert torch.equal(conditioning, views.original_images.flip(1).permute(0, 3, 1, 2))  # the renders
    left = torch.zeros(12, 12)
    left[:, :6] = 1
    assert torch.equal(views.image_batch["relevance"][..., 0], left.expand(5, -1, -1))
    assert views.image_batch["relevance_valid"].all()
    _, saved = store.load()
    assert sorted(saved) == sorted(views.names) and torch.equal(saved["view_3"], left)


def test_an_editor_that_reads_the_originals_alone_gets_no_render():
    views, editor = Views(count=3), PlantedEditor(reads_conditioning=False)
    render, rendered = renders_of(views)
    RelevanceTargets(views, editor, render, torch.device("cpu")).compute("turn it blue")
    assert rendered == [] and all(cond is None for _, cond, _ in editor.relevance_calls)


def test_targets_given_from_outside_are_taken_as_the_prompts_and_restored_ones_as_their_runs():
    views = Views(count=2)
    targets = RelevanceTargets(views, PlantedEditor(), lambda index: {}, torch.device("cpu"))
    for index in range(2):
        views.set_relevance_target(index, torch.rand(12, 12))
    targets.ready = True
    assert not targets.needed_for("whatever prompt")
    restored = RelevanceTargets(views, PlantedEditor(), lambda index: {}, torch.device("cpu"))
    restored.restored("the old prompt")
    assert restored.ready and not restored.needed_for("the old prompt") and restored.needed_for("a new one")
