"""The WYS pipeline's dataset update, viewer controls, edit store and restore, without training runs."""

import functools

import pytest
import torch
from nerfstudio.viewer.utils import parse_object
from nerfstudio.viewer.viewer_elements import ViewerElement
from oracle_editor import red_region
from wys_runs import HOLD_OUT, PROMPT

from nerf_edit.eval.synthetic import make_scene
from nerf_edit.scene.store import EditStore
from nerf_edit.zone import ops as zone
from nerf_edit_methods.configs import LIGHT_CPU_ARGS, method_config

ORACLE = ["--pipeline.editor", "oracle_editor:OracleEditor"]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return make_scene(tmp_path_factory.mktemp("scene") / "small", num_views=8, size=32, seed=0)


def setup_trainer(scene, output_dir, args=()):
    config = method_config("wys", LIGHT_CPU_ARGS + ORACLE + ["--data", str(scene), "--output-dir", str(output_dir),
                                                             "--pipeline.prompt", PROMPT, *args] + HOLD_OUT)
    config.set_timestamp()
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    return trainer


@pytest.fixture()
def trainer(scene, tmp_path):
    return setup_trainer(scene, tmp_path)


def test_viewer_finds_the_controls_on_the_pipeline(trainer):
    names = {element.name for _, element in parse_object(trainer.pipeline, ViewerElement, "Custom Elements")}
    assert names >= {"Edit prompt", "Text guidance", "Image guidance", "Relevance threshold τ", "Pause edits", "Reset edits",
                     "Apply prompt"}


def test_edit_replaces_the_training_view_and_writes_it(trainer):
    pipeline = trainer.pipeline
    batch = pipeline.datamanager.image_batch
    before = batch["image"].clone()
    pipeline.compute_relevance_targets()
    assert batch["relevance_valid"].all()
    pipeline.edit_views([2])
    changed = (batch["image"] != before).flatten(1).any(1)
    assert changed.tolist() == [i == 2 for i in range(len(changed))]
    store = pipeline.chain.store
    images, relevance = store.load()
    name = pipeline.datamanager.names[2]
    assert list(images) == [name] and len(relevance) == len(changed)
    assert (images[name] - batch["image"][2]).abs().max() <= 0.5 / 255 + 1e-6  # the PNG is what trains
    assert torch.equal(pipeline.datamanager.original_images, before)  # originals are kept


def record_edit_masks(pipeline) -> list:
    """The masks the pipeline hands its editor, in order."""
    masks, edit = [], pipeline.editor.edit

    @functools.wraps(edit)
    def recording_edit(*args, **kwargs):
        masks.append(kwargs["mask"][0].clone())
        return edit(*args, **kwargs)

    pipeline.editor.edit = recording_edit
    return masks


def as_bytes(image: torch.Tensor) -> torch.Tensor:
    return (image * 255).round().to(torch.uint8)


@pytest.mark.parametrize("editor", ["oracle_editor:OracleEditor", "oracle_editor:RenderBackgroundOracleEditor"])
def test_outside_the_mask_the_training_view_is_the_photo(scene, tmp_path, editor):
    """Official WYS: the latent blend re-noises the original view outside the mask (ip2p.py ~177-181) and the view
    written back is `edited * edit_mask + original_image * (1 - edit_mask)` (in2n_pipeline.py ~213): the render's
    blur never reaches training. The oracle over-edits everywhere and the untrained render is far from the
    photo, so either leaking outside the mask would show."""
    pipeline = setup_trainer(scene, tmp_path, ["--pipeline.editor", editor]).pipeline
    pipeline.compute_relevance_targets()
    masks = record_edit_masks(pipeline)
    render = pipeline.render_train_view(3)["rgb"].clamp(0, 1)
    pipeline.edit_views([3])
    mask, original = masks[0], pipeline.datamanager.original_images[3]
    trained = pipeline.datamanager.image_batch["image"][3]
    assert mask.any() and not mask.all()
    assert (render[~mask] - original[~mask]).abs().max() > 0.05  # the render is no stand-in for the photo
    assert torch.equal(trained[~mask], original[~mask])
    saved = pipeline.chain.store.load()[0][pipeline.datamanager.names[3]]
    assert torch.equal(as_bytes(saved[~mask]), as_bytes(original[~mask]))
    assert (trained[mask] != original[mask]).any()


