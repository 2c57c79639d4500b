"""Edit a scene again and again (in-process, the oracle and colour-key editors on a small scene): a run that loads a wys
run with another prompt edits on top of its result, the same prompt resumes it, a prompt changed in the viewer
retargets every relevance target before the next edit, and every run writes its chain to edit_history.json."""

import json

import numpy as np
import pytest
import torch
from oracle_editor import red_region
from wys_runs import HOLD_OUT

from nerf_edit.eval.synthetic import make_scene
from nerf_edit.scene.history import HISTORY_FILE, read_history
from nerf_edit.scene.store import EditStore
from nerf_edit_methods.configs import LIGHT_CPU_ARGS, method_config

# The scene's red ball and blue cube; colorkey edits by colour, so each step of a chain names a colour no other
# step makes: the cube turns green, then the ball yellow, then the green cube purple.
FIRST = "turn the blue cube green"
SECOND = "turn the red ball yellow"
THIRD = "turn the green cube purple"
COLORKEY = ["--pipeline.editor", "colorkey", "--pipeline.relevance-warmup-steps", "0", "--pipeline.edit-rate", "1"]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return make_scene(tmp_path_factory.mktemp("scene") / "small", num_views=8, size=32, seed=0)


def run_setup(scene, folder, prompt, args=()):
    """A trainer set up as ns-train sets it up (history, restore), without training."""
    torch.manual_seed(0)
    config = method_config("wys", LIGHT_CPU_ARGS + COLORKEY + ["--data", str(scene), "--output-dir", str(folder),
                                                               "--pipeline.prompt", prompt, *args] + HOLD_OUT)
    config.set_timestamp()
    config.save_config()  # as ns-train does: <run>/config.yml
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    return trainer


def trained_field(pipeline) -> None:
    """Stands in for a trained relevance field (no training here): a view's rendered relevance is its target."""
    render = pipeline.render_train_view

    def render_with_target(index):
        outputs = dict(render(index))
        outputs["relevance"] = pipeline.datamanager.image_batch["relevance"][index].to(outputs["rgb"])
        return outputs

    pipeline.render_train_view = render_with_target


def edit_all(trainer) -> None:
    """Relevance targets for every view, then one edit of each, and a checkpoint a later run can load."""
    pipeline = trainer.pipeline
    trained_field(pipeline)
    pipeline.compute_relevance_targets()
    for index in range(len(pipeline.datamanager.names)):
        pipeline.edit_views([index])
    trainer.save_checkpoint(0)


def checkpoints(trainer):
    return str(trainer.base_dir / "nerfstudio_models")


def saved_masks(trainer) -> torch.Tensor:
    """The masks the run's edits were allowed in, as it saved them (edits/masks/<view>.png). -> [N, H, W] bool"""
    from nerf_edit.core.io import load_image

    store = EditStore.for_run(trainer.base_dir)
    return torch.stack([load_image(store.masks_dir / f"{name}.png")[0] > 0.5 for name in trainer.pipeline.datamanager.names])


