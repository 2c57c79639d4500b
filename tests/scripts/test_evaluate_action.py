"""nerf-edit-eval-action's paper settings: the two FIDs (to the input and to the ground truth) with a small
deterministic feature network in place of Inception (whose weights are not on disk here), and the
`editaction-paper` preset."""

import json
import sys
from functools import partial

import pytest
import torch

from nerf_edit_scripts import evaluate_action
from nerf_edit_scripts.evaluate_action import EvaluateAction, edit_fid, heldout_images
from nerf_edit_scripts.make_action_pairs import make_action_pairs

RESOLUTION = 32


class QuadrantColours(torch.nn.Module):
    """Inception's stand-in: each image's mean colour in each quarter, [N, 12]; no weights, the same every run."""

    num_features = 12  # torchmetrics then needs no trial forward to learn the width

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(images.float(), 2).flatten(1)


def test_fid_is_zero_to_the_same_set_and_positive_to_another():
    generator = torch.Generator().manual_seed(0)
    before = torch.rand(24, 3, 16, 16, generator=generator) * 0.5  # two sets apart in colour: FID ~ 12 · 0.5²
    after = 0.5 + torch.rand(24, 3, 16, 16, generator=generator) * 0.5
    fid = partial(edit_fid, feature=QuadrantColours())
    assert abs(fid(before, before)) < 1e-6 and abs(fid(after, after)) < 1e-6
    # "Edits" that are the before images: at the input, far from the ground truth; after images: the reverse.
    assert fid(before, after) == pytest.approx(fid(after, before), rel=1e-6)
    assert fid(before, after) > 2.0


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return make_action_pairs(tmp_path_factory.mktemp("pairs"), count=2, heldout=16, size=RESOLUTION, seed=1)


def test_eval_action_reports_fid_to_the_input_and_to_the_ground_truth(pairs, tmp_path, monkeypatch, capsys):
    """--fid: fid_to_before compares the edits with the before images and fid_to_after with the after images. One
    model's "edits" are the before images, the other's the after images, so each has one FID at ~0."""
    before, after = heldout_images(evaluate_action.read_pairs(pairs, "heldout"), RESOLUTION)
    monkeypatch.setattr(evaluate_action, "check_fid_available", lambda: None)
    monkeypatch.setattr(evaluate_action, "edit_fid", partial(edit_fid, feature=QuadrantColours()))
    monkeypatch.setattr(evaluate_action, "edit_heldout",
                        lambda model, *args: (before if model == "tiny" else after).clone())
    results = EvaluateAction(data=pairs, models=["tiny", "tiny:1"], negatives=1, draws=1, resolution=RESOLUTION,
                             fid=True, output=tmp_path / "acc.json", edits_dir=tmp_path / "edits").main()
    assert json.loads((tmp_path / "acc.json").read_text()) == results
    assert abs(results["tiny"]["fid_to_before"]) < 1e-6 < results["tiny"]["fid_to_after"]
    assert abs(results["tiny:1"]["fid_to_after"]) < 1e-6 < results["tiny:1"]["fid_to_before"]
    assert "fid" not in results["tiny"]
    header = [line for line in capsys.readouterr().out.splitlines() if line.startswith("model")][-1]
    assert header.split() == ["model", "action_accuracy", "fid_to_after", "fid_to_before"]


def parsed(monkeypatch, *argv) -> EvaluateAction:
    """What `nerf-edit-eval-action ARGV` parses to (its checks and run are replaced: no model is looked for or
    loads; the checks have their own tests)."""
    seen = []
    monkeypatch.setattr(sys, "argv", ["nerf-edit-eval-action", *argv])
    monkeypatch.setattr(EvaluateAction, "validate", lambda self: None)
    monkeypatch.setattr(EvaluateAction, "main", lambda self: seen.append(self))
    evaluate_action.entrypoint()
    return seen[0]