@pytest.mark.parametrize("reads_conditioning", [True, False])
def test_relevance_targets_are_conditioned_on_the_renders_unless_the_editor_reads_the_originals_alone(
        trainer, reads_conditioning):
    """WYS: the relevance of the original view, conditioned on the render. An editor that declares it ignores the
    conditioning (`relevance_reads_conditioning = False`, colorkey) gets the originals alone and no view is
    rendered for it; the targets are the same."""
    pipeline = trainer.pipeline
    calls, rendered = [], []
    relevance, render = pipeline.editor.relevance, pipeline.render_train_view
    pipeline.editor.relevance = lambda images, instruction, conditioning=None, generator=None: (
        calls.append((images, conditioning)) or relevance(images, instruction, conditioning, generator))
    if not reads_conditioning:
        pipeline.editor.relevance_reads_conditioning = False
    pipeline.render_train_view = lambda index: rendered.append(index) or render(index)
    pipeline.compute_relevance_targets()
    views = len(pipeline.datamanager.names)
    originals = pipeline.datamanager.original_images.permute(0, 3, 1, 2)  # [N, 3, H, W]
    assert torch.equal(torch.cat([images for images, _ in calls]), originals)
    assert torch.equal(pipeline.datamanager.image_batch["relevance"][..., 0], red_region(originals).float())
    if reads_conditioning:
        assert sorted(rendered) == list(range(views))
        expected = torch.stack([render(index)["rgb"] for index in range(views)]).permute(0, 3, 1, 2)
        assert torch.allclose(torch.cat([conditioning for _, conditioning in calls]), expected, atol=1e-5)
    else:
        assert rendered == [] and all(conditioning is None for _, conditioning in calls)


def test_rendered_relevance_is_normalised_per_view_before_tau(trainer):
    """in2n_pipeline.py ~172-174: `(rendered_error - min) / (max - min)`, then `> edit_mask_threshold`."""
    pipeline = trainer.pipeline
    ball = torch.zeros(16, 24, dtype=torch.bool)
    ball[4:9, 6:12] = True
    rendered = 0.2 + 0.1 * ball.float() + 0.01 * torch.rand(16, 24)  # never reaches τ = 0.5 unnormalised
    normalised = (rendered - rendered.min()) / (rendered.max() - rendered.min())
    tau = pipeline.controls.settings.tau
    assert torch.equal(pipeline.updates.edit_mask(rendered, None, tau), normalised >= pipeline.config.editing.tau)
    assert torch.equal(pipeline.updates.edit_mask(rendered, None, tau), ball)
    pipeline.config.normalize_rendered_relevance = False
    assert not pipeline.updates.edit_mask(rendered, None, tau).any()


@pytest.mark.parametrize("region", ["rendered+target", "rendered"])
def test_the_edit_region_adds_the_views_own_target_where_something_will_stand(scene, tmp_path, region):
    """An instruction that adds something (a hat above the ball) has relevance where the scene has no surface of
    it yet: the rendered relevance cannot mark that, the view's own target (its 2D relevance) does. Planted: the
    target marks a square above the ball, the rendered relevance only the ball."""
    pipeline = setup_trainer(scene, tmp_path, ["--pipeline.edit-region", region]).pipeline
    ball, hat = torch.zeros(32, 32, dtype=torch.bool), torch.zeros(32, 32, dtype=torch.bool)
    ball[12:20, 12:20], hat[4:12, 13:19] = True, True
    pipeline.datamanager.set_relevance_target(3, (ball | hat).float())
    rendered = ball.float() * 0.9 + 0.05
    mask = pipeline.updates.edit_mask(rendered, pipeline.updates.target_of(3), pipeline.controls.settings.tau)
    assert torch.equal(mask, ball | hat if region == "rendered+target" else ball)
    assert pipeline.updates.target_of(4) is None  # a view without a target: the rendered relevance alone


