"""EditAction's action recogniser (the paper's accuracy): a tiny TimeSformer fine-tuned on generated video segments
of a square moving left/right/up/down, then reading held-out pairs from the before image ×4 and the after image ×4.

The clips are decoded from real (PyAV-written) videos through nerf-edit-action-pairs-from-videos' pair folder, so
the segment times, the frame choice and the recogniser's processor are the ones a user's data goes through."""

import json
import shutil

import av
import numpy as np
import pytest
import torch

from nerf_edit.action.data import load_pair_image, read_pairs
from nerf_edit.action.recognizer import (
    ActionRecognizer,
    RecognizerTrainConfig,
    pair_clip,
    recognizer_accuracy,
    segment_clip,
    train_recognizer,
)
from nerf_edit.action.videos import build_pairs_from_videos
from nerf_edit.models.tiny import build_tiny_timesformer

FPS = 10
SIZE = 32
MOVES = {"move the square left": (-1, 0), "move the square right": (1, 0), "move the square up": (0, -1),
         "move the square down": (0, 1)}


def write_video(path, frames: list) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        stream.options = {"qscale": "1"}
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def moving_square(dx: int, dy: int, rng, frames: int = 10, rest: int = 0) -> list:
    """A bright 8-pixel square on a dark background moving one pixel per frame by (dx, dy) for `frames` frames,
    still for `rest` frames before and after (an action segment from before it starts to after it ends)."""
    background, colour = rng.integers(0, 60, 3), rng.integers(180, 256, 3)
    x0, y0 = rng.integers(8, 16, 2)
    images = []
    for frame in range(frames + 2 * rest):
        i = min(max(frame - rest, 0), frames - 1)
        image = np.empty((SIZE, SIZE, 3), np.uint8)
        image[:] = background
        image[y0 + dy * i: y0 + dy * i + 8, x0 + dx * i: x0 + dx * i + 8] = colour
        images.append(image)
    return images


@pytest.fixture(scope="module")
def action_videos(tmp_path_factory):
    """320 segments (80 per action) written as videos, cut into pairs (a quarter held out): 18 frames at 10 fps, the
    square still for 4 frames, moving for 10, still for 4."""
    root = tmp_path_factory.mktemp("recognizer")
    (root / "videos").mkdir()
    rng = np.random.default_rng(3)
    rows = ["video,start,end,instruction"]
    for number in range(320):
        instruction, (dx, dy) = list(MOVES.items())[number % 4]
        write_video(root / "videos" / f"{number:03d}.mp4", moving_square(dx, dy, rng, rest=4))
        rows.append(f"{number:03d}.mp4,0,1.7,{instruction}")
    (root / "actions.csv").write_text("\n".join(rows) + "\n")
    build_pairs_from_videos(root / "actions.csv", root / "videos", root / "pairs", size=SIZE, heldout_fraction=0.25)
    return root


def test_segment_clip_spreads_frames_from_the_first_to_the_last(tmp_path):
    """8 frames of [0.5 s, 2.0 s] at 10 fps: targets 5 + 15k/7 frames, each the nearest decoded frame."""
    frames = [np.full((16, 16, 3), (10 * i, 250 - 10 * i, 128), np.uint8) for i in range(25)]
    write_video(tmp_path / "v.mp4", frames)
    clip = segment_clip(tmp_path / "v.mp4", 0.5, 2.0, 8)
    expected = [round(5 + 15 * k / 7) for k in range(8)]  # 5, 7, 9, 11, 14, 16, 18, 20
    means = clip.reshape(8, -1, 3).mean(1)
    chosen = [int(np.abs(np.array([f[0, 0] for f in frames], float) - m).sum(1).argmin()) for m in means]
    assert chosen == expected


def test_pair_clip_is_the_input_four_times_then_the_edit_four_times():
    before, after = np.zeros((4, 4, 3), np.uint8), np.full((4, 4, 3), 255, np.uint8)
    clip = pair_clip(before, after, 8)
    assert clip.shape == (8, 4, 4, 3)
    assert (clip[:4] == 0).all() and (clip[4:] == 255).all()


