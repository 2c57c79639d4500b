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
    """What `nerf-edit-eval-action ARGV` parses to (its run is replaced: no model loads)."""
    seen = []
    monkeypatch.setattr(sys, "argv", ["nerf-edit-eval-action", *argv])
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