def test_the_paper_preset_sets_its_evaluation_and_flags_override_it(monkeypatch):
    plain = parsed(monkeypatch, "--data", "pairs")
    assert (plain.resolution, plain.edits_resolution, plain.edit_metrics, plain.fid) == (256, 256, False, False)
    paper = parsed(monkeypatch, "--preset", "editaction-paper", "--data", "pairs", "--models", "a", "b")
    # edits at 512², the model's own accuracy read at its training size
    assert (paper.resolution, paper.edits_resolution, paper.edit_steps) == (256, 512, 100)
    assert (paper.edit_metrics, paper.fid) == (True, True)
    assert (paper.edit_guidance_scale, paper.edit_image_guidance_scale) == (7.5, 1.0)
    assert str(paper.data) == "pairs" and paper.models == ["a", "b"]
    mine = parsed(monkeypatch, "--data", "pairs", "--edit-resolution", "256", "--no-fid", "--preset=editaction-paper",
                  "--edit-image-guidance-scale", "1.5")
    assert (mine.edits_resolution, mine.fid, mine.edit_image_guidance_scale) == (256, False, 1.5)  # flags win
    assert (mine.edit_steps, mine.edit_metrics, mine.edit_guidance_scale) == (100, True, 7.5)


def test_the_paper_preset_help_shows_its_defaults(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["nerf-edit-eval-action", "--preset", "editaction-paper", "--help"])
    with pytest.raises(SystemExit) as info:
        evaluate_action.entrypoint()
    out = " ".join(capsys.readouterr().out.split())
    assert info.value.code == 0 and "editaction-paper" in out
    assert "--edit-resolution {None}|INT" in out and "(default: 512)" in out


def test_eval_action_scores_edits_with_the_recognizer_by_action_label(pairs, tmp_path, monkeypatch):
    """--recognizer: each model's row reads its own edits (input ×4, edit ×4) against the pairs' *action* labels,
    and the ground-truth row reads the true after images. The labels differ from the instructions here, so reading
    the instruction would find no known label; the model whose "edits" are the after images scores exactly the
    ground-truth row, the one whose edits are the inputs scores what the recogniser reads from no change."""
    import shutil

    from nerf_edit.action.recognizer import (
        ActionRecognizer,
        RecognizerTrainConfig,
        recognizer_accuracy,
        train_recognizer,
    )

    data = tmp_path / "labelled"
    shutil.copytree(pairs, data)
    records = [json.loads(line) for line in (data / "pairs.jsonl").read_text().splitlines()]
    for record in records:
        record["action"] = "ACTION " + record["instruction"].upper()
    (data / "pairs.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    train_recognizer(RecognizerTrainConfig(data=data, output=tmp_path / "recognizer", model="tiny", clips="pairs",
                                           steps=3, batch_size=4, cpu=True, log_with="none"))
    heldout = evaluate_action.read_pairs(data, "heldout")
    before, after = heldout_images(heldout, RESOLUTION)
    monkeypatch.setattr(evaluate_action, "edit_heldout",
                        lambda model, *args: (before if model == "tiny" else after).clone())
    results = EvaluateAction(data=data, models=["tiny", "tiny:1"], negatives=1, draws=1, resolution=RESOLUTION,
                             recognizer=str(tmp_path / "recognizer"), output=tmp_path / "acc.json",
                             edits_dir=tmp_path / "edits").main()
    truth = results[evaluate_action.GROUND_TRUTH]
    labels = [pair.label for pair in heldout]
    assert all(label.startswith("ACTION ") for label in labels)
    trained = {pair.label for pair in evaluate_action.read_pairs(data, "train")}
    unseen = sum(label not in trained for label in labels)  # held-out actions the training split lacks
    assert unseen < len(labels)  # reading instructions instead of actions would make every label unseen
    assert truth["recognizer_unseen_labels"] == results["tiny"]["recognizer_unseen_labels"] == unseen
    assert results["tiny:1"]["recognizer_accuracy"] == truth["recognizer_accuracy"]
    recognizer = ActionRecognizer.load(str(tmp_path / "recognizer"))
    assert results["tiny"]["recognizer_accuracy"] == recognizer_accuracy(recognizer, before, before, labels).accuracy
    assert truth["recognizer_accuracy"] == recognizer_accuracy(recognizer, before, after, labels).accuracy


EDIT_RESOLUTION = 48  # the pairs' own size: edited without upsampling, the accuracy read at RESOLUTION


@pytest.fixture(scope="module")
def evaluation_size_pairs(tmp_path_factory):
    return make_action_pairs(tmp_path_factory.mktemp("pairs48"), count=8, heldout=12, size=EDIT_RESOLUTION, seed=2)