def heldout_tensors(pairs_folder):
    heldout = read_pairs(pairs_folder, "heldout")
    before = torch.stack([(load_pair_image(p.before, SIZE) + 1) / 2 for p in heldout])
    after = torch.stack([(load_pair_image(p.after, SIZE) + 1) / 2 for p in heldout])
    return before, after, [p.label for p in heldout]


def test_recogniser_trained_on_segments_reads_the_action_from_input_and_edit(action_videos, tmp_path):
    """Trained on the segments alone (8 frames spread over each source segment: the default and the paper's
    setting, never the 4 + 4 clip it is scored on), the recogniser names the held-out pairs' actions from the true
    after images far above chance (0.25), and an "edit" that changed nothing (the before image again) does not read
    as the action: the accuracy measures whether the edit shows it."""
    output = tmp_path / "recognizer"
    settings = RecognizerTrainConfig(data=action_videos / "pairs", videos=action_videos / "videos", output=output,
                                     model="tiny", steps=600, batch_size=16, learning_rate=1e-3, cpu=True,
                                     log_with="none", checkpoint_every=600)
    assert settings.clips == "segments"
    train_recognizer(settings)
    clips = [np.load(path) for path in sorted((output / "clips").glob("*.npy"))]  # what it trained on
    assert len(clips) == len(read_pairs(action_videos / "pairs", "train"))  # one per training pair, and no 4 + 4:
    assert all(len({frame.tobytes() for frame in clip}) >= 5 for clip in clips)
    recognizer = ActionRecognizer.load(str(output))  # what nerf-edit-eval-action --recognizer loads
    assert sorted(recognizer.labels) == sorted(MOVES)
    before, after, labels = heldout_tensors(action_videos / "pairs")
    assert len(labels) >= 60
    shows_action = recognizer_accuracy(recognizer, before, after, labels).accuracy
    no_change = recognizer_accuracy(recognizer, before, before, labels).accuracy
    print(f"held-out recogniser accuracy: after images {shows_action:.3f}, unchanged {no_change:.3f}")
    assert shows_action >= 0.6, shows_action
    assert shows_action >= no_change + 0.3, (shows_action, no_change)


def test_resumed_training_ends_where_an_uninterrupted_run_does(action_videos, tmp_path):
    settings = dict(data=action_videos / "pairs", model="tiny", clips="pairs", steps=4, batch_size=4,
                    learning_rate=1e-3, cpu=True, log_with="none", checkpoint_every=2)
    train_recognizer(RecognizerTrainConfig(output=tmp_path / "straight", **settings))
    train_recognizer(RecognizerTrainConfig(output=tmp_path / "resumed", stop_after=2, **settings))
    assert not (tmp_path / "resumed" / "config.json").exists()  # stopped early: no model yet, a checkpoint
    train_recognizer(RecognizerTrainConfig(output=tmp_path / "resumed", resume="latest", **settings))
    straight = ActionRecognizer.load(str(tmp_path / "straight")).model.state_dict()
    resumed = ActionRecognizer.load(str(tmp_path / "resumed")).model.state_dict()
    initial = build_tiny_timesformer(sorted(MOVES))[0].state_dict()  # what training started from (seed 0)
    assert straight.keys() == resumed.keys() == initial.keys()
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], rtol=1e-5, atol=1e-6, msg=name)
    assert not torch.allclose(straight["classifier.weight"], initial["classifier.weight"])  # it did train


def test_resuming_on_changed_actions_is_refused(action_videos, tmp_path):
    """A checkpoint's class indices belong to its actions: resuming on data with other actions stops with one line
    instead of silently training a shuffled head."""
    from nerf_edit.errors import ActionDataError

    settings = dict(model="tiny", clips="pairs", steps=4, batch_size=4, cpu=True, log_with="none",
                    output=tmp_path / "run")
    train_recognizer(RecognizerTrainConfig(data=action_videos / "pairs", stop_after=2, **settings))
    changed = tmp_path / "changed"
    shutil.copytree(action_videos / "pairs", changed)
    records = [json.loads(line) for line in (changed / "pairs.jsonl").read_text().splitlines()]
    for record in records:
        record["action"] = record["instruction"].replace("square", "box")
    (changed / "pairs.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    with pytest.raises(ActionDataError, match="not those of the checkpoints"):
        train_recognizer(RecognizerTrainConfig(data=changed, resume="latest", **settings))
