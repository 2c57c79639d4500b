"""The edit chain: a fresh start, a new edit on top of a run (its result becomes the starting views), a resume."""

import torch
from scene_fakes import LoopConfig, Views

from nerf_edit.scene.chain import EditChain
from nerf_edit.scene.history import read_history
from nerf_edit.scene.store import EditStore


def previous_run(tmp_path, views, prompt="turn the ball blue"):
    """A finished run that edited view_1 and left relevance for every view."""
    run = tmp_path / "previous"
    store = EditStore.for_run(run)
    chain = EditChain(run, views, store, say=lambda line: None)
    chain.start(LoopConfig(prompt=prompt), None)
    edited = torch.full_like(views.original_images[1], 64 / 255)  # a value the PNG keeps exactly
    store.save_image("view_1", edited)
    for name in views.names:
        store.save_relevance(name, torch.ones(12, 12))
    chain.record_view("view_1")
    chain.write()
    return run, edited


def test_a_fresh_start_writes_a_one_step_history(tmp_path):
    views = Views()
    chain = EditChain(tmp_path / "run", views, EditStore.for_run(tmp_path / "run"), say=lambda line: None)
    mode, previous = chain.start(LoopConfig(), None)
    assert (mode, previous) == ("start", None)
    history = read_history(tmp_path / "run")
    assert len(history) == 1 and history[0].prompt == LoopConfig().prompt and history[0].continued_from is None


def test_a_new_edit_starts_from_the_previous_runs_result(tmp_path):
    views = Views(count=3)
    run, edited = previous_run(tmp_path, Views(count=3))
    lines = []
    this = tmp_path / "this"
    chain = EditChain(this, views, EditStore.for_run(this), say=lines.append)
    mode, previous = chain.start(LoopConfig(prompt="make the cube green"), run)
    assert mode == "new-edit" and previous.prompt == "turn the ball blue"
    assert torch.allclose(views.original_images[1], edited) and torch.allclose(views.image_batch["image"][1], edited)
    assert sorted(EditStore.for_run(this).load_base()) == ["view_1"]
    assert [step.prompt for step in read_history(this)] == ["turn the ball blue", "make the cube green"]
    assert any("New edit" in line for line in lines)


def test_a_resume_takes_the_edits_and_targets_back(tmp_path):
    views = Views(count=3)
    run, edited = previous_run(tmp_path, Views(count=3))
    this = tmp_path / "this"
    chain = EditChain(this, views, EditStore.for_run(this), say=lambda line: None)
    mode, _ = chain.start(LoopConfig(prompt="turn the ball blue"), run)
    assert mode == "resume" and chain.this.views_changed == ["view_1"]
    edited_views, targets = chain.restore(EditStore.for_run(run))
    assert edited_views == [1] and targets == 3 and views.has_all_relevance_targets()
    assert torch.allclose(views.image_batch["image"][1], edited)
    assert torch.equal(views.original_images[1], Views(count=3).original_images[1])  # the photo stays the original
