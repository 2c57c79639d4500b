"""Bad input to the EditAction commands: one `error:` line, exit status 2, no traceback (table-driven)."""

import subprocess
import sys
from pathlib import Path

import pytest
from waiting import HANG_GUARD

from nerf_edit_scripts import (
    action_pairs_from_videos,
    evaluate_action,
    make_action_pairs,
    train_action,
    train_recognizer,
)
from nerf_edit_scripts.make_action_pairs import make_action_pairs as build_pairs

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    return build_pairs(tmp_path_factory.mktemp("pairs"), count=4, heldout=2, size=16, seed=0)


def run_cli(module, argv, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["prog", *argv])
    with pytest.raises(SystemExit) as exit_info:
        module.entrypoint()
    return exit_info.value.code, capsys.readouterr().err


CASES = [
    (train_action, ["--data", "{missing}"], "does not exist"),
    (train_action, ["--data", "{empty}"], "has no pairs.jsonl"),
    (train_action, ["--data", "{pairs}", "--lambda-action", "-1"], "--lambda-action must be a finite number >= 0"),
    (train_action, ["--data", "{pairs}", "--lambda-reg", "nan"], "--lambda-reg must be a finite number >= 0"),
    (train_action, ["--data", "{pairs}", "--learning-rate", "0"], "--learning-rate must be > 0"),
    (train_action, ["--data", "{pairs}", "--resolution", "30"], "multiple of 8"),
    (train_action, ["--data", "{pairs}", "--vae-scaling-factor", "0"], "--vae-scaling-factor must be a finite number > 0"),
    (train_action, ["--data", "{pairs}", "--resume", "{empty}"], "is not a checkpoint folder"),
    (train_action, ["--data", "{pairs}", "--model", "{missing}"], "is not a directory"),
    (train_action, ["--data", "{pairs}", "--model", "tiny", "--use-8bit-adam", "--cpu"], "bitsandbytes"),
    (train_action, ["--data", "{pairs}", "--model", "tiny", "--mixed-precision", "fp16", "--cpu"], "fp16 needs a GPU"),
    (train_action, ["--data", "{corrupt}"], "is not a pair record"),
    (evaluate_action, ["--data", "{pairs}", "--models", "tiny", "--negatives", "9", "--resolution", "16"],
     "lower --negatives"),
    (evaluate_action, ["--data", "{pairs}", "--draws", "0"], "--negatives and --draws must be >= 1"),
    (evaluate_action, ["--data", "{missing}"], "does not exist"),
    (evaluate_action, ["--data", "{pairs}", "--models", "tiny", "--edit-metrics", "--clip-model", "{missing}"],
     "--clip-model none"),
    (evaluate_action, ["--data", "{pairs}", "--models", "tiny", "--edit-metrics", "--edit-steps", "0"],
     "--edit-steps must be an integer >= 1"),
    (make_action_pairs, ["--actions-per-layout", "8"], "--actions-per-layout must be in [1, 7]"),
    (make_action_pairs, ["--heldout-actions-per-layout", "0"], "--heldout-actions-per-layout must be in [1, 7]"),
    (action_pairs_from_videos, ["--annotations", "{missing}", "--videos", "{empty}"], "does not exist"),
    (action_pairs_from_videos, ["--annotations", "{pairs}/pairs.jsonl", "--videos", "{missing}"], "videos folder"),
    (make_action_pairs, ["--size", "20"], "multiple of 8"),
    (train_recognizer, ["--data", "{pairs}", "--model", "tiny"], "--clips segments needs --videos"),
    (train_recognizer, ["--data", "{pairs}", "--model", "tiny", "--videos", "{missing}"], "is not a folder"),
    (train_recognizer, ["--data", "{pairs}", "--model", "tiny", "--videos", "{empty}", "--cpu"],
     "has no source segment"),
    (train_recognizer, ["--data", "{pairs}", "--model", "{missing}", "--clips", "pairs"], "is not a directory"),
    (train_recognizer, ["--data", "{pairs}", "--model", "tiny", "--clips", "pairs", "--learning-rate", "0"],
     "--learning-rate must be > 0"),
    (evaluate_action, ["--data", "{pairs}", "--models", "tiny", "--recognizer", "{missing}"], "is not a directory"),
]


@pytest.mark.parametrize("module, argv, message", CASES, ids=[f"{m.__name__.split('.')[-1]}:{' '.join(a)}"
                                                             for m, a, _ in CASES])
def test_bad_input_is_one_line_and_exit_2(module, argv, message, pairs, tmp_path, monkeypatch, capsys):
    if message == "bitsandbytes":  # set-up installs it: play a machine without it (None in sys.modules: ImportError)
        monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    (tmp_path / "empty").mkdir()
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "pairs.jsonl").write_text('{"before": "a.png"}\n')
    names = {"missing": tmp_path / "missing", "empty": tmp_path / "empty", "pairs": pairs,
             "corrupt": tmp_path / "corrupt"}
    argv = [arg.format(**names) for arg in argv] + ["--output", str(tmp_path / "out")]
    code, err = run_cli(module, argv, monkeypatch, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert not (tmp_path / "out" / "model_index.json").exists()


def test_a_corrupt_segment_video_is_one_error_line(tmp_path, monkeypatch, capsys):
    """A pair whose source video is not a decodable video: one line naming the file, exit 2, no checkpoint."""
    import json

    pairs_folder = build_pairs(tmp_path / "pairs", count=4, heldout=2, size=16, seed=0)
    records = [json.loads(line) for line in (pairs_folder / "pairs.jsonl").read_text().splitlines()]
    for record in records:
        record.update(video="broken.mp4", start=0.0, end=0.5)
    (pairs_folder / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    code, err = run_cli(train_recognizer, ["--data", str(pairs_folder), "--videos", str(tmp_path / "videos"),
                                           "--model", "tiny", "--cpu", "--output", str(tmp_path / "out")],
                        monkeypatch, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "broken.mp4" in lines[0] and "cannot be decoded" in lines[0], err
    assert not list((tmp_path / "out").glob("checkpoint*"))


def test_fid_without_inception_weights_is_one_error_line(pairs, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(evaluate_action, "fid_weights_path", lambda: tmp_path / "absent.pth")
    code, err = run_cli(evaluate_action, ["--data", str(pairs), "--models", "tiny", "--fid", "--resolution", "16",
                                          "--negatives", "1", "--output", str(tmp_path / "r.json")], monkeypatch, capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: --fid needs") and "absent.pth" in err


def test_real_process_prints_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "nerf_edit_scripts.train_action", "--data", str(tmp_path / "none")],
                            capture_output=True, text=True, cwd=REPO, timeout=HANG_GUARD)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: pair folder")