def test_cameras_are_frozen_once_editing_starts(scene, tmp_path):
    trainer = setup_trainer(scene, tmp_path, ["--pipeline.model.camera-optimizer.mode", "SO3xR3",
                                              "--pipeline.edit-start-step", "2", "--pipeline.relevance-warmup-steps", "1"])
    pipeline = trainer.pipeline
    poses = list(pipeline.model.camera_optimizer.parameters())
    assert poses and all(p.requires_grad for p in poses)
    for step in range(4):
        trainer.train_iteration(step)
    assert any(p.abs().sum() > 0 for p in poses)  # the cameras moved during the reconstruction steps
    frozen = [p.detach().clone() for p in poses]
    for step in range(4, 8):
        trainer.train_iteration(step)
    assert pipeline.editor.edit_calls > 0 and not any(p.requires_grad for p in poses)
    assert all(torch.equal(p, q) for p, q in zip(poses, frozen))


def test_progress_lines_when_the_output_is_not_a_terminal(trainer, capsys):
    trainer.pipeline.compute_relevance_targets()
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Relevance maps")]
    total = len(trainer.pipeline.datamanager.names)
    assert lines[0] == f"Relevance maps of the training views: 0/{total} views"
    assert lines[-1].startswith(f"Relevance maps of the training views: {total}/{total} views (") and "views/s)" in lines[-1]


def test_viewer_prompt_and_pause_act_on_the_next_update(trainer):
    pipeline = trainer.pipeline
    editor = pipeline.editor
    pipeline.targets.ready = True  # skip the targets: this test is about the controls
    pipeline.controls.pause.value = True
    for step in range(0, 30):
        pipeline.update_dataset(step)
    assert editor.edit_calls == 0
    pipeline.controls.pause.value = False
    pipeline.controls.prompt.value = "make the cube green"  # typed, not applied: a draft (every keystroke is one)
    period = pipeline.config.edit_rate * pipeline.config.edit_batch
    pipeline.update_dataset(pipeline.schedule.first_edit_step + 3 * period)
    assert editor.edit_calls == 1 and editor.instructions[-1] == pipeline.config.prompt
    pipeline.controls.apply_prompt.cb_hook(pipeline.controls.apply_prompt)  # the "Apply prompt" button
    # A new prompt retargets first: every view's relevance target is the new instruction's, and edits wait for the
    # relevance field to train on them (the warm-up, as at the start); the first edit after it uses the new prompt.
    applied = pipeline.schedule.first_edit_step + 4 * period
    pipeline.update_dataset(applied)
    warmup = pipeline.config.relevance_warmup_steps
    assert editor.edit_calls == 1 and pipeline.schedule.first_edit_step == applied + warmup
    pipeline.update_dataset(applied + warmup)
    assert editor.edit_calls == 2 and editor.instructions[-1] == "make the cube green"


def test_a_new_instruction_trains_a_fresh_relevance_field(trainer):
    """Retargeting (a new prompt, or the first targets of a run) starts the relevance field afresh: its weights are a
    new initialisation's and its optimiser holds no moments of the old field."""
    pipeline = trainer.pipeline
    field = pipeline.model.relevance_field
    optimizer = trainer.optimizers.optimizers["relevance_field"]
    for parameter in field.parameters():  # a field trained for another instruction, with Adam moments
        parameter.grad = torch.ones_like(parameter)
    optimizer.step()
    assert optimizer.state
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(pipeline.config.seed)
        fresh = pipeline.model._new_relevance_field().state_dict()
    draws = torch.random.get_rng_state()
    pipeline.update_dataset(0)  # the run's first step: targets for its prompt
    assert torch.equal(torch.random.get_rng_state(), draws)  # seeded on its own: training's random stream untouched
    assert pipeline.targets.ready and not optimizer.state
    for name, value in field.state_dict().items():
        assert torch.equal(value, fresh[name]), name


def test_reset_restores_the_original_views(trainer):
    """"Reset edits" (the viewer's thread) takes effect at the next step boundary, never in the middle of one."""
    pipeline = trainer.pipeline
    pipeline.targets.ready = True
    pipeline.edit_views([0])
    assert pipeline.chain.store.num_images() == 1
    pipeline.controls.reset.cb_hook(pipeline.controls.reset)
    assert pipeline.chain.store.num_images() == 1  # not yet: training may be inside a step
    pipeline.controls.pause.value = True  # no new edit at that step
    pipeline.get_train_loss_dict(10**6)
    assert torch.equal(pipeline.datamanager.image_batch["image"], pipeline.datamanager.original_images)
    assert pipeline.chain.store.num_images() == 0