def colour(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean colour [3] of `images` [N, H, W, 3] inside `mask` [N, H, W]."""
    return images[mask].mean(0)


def test_another_prompt_edits_on_top_and_keeps_the_first_edit(scene, tmp_path, capsys):
    first = run_setup(scene, tmp_path / "first", FIRST)
    edit_all(first)
    photos = first.pipeline.datamanager.original_images.clone()
    ball = red_region(photos.permute(0, 3, 1, 2))  # [N, H, W]
    cube = saved_masks(first)  # where colorkey found blue: the cube
    assert cube.any() and ball.any() and not (cube & ball).any()
    first_views = first.pipeline.datamanager.image_batch["image"].clone()
    capsys.readouterr()

    second = run_setup(scene, tmp_path / "second", SECOND, ["--load-dir", checkpoints(first)])
    assert f"New edit {SECOND!r} on top of" in " ".join(capsys.readouterr().out.split())
    pipeline = second.pipeline
    # its starting views are the first run's result (up to PNG rounding), not the photos
    assert (pipeline.datamanager.original_images - first_views).abs().max() <= 0.5 / 255 + 1e-6
    assert not pipeline.targets.ready  # recomputed for the new prompt before the first edit
    edit_all(second)
    final = pipeline.datamanager.image_batch["image"]
    cube_now, ball_now = colour(final, cube), colour(final, ball)
    assert cube_now[1] > cube_now[0] + 0.1 and cube_now[1] > cube_now[2] + 0.1  # the cube is still green
    assert min(ball_now[0], ball_now[1]) > ball_now[2] + 0.2  # and the ball is yellow now
    # outside what the second edit was allowed to change, its views are the first run's result
    outside = ~saved_masks(second)[..., None].expand_as(final)
    assert (final[outside] - first_views[outside]).abs().max() <= 0.5 / 255 + 1e-6


def test_the_same_prompt_resumes_and_continue_as_can_say_otherwise(scene, tmp_path, capsys):
    first = run_setup(scene, tmp_path / "first", FIRST)
    edit_all(first)
    capsys.readouterr()
    resumed = run_setup(scene, tmp_path / "resumed", FIRST, ["--load-dir", checkpoints(first)])
    out = " ".join(capsys.readouterr().out.split())
    assert "Resuming" in out and "Restored 6 edited views and 6 relevance targets" in out
    assert resumed.pipeline.targets.ready
    assert torch.equal(resumed.pipeline.datamanager.original_images, first.pipeline.datamanager.original_images)
    stacked = run_setup(scene, tmp_path / "stacked", FIRST, ["--load-dir", checkpoints(first),
                                                           "--pipeline.continue-as", "new-edit"])
    assert "New edit" in capsys.readouterr().out and not stacked.pipeline.targets.ready
    assert not torch.equal(stacked.pipeline.datamanager.original_images, first.pipeline.datamanager.original_images)


def test_resuming_an_interrupted_stacked_run_loses_nothing(scene, tmp_path):
    first = run_setup(scene, tmp_path / "first", FIRST)
    edit_all(first)
    second = run_setup(scene, tmp_path / "second", SECOND, ["--load-dir", checkpoints(first)])
    trained_field(second.pipeline)
    second.pipeline.compute_relevance_targets()
    second.pipeline.edit_views([2])  # "killed" after one edit
    second.save_checkpoint(0)
    starts = second.pipeline.datamanager.original_images.clone()
    views = second.pipeline.datamanager.image_batch["image"].clone()
    again = run_setup(scene, tmp_path / "again", SECOND, ["--load-dir", checkpoints(second)])
    manager = again.pipeline.datamanager
    assert (manager.original_images - starts).abs().max() <= 0.5 / 255 + 1e-6  # the first edit is still the start
    assert (manager.image_batch["image"] - views).abs().max() <= 0.5 / 255 + 1e-6  # and the stacked edit is back
    store = EditStore.for_run(again.base_dir)
    assert len(store.load_base()) == 6 and store.num_images() == 1  # all of it kept in the new run too
    assert again.pipeline.targets.ready


def apply_in_viewer(pipeline, prompt: str) -> None:
    """Type `prompt` in the viewer's "Edit prompt" box and press "Apply prompt"."""
    pipeline.controls.prompt.value = prompt
    pipeline.controls.apply_prompt.cb_hook(pipeline.controls.apply_prompt)


def test_a_prompt_changed_in_the_viewer_retargets_every_view_before_the_next_edit(scene, tmp_path):
    trainer = run_setup(scene, tmp_path / "run", FIRST, ["--pipeline.relevance-warmup-steps", "5"])
    pipeline = trainer.pipeline
    trained_field(pipeline)
    calls = []
    relevance = pipeline.editor.relevance

    def counting(images, instruction, conditioning=None, generator=None):
        calls.append((instruction, len(images)))
        return relevance(images, instruction, conditioning, generator)

    pipeline.editor.relevance = counting
    edit_calls = []
    edit = pipeline.updates.edit
    pipeline.updates.edit = lambda indices, *args: edit_calls.append(list(indices)) or edit(indices, *args)
    for step in range(8):
        pipeline.update_dataset(step)
    views = len(pipeline.datamanager.names)
    assert sum(n for prompt, n in calls if prompt == FIRST) >= views and edit_calls
    calls.clear()
    edit_calls.clear()
    apply_in_viewer(pipeline, SECOND)
    pipeline.update_dataset(8)
    assert [n for prompt, n in calls] == [1] * views and {prompt for prompt, _ in calls} == {SECOND}
    assert edit_calls == []  # edits wait for the field to train on the new targets (the warm-up)
    for step in range(9, 14):
        pipeline.update_dataset(step)
    assert edit_calls and {prompt for prompt, _ in calls} == {SECOND}
    assert read_history(trainer.base_dir)[-1].prompt == SECOND  # the run's record: the prompt it edits with now


def test_a_prompt_the_editor_cannot_use_is_not_applied_and_training_goes_on(scene, tmp_path, capsys):
    """A half-typed prompt applied in the viewer (colorkey reads no target colour in it): one line, and edits go on
    with the prompt they had, its relevance targets kept."""
    trainer = run_setup(scene, tmp_path / "run", FIRST)
    pipeline = trainer.pipeline
    trained_field(pipeline)
    for step in range(3):
        pipeline.update_dataset(step)
    targets = pipeline.datamanager.image_batch["relevance"].clone()
    done = pipeline.updates.done
    apply_in_viewer(pipeline, "turn the red ball gre")
    for step in range(3, 6):
        pipeline.update_dataset(step)
    lines = [line for line in capsys.readouterr().out.splitlines() if "not applied" in line]
    assert len(lines) == 1 and "can't read a source and a target colour" in lines[0] and FIRST in lines[0], lines
    assert pipeline.updates.done == done + 3 and pipeline.controls.settings.prompt == FIRST
    assert torch.equal(pipeline.datamanager.image_batch["relevance"], targets)  # no retargeting
    assert read_history(trainer.base_dir)[-1].prompt == FIRST


def test_a_three_step_chain_is_written_to_every_runs_history(scene, tmp_path):
    first = run_setup(scene, tmp_path / "a", FIRST)
    edit_all(first)
    second = run_setup(scene, tmp_path / "b", SECOND, ["--load-dir", checkpoints(first)])
    edit_all(second)
    third = run_setup(scene, tmp_path / "c", THIRD, ["--load-dir", checkpoints(second)])
    edit_all(third)
    chain = read_history(third.base_dir)
    assert [step.prompt for step in chain] == [FIRST, SECOND, THIRD]
    assert [step.continued_as for step in chain] == ["start", "new-edit", "new-edit"]
    assert [step.run for step in chain] == [str(t.base_dir) for t in (first, second, third)]
    assert chain[1].continued_from == str(first.base_dir) and chain[2].continued_from == str(second.base_dir)
    tau = third.pipeline.config.editing.tau
    assert all(step.editor == "colorkey" and step.settings["tau"] == tau for step in chain)
    assert sorted(chain[0].views_changed) == sorted(first.pipeline.datamanager.names)
    # each run keeps its own history: the first run's is the chain's first step alone
    assert [step.prompt for step in read_history(first.base_dir)] == [FIRST]
    raw = json.loads((third.base_dir / HISTORY_FILE).read_text())
    assert len(raw["chain"]) == 3


def test_the_report_shows_each_views_files_and_the_chain(scene, tmp_path):
    from PIL import Image

    from nerf_edit_scripts.report import Report

    first = run_setup(scene, tmp_path / "first", FIRST)
    edit_all(first)
    second = run_setup(scene, tmp_path / "second", SECOND, ["--load-dir", checkpoints(first)])
    edit_all(second)
    (second.base_dir / "eval").mkdir()
    (second.base_dir / "eval" / "results.json").write_text(json.dumps({"background_psnr": 31.5, "frames": 2}))
    index = Report(run=second.base_dir).main()
    page = index.read_text()
    assert index == second.base_dir / "report" / "index.html"
    assert FIRST in page and SECOND in page and "new-edit" in page and "31.5000" in page
    assert "tau" in page and "instruct-pix2pix" not in page  # colorkey loads no model: none is named
    other = list((second.base_dir / "report").glob("*/index.html"))
    assert len(other) == 1 and SECOND in other[0].read_text()  # the first run's page, linked from this one
    store = EditStore.for_run(second.base_dir)
    images = index.parent / "images"
    for name in second.pipeline.datamanager.names:
        def png(kind):
            return np.asarray(Image.open(images / f"{name}_{kind}.png"))

        photo = scene / "images" / f"{name}.png"
        assert np.array_equal(png("photo"), np.asarray(Image.open(photo).convert("RGB")))
        for kind, folder in (("start", store.base_dir), ("edited", store.images_dir), ("mask", store.masks_dir)):
            assert np.array_equal(png(kind), np.asarray(Image.open(folder / f"{name}.png"))), (name, kind)
        target = np.load(store.relevance_dir / f"{name}.npy")
        assert np.array_equal(png("relevance"), np.round(np.clip(target, 0, 1) * 255).astype(np.uint8))
        assert f"{name}_edited.png" in page