def test_edits_at_the_edit_resolution_through_the_real_editor_are_scored_as_counted_by_hand(
        evaluation_size_pairs, tmp_path, capsys):
    """Pairs cut at the evaluation size (48²) are edited there by the real (tiny) global editor while the
    Diffusion-Classifier accuracy reads them at --resolution 32. The recogniser's two rows equal counts made here
    from the files: each written edit (and each true after image, for the ground-truth row) after its before image
    (4 + 4 frames) through the recogniser's network, its top class against the pair's label. The recogniser has
    seen every pair, so it reads the after images well and the random model's edits poorly: the rows differ."""
    import shutil

    import numpy as np
    from PIL import Image

    from nerf_edit.action.recognizer import ActionRecognizer, RecognizerTrainConfig, train_recognizer

    data = evaluation_size_pairs
    seen = tmp_path / "all_pairs"  # every pair in the training split: a recogniser that knows these scenes
    shutil.copytree(data, seen)
    records = [json.loads(line) for line in (seen / "pairs.jsonl").read_text().splitlines()]
    (seen / "pairs.jsonl").write_text("".join(json.dumps({**record, "split": "train"}) + "\n" for record in records))
    train_recognizer(RecognizerTrainConfig(data=seen, output=tmp_path / "recognizer", model="tiny", clips="pairs",
                                           steps=60, batch_size=8, learning_rate=1e-3, cpu=True, log_with="none"))
    results = EvaluateAction(data=data, models=["tiny"], negatives=1, draws=1, resolution=RESOLUTION,
                             edit_resolution=EDIT_RESOLUTION, edit_metrics=True, clip_model="none", edit_steps=2,
                             recognizer=str(tmp_path / "recognizer"), output=tmp_path / "acc.json",
                             edits_dir=tmp_path / "edits").main()
    assert "held-out images read at 48²" in capsys.readouterr().out
    row, truth = results["tiny"], results[evaluate_action.GROUND_TRUTH]
    assert (row["pair_image_size"], row["edit_resolution"]) == (48, 48)
    heldout = evaluate_action.read_pairs(data, "heldout")
    edits = sorted((tmp_path / "edits").glob("*/*.png"))
    assert len(edits) == len(heldout)
    recognizer = ActionRecognizer.load(str(tmp_path / "recognizer"))

    def pixels(path):
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))

    def reads_as(before, shown):
        with torch.no_grad():
            frames = recognizer.processor([[before] * 4 + [shown] * 4], return_tensors="pt").pixel_values
            return recognizer.model.config.id2label[int(recognizer.model(pixel_values=frames).logits[0].argmax())]

    edited_right = after_right = 0
    for pair, edit in zip(heldout, edits):
        before, edited, after = pixels(pair.before), pixels(edit), pixels(pair.after)
        assert edited.shape == before.shape == (48, 48, 3)  # edited at the pairs' size: nothing resized
        label = pair.action or pair.instruction
        edited_right += reads_as(before, edited) == label
        after_right += reads_as(before, after) == label
    print(f"recogniser, by hand: edits {edited_right}, after images {after_right} of {len(heldout)}; evaluation: "
          f"{row['recognizer_correct']}, {truth['recognizer_correct']}")
    assert (row["recognizer_correct"], truth["recognizer_correct"]) == (edited_right, after_right)
    assert row["recognizer_accuracy"] == pytest.approx(edited_right / len(heldout))
    assert after_right > edited_right  # the two readings can be told apart


def test_edits_above_the_pairs_size_are_one_error_line(evaluation_size_pairs, tmp_path):
    """Upsampled pairs would fake the detail the edit metrics and FIDs measure: one line naming the fix instead."""
    from nerf_edit.errors import UsageError

    with pytest.raises(UsageError) as info:
        EvaluateAction(data=evaluation_size_pairs, models=["tiny"], resolution=RESOLUTION, edit_resolution=64,
                       edit_metrics=True, clip_model="none", output=tmp_path / "acc.json").main()
    message = str(info.value)
    assert "\n" not in message and "--edit-resolution 64" in message and "(48²)" in message and "--size 64" in message


def test_video_pairs_are_cut_at_the_papers_evaluation_size():
    """nerf-edit-action-pairs-from-videos writes frames at 512² by default, the size the editaction-paper preset
    edits at (training and the accuracy downsample to --resolution)."""
    import inspect

    from nerf_edit.action.videos import build_pairs_from_videos
    from nerf_edit_scripts.action_pairs_from_videos import ActionPairsFromVideos

    preset = evaluate_action.PRESETS["editaction-paper"][1]()
    assert ActionPairsFromVideos.__dataclass_fields__["size"].default == preset.edit_resolution == 512
    assert inspect.signature(build_pairs_from_videos).parameters["size"].default == 512