def test_reset_works_in_a_run_that_makes_no_edits(scene, tmp_path):
    """wys-reconstruct continued from an edited run trains on its edited views (--load-dir): the viewer's Reset
    puts the originals back there too, at the next step."""
    config = method_config("wys-reconstruct", LIGHT_CPU_ARGS + ["--data", str(scene), "--output-dir", str(tmp_path)]
                           + HOLD_OUT)
    config.set_timestamp()
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    pipeline = trainer.pipeline
    assert pipeline.editor is None and pipeline.updates is None
    views = pipeline.datamanager
    views.set_view(2, 1 - views.original_images[2])  # as a restored edit
    pipeline.controls.request_reset()
    pipeline.get_train_loss_dict(0)
    assert torch.equal(views.image_batch["image"], views.original_images)


def test_a_reset_drops_the_edits_in_flight(scene, tmp_path):
    """--pipeline.overlap-edits: an edit started before "Reset edits" never lands after it; the views and their
    relevance targets are then the sequential run's (whose edit landed, then was reset: its target kept)."""
    runs = {}
    for name, extra in (("overlap", ["--pipeline.overlap-edits", "True"]), ("sequential", [])):
        pipeline = seeded_pipeline(scene, tmp_path / name, [*TINY_RELEVANCE, *extra])
        pipeline.update_dataset(0)  # overlap: the view is edited on the worker, not yet applied
        pipeline.controls.request_reset()
        pipeline.controls.pause.value = True
        pipeline.get_train_loss_dict(1)
        pipeline.updates.finish()
        runs[name] = pipeline
    assert runs["overlap"].updates.done == 0 and runs["sequential"].updates.done == 1
    for pipeline in runs.values():
        assert torch.equal(pipeline.datamanager.image_batch["image"], pipeline.datamanager.original_images)
    torch.testing.assert_close(runs["overlap"].datamanager.image_batch["relevance"],
                               runs["sequential"].datamanager.image_batch["relevance"], rtol=0, atol=1e-6)


def test_restore_puts_back_saved_edits(trainer, scene, tmp_path):
    pipeline = trainer.pipeline
    pipeline.compute_relevance_targets()
    pipeline.edit_views([1])
    pipeline.edit_views([3])
    saved_images, _ = pipeline.chain.store.load()
    fresh = setup_trainer(scene, tmp_path / "fresh").pipeline
    fresh.chain.store = EditStore(tmp_path / "resumed_edits")
    fresh.resume(pipeline.chain.store, None)
    names = fresh.datamanager.names
    for name, image in saved_images.items():
        assert torch.equal(fresh.datamanager.image_batch["image"][names.index(name)], image)
    assert fresh.targets.ready and fresh.chain.store.num_images() == 2
    # the interrupted cycle goes on with the views that have no edit yet
    upcoming = [fresh.schedule.next_view() for _ in range(len(names) - 2)]
    assert not {names.index(n) for n in saved_images} & set(upcoming)


ZONE_TINY = ["--pipeline.editing.model", "tiny", "--pipeline.editing.steps", "2", "--pipeline.editing.zone.fusion-model",
             "none", "--pipeline.editing.zone.segmenter", "ball_segmenter:BallSegmenter", "--pipeline.prompt", "remove the red ball"]


def test_zone_masks_train_the_relevance_field(scene, tmp_path):
    """--pipeline.editing.localizer zone: every relevance target is a ZONE mask, i.e. one of the segments of that view
    chosen by Region-IoU ("remove" segments the original view)."""
    trainer = setup_trainer(scene, tmp_path, ["--pipeline.editor", "relevance", "--pipeline.editing.localizer", "zone", *ZONE_TINY])
    pipeline = trainer.pipeline
    assert type(pipeline.editor.localizer).__name__ == "ZoneLocalizer"
    segmenter = pipeline.editor.localizer.parts.segmenter
    pipeline.compute_relevance_targets()
    batch = pipeline.datamanager.image_batch
    assert len(segmenter.outputs) == len(batch["relevance"])
    for index, (target, segments) in enumerate(zip(batch["relevance"][..., 0], segmenter.outputs)):
        original = pipeline.datamanager.original_images[index].permute(2, 0, 1)[None]
        assert torch.equal(segments[0], red_region(original)[0])  # the segments are the original view's
        assert any(torch.equal(target, s.float()) for s in segments)


def test_zone_editor_edits_inside_the_rendered_relevance(scene, tmp_path):
    trainer = setup_trainer(scene, tmp_path, ["--pipeline.editor", "zone", *ZONE_TINY])
    pipeline = trainer.pipeline
    assert type(pipeline.editor.localizer).__name__ == "ZoneLocalizer"
    batch = pipeline.datamanager.image_batch
    batch["relevance"][...] = 0.0
    batch["relevance_valid"][...] = True
    pipeline.targets.ready = True
    rendered = {}
    render = pipeline.render_train_view

    def keep_render(index):  # the rendered relevance is the ball: a mask whose place is known
        outputs = render(index)
        original = pipeline.datamanager.original_images[index].permute(2, 0, 1)[None]
        outputs["relevance"] = red_region(original)[0, ..., None].float()
        rendered[index] = outputs
        return outputs

    pipeline.render_train_view = keep_render
    pipeline.edit_views([0])
    mask = rendered[0]["relevance"][..., 0] >= pipeline.config.editing.tau
    near = zone.dilate(mask[None], zone.scaled_px(pipeline.config.editing.zone.edge_dilate_px, mask.shape))[0]
    edited = batch["image"][0]
    original = pipeline.datamanager.original_images[0]
    assert mask.any() and not near.all()
    assert torch.equal(edited[~near], original[~near].to(edited))  # outside the dilated mask: the photo itself
    assert (edited[near] != original[near].to(edited)).any()  # and the edit did land near the ball


@pytest.mark.parametrize(
    "args, message",
    [
        (["--pipeline.prompt", " "], "--pipeline.prompt is empty"),
        (["--pipeline.editor", "nowhere:Editor"], "cannot import editor"),
        (["--pipeline.editor", "relevance", "--pipeline.editing.model", "org/not-downloaded"], "is not available"),
        (["--pipeline.lower-bound", "0.9", "--pipeline.upper-bound", "0.5"], "lower-bound"),
        (["--pipeline.editor", "zone", "--pipeline.editing.model", "tiny"], "'vinesmsuic/magicbrush-jul7' is not available"),
        (["--pipeline.editor", "relevance", "--pipeline.editing.localizer", "zone", "--pipeline.editing.model", "tiny",
          "--pipeline.editing.zone.fusion-model", "none", "--pipeline.editing.zone.segmenter", "nowhere:Segmenter"],
         "cannot import segmenter"),
        (["--pipeline.editing.localizer", "zone"], "does not take --pipeline.editing.localizer zone"),  # the oracle has no localizer
    ],
)
def test_bad_settings_stop_with_one_clear_line(scene, tmp_path, args, message):
    with pytest.raises(SystemExit) as info:
        setup_trainer(scene, tmp_path, args)
    text = str(info.value)
    assert text.startswith("error:") and message in text and "\n" not in text


def test_checkpoints_are_written_whole(trainer, monkeypatch):
    import os

    trainer.save_checkpoint(5)
    checkpoint_dir = trainer.checkpoint_dir
    assert [p.name for p in checkpoint_dir.iterdir()] == ["step-000000005.ckpt"]

    def killed_mid_write(state, path):
        with open(path, "wb") as f:
            f.write(b"PK half a checkpoint")
        raise KeyboardInterrupt  # what a kill looks like from inside the write

    monkeypatch.setattr(torch, "save", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        trainer.save_checkpoint(10)
    # nerfstudio parses every name in the folder as a step: only whole checkpoints may be there
    assert os.listdir(checkpoint_dir) == ["step-000000005.ckpt"]
    monkeypatch.undo()
    state = torch.load(checkpoint_dir / "step-000000005.ckpt", map_location="cpu")
    assert state["step"] == 5


def test_a_localizer_by_import_path_trains_the_relevance_field(scene, tmp_path):
    """--pipeline.editing.localizer package.module:Class: a user's localiser (here one that knows the answer, the red
    ball) gives every relevance target, and the relevance editor edits only inside the rendered relevance."""
    trainer = setup_trainer(scene, tmp_path, ["--pipeline.editor", "relevance", "--pipeline.editing.model", "tiny",
                                              "--pipeline.editing.steps", "2",
                                              "--pipeline.editing.localizer", "ball_localizer:BallLocalizer"])
    pipeline = trainer.pipeline
    assert type(pipeline.editor.localizer).__name__ == "BallLocalizer"
    pipeline.compute_relevance_targets()
    batch = pipeline.datamanager.image_batch
    for index, target in enumerate(batch["relevance"][..., 0]):
        original = pipeline.datamanager.original_images[index].permute(2, 0, 1)[None]
        assert torch.equal(target, red_region(original)[0].float())
    assert pipeline.editor.localizer.calls == len(batch["relevance"])


def test_a_step_hook_by_import_path_runs_in_the_dataset_update(scene, tmp_path, monkeypatch):
    """--pipeline.editing.step-hooks package.module:Class: a user's step hook is built for each edit of a training
    view and sees every scheduler step of it."""
    import toy_hook

    monkeypatch.setattr(toy_hook, "CALLS", [])
    trainer = setup_trainer(scene, tmp_path, [*TINY_RELEVANCE, "--pipeline.editing.step-hooks", "toy_hook:CountingHook"])
    pipeline = trainer.pipeline
    pipeline.compute_relevance_targets()
    assert toy_hook.CALLS == []  # relevance maps run no denoising loop
    pipeline.edit_views([1])
    pipeline.edit_views([3])
    assert [index for index, _ in toy_hook.CALLS] == [0, 1, 0, 1]  # 2 steps per edit
    assert len({instance for _, instance in toy_hook.CALLS}) == 2


def seeded_pipeline(scene, output_dir, args):
    """Two of these with the same args are the same NeRF (ns-train seeds torch before building; in-process we do)."""
    torch.manual_seed(0)
    return setup_trainer(scene, output_dir, args).pipeline


TINY_RELEVANCE = ["--pipeline.editor", "relevance", "--pipeline.editing.model", "tiny", "--pipeline.editing.steps", "2",
                  "--pipeline.relevance-warmup-steps", "0", "--pipeline.edit-rate", "1"]


def test_a_batched_update_equals_one_by_one_with_the_same_noise(scene, tmp_path):
    """--pipeline.edit-batch 3: three views rendered and edited in one IP2P call give each view what editing it
    alone gives, with the same noise level and seed (to float tolerance: batched convolutions sum in another
    order)."""
    batched = seeded_pipeline(scene, tmp_path / "batched", [*TINY_RELEVANCE, "--pipeline.edit-batch", "3"])
    single = seeded_pipeline(scene, tmp_path / "single", TINY_RELEVANCE)
    for pipeline in (batched, single):
        pipeline.compute_relevance_targets()
    batched.edit_views([5, 1, 3], strength=0.7)
    for index in (5, 1, 3):
        single.edit_views([index], strength=0.7)
    edited, alone = batched.datamanager.image_batch["image"], single.datamanager.image_batch["image"]
    originals = single.datamanager.original_images
    assert not torch.equal(alone[[5, 1, 3]], originals[[5, 1, 3]])  # the edits did change something
    torch.testing.assert_close(edited, alone, rtol=0, atol=2e-4)


def test_the_schedule_keeps_the_edits_per_iteration(scene, tmp_path):
    """edit-batch K edits K views every K·edit-rate steps: as many edits per step as one view every edit-rate."""
    pipeline = setup_trainer(scene, tmp_path, [*ORACLE, "--pipeline.edit-batch", "4", "--pipeline.edit-rate", "2",
                                               "--pipeline.relevance-warmup-steps", "0"]).pipeline
    for step in range(24):
        pipeline.update_dataset(step)
    assert pipeline.updates.done == 24 // 2 and pipeline.editor.edit_calls == 24 // 8


def test_overlapped_updates_land_one_edit_step_later_with_the_same_result(scene, tmp_path):
    """--pipeline.overlap-edits: the edits rendered at an edit step are computed in a worker thread and go into
    training at the next edit step, equal to the sequential run's."""
    overlapped = seeded_pipeline(scene, tmp_path / "overlap", [*TINY_RELEVANCE, "--pipeline.overlap-edits", "True"])
    sequential = seeded_pipeline(scene, tmp_path / "sequential", TINY_RELEVANCE)
    originals = overlapped.datamanager.original_images
    overlapped.update_dataset(0)
    assert overlapped.updates.done == 0 and torch.equal(overlapped.datamanager.image_batch["image"], originals)
    overlapped.update_dataset(1)
    assert overlapped.updates.done == 1  # step 0's edit landed at step 1
    overlapped.updates.finish()
    for step in (0, 1):
        sequential.update_dataset(step)
    assert overlapped.updates.done == sequential.updates.done == 2
    torch.testing.assert_close(overlapped.datamanager.image_batch["image"], sequential.datamanager.image_batch["image"],
                               rtol=0, atol=1e-6)
    store = EditStore.for_run(overlapped.chain.store.root.parent) if overlapped.chain.store else None
    assert store is None or store.num_images() == 2


def test_a_new_prompt_lets_the_edits_in_flight_land_before_its_targets(scene, tmp_path):
    """--pipeline.overlap-edits with a prompt applied in the viewer while an edit is in flight: the old prompt's
    edit lands first and the new prompt's targets are computed after it, so views and targets equal the sequential
    run's (without that, the in-flight edit's refreshed target, of the old prompt, overwrites the new one's)."""
    runs = {}
    for name, extra in (("overlap", ["--pipeline.overlap-edits", "True"]), ("sequential", [])):
        pipeline = seeded_pipeline(scene, tmp_path / name, [*TINY_RELEVANCE, *extra])
        pipeline.update_dataset(0)
        pipeline.controls.request_prompt("make the red ball green")
        pipeline.update_dataset(1)
        pipeline.updates.finish()
        runs[name] = pipeline.datamanager.image_batch
    assert runs["overlap"] is not runs["sequential"]
    for key in ("image", "relevance"):
        torch.testing.assert_close(runs["overlap"][key], runs["sequential"][key], rtol=0, atol=1e-6)


def test_vimaedit_grounding_trains_the_relevance_field(scene, tmp_path):
    """ns-train wys --pipeline.editing.localizer vimaedit: every relevance target is ViMAEdit's grounding map of
    that view on IP2P's attention (min-max normalised: spans [0, 1]), and edits stay inside the rendered mask."""
    pipeline = seeded_pipeline(scene, tmp_path, [*TINY_RELEVANCE, "--pipeline.editing.localizer", "vimaedit",
                                                 "--pipeline.prompt", "make the red ball blue"])
    assert type(pipeline.editor.localizer).__name__ == "ViMAEditLocalizer"
    pipeline.compute_relevance_targets()
    targets = pipeline.datamanager.image_batch["relevance"][..., 0]
    assert all(t.min() == 0 and t.max() == 1 for t in targets)
    pipeline.edit_views([2], strength=0.6)
    assert pipeline.updates.done == 1


def test_an_editaction_folder_is_the_scene_editors_model(scene, tmp_path):
    """The EditAction trainer writes a plain IP2P folder: `--pipeline.editing.model <folder>` loads it as it is, and
    its fine-tuned weights, not the base model's, make the scene's edits."""
    from nerf_edit.action.train import ActionTrainConfig, train_editaction
    from nerf_edit.models.loading import load_ip2p_pipeline
    from nerf_edit_scripts.make_action_pairs import make_action_pairs

    pairs = make_action_pairs(tmp_path / "pairs", count=8, heldout=0, size=32, seed=1)
    folder = train_editaction(ActionTrainConfig(
        data=pairs, output=tmp_path / "editaction", model="tiny", resolution=32, steps=3, batch_size=4,
        learning_rate=1e-3, negatives="any", checkpoint_every=3, log_with="none", cpu=True))
    model_flag = TINY_RELEVANCE.index("tiny")
    tuned = seeded_pipeline(scene, tmp_path / "tuned", [*TINY_RELEVANCE[:model_flag], str(folder),
                                                         *TINY_RELEVANCE[model_flag + 1:]])
    base = seeded_pipeline(scene, tmp_path / "base", TINY_RELEVANCE)
    trained = load_ip2p_pipeline(str(folder)).unet.state_dict()
    for name, value in tuned.editor.ip2p.unet.state_dict().items():
        assert torch.equal(value, trained[name]), name
    for pipeline in (tuned, base):
        pipeline.compute_relevance_targets()
        pipeline.edit_views([1], strength=0.7)
    edited, base_edited = tuned.datamanager.image_batch["image"][1], base.datamanager.image_batch["image"][1]
    assert not torch.equal(edited, tuned.datamanager.original_images[1])  # an edit happened
    assert (edited - base_edited).abs().max() > 1 / 255  # and the fine-tuned weights made it
