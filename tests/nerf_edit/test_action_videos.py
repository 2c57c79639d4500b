"""Pairs from annotated videos: tiny videos written with PyAV, EPIC-Kitchens-100, plain and MPII-Cooking CSVs, bad
videos skipped."""

import json
from fractions import Fraction

import av
import numpy as np
import pytest

from nerf_edit.action.data import ActionDataError, read_pairs
from nerf_edit.action.videos import build_pairs_from_videos, numbered_frames, parse_time, segment_frames

FPS = 10


def frame_color(index: int) -> np.ndarray:
    """A distinct flat colour per frame: frame i is (20 i mod 256, 255 - 20 i mod 256, 128)."""
    return np.array([(20 * index) % 256, 255 - (20 * index) % 256, 128], dtype=np.uint8)


def write_video(path, frames: int = 30, size=(48, 64), rate=FPS):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=rate)
        stream.width, stream.height, stream.pix_fmt = size[1], size[0], "yuv420p"
        stream.options = {"qscale": "1"}
        for i in range(frames):
            image = np.broadcast_to(frame_color(i), (*size, 3)).copy()
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def mean_color(path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"), dtype=float).reshape(-1, 3).mean(0)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    (root / "P01" / "videos").mkdir(parents=True)
    write_video(root / "P01" / "videos" / "P01_01.MP4")  # EPIC layout
    write_video(root / "clip.mp4")
    write_video(root / "s08-d02-cam-002.avi")  # MPII-Cooking's names and container
    (root / "P02_09.MP4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 50)  # corrupt
    return root


def test_epic_kitchens_csv_first_and_last_frames(videos, tmp_path):
    csv = tmp_path / "EPIC_100_train.csv"
    csv.write_text(
        "narration_id,participant_id,video_id,narration_timestamp,start_timestamp,stop_timestamp,start_frame,"
        "stop_frame,narration,verb,verb_class,noun,noun_class,all_nouns,all_noun_classes\n"
        "P01_01_0,P01,P01_01,00:00:00.50,00:00:00.50,00:00:01.20,5,12,open drawer,open,3,drawer,8,['drawer'],[8]\n"
        "P01_01_1,P01,P01_01,00:00:01.00,00:00:01.00,00:00:02.50,10,25,close drawer,close,4,drawer,8,['drawer'],[8]\n"
        "P02_09_0,P02,P02_09,00:00:00.00,00:00:00.00,00:00:01.00,0,10,take cup,take,0,cup,1,['cup'],[1]\n"
        "P03_01_0,P03,P03_01,00:00:00.00,00:00:00.00,00:00:01.00,0,10,wash pan,wash,2,pan,3,['pan'],[3]\n"
        "P01_01_2,P01,P01_01,00:00:02.00,00:00:02.00,00:00:01.00,20,10,backwards,x,0,y,0,[],[]\n"
    )
    report = build_pairs_from_videos(csv, videos, tmp_path / "pairs", size=32, heldout_fraction=0.0)
    assert report.written == 2
    assert dict(report.skipped) == {"unreadable segment(s)": 1, "missing video(s)": 1, "malformed row(s)": 1}
    pairs = read_pairs(tmp_path / "pairs")
    assert [p.instruction for p in pairs] == ["open drawer", "close drawer"]
    # Frame i shows frame_color(i); segment [0.5, 1.2] s at 10 fps: first frame 5, last frame 12.
    for pair, (first, last) in zip(pairs, [(5, 12), (10, 25)]):
        assert np.abs(mean_color(pair.before) - frame_color(first)).max() < 12
        assert np.abs(mean_color(pair.after) - frame_color(last)).max() < 12


def test_plain_csv_with_seconds_and_heldout_split(videos, tmp_path):
    csv = tmp_path / "actions.csv"
    csv.write_text("video,start,end,instruction\n" + "".join(
        f"clip.mp4,{s},{s + 0.8},move the cup number {s}\n" for s in (0.0, 0.5, 1.0, 1.5)) + "nowhere.mp4,0,1,x\n")
    report = build_pairs_from_videos(csv, videos, tmp_path / "pairs", size=24, heldout_fraction=0.5, seed=3)
    assert report.written == 4 and dict(report.skipped) == {"missing video(s)": 1}
    records = [json.loads(line) for line in (tmp_path / "pairs" / "pairs.jsonl").read_text().splitlines()]
    assert {r["split"] for r in records} == {"train", "heldout"}
    assert np.abs(mean_color(tmp_path / "pairs" / records[2]["before"]) - frame_color(10)).max() < 12


def test_bad_annotation_files(videos, tmp_path):
    with pytest.raises(ActionDataError, match="does not exist"):
        build_pairs_from_videos(tmp_path / "none.csv", videos, tmp_path / "out")
    (tmp_path / "wrong.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ActionDataError, match="need EPIC-Kitchens-100"):
        build_pairs_from_videos(tmp_path / "wrong.csv", videos, tmp_path / "out")
    assert parse_time("00:01:02.50") == 62.5 and parse_time("3.25") == 3.25
    with pytest.raises(ValueError):
        parse_time("1:2:3:4")


# MPII-Cooking's detectionGroundtruth-1-0.csv: subject, file, start frame, end frame (from 1, included), category id,
# name. The file's first row here is a background row, so the header-less form is told apart by its numbers alone.
MPII_ROWS = (
    "8,s08-d02-cam-002,1,4,35,Background activity\n"
    "8,s08-d02-cam-002,5,13,12,take out from drawer\n"
    "8,s08-d02-cam-002,x,9,3,cut apart\n"
    "8,s08-d02-cam-002,20,30,17,  open/close   fridge \n"
    "8,s08-d02-cam-002,9,5,3,cut apart\n"
    "9,s09-d01-cam-002,1,10,40,peel\n"
)


@pytest.mark.parametrize("header", ["", "Subject,File,Start,End,Category,Name\n"], ids=["no-header", "header"])
def test_mpii_cooking_csv_picks_exactly_the_start_and_end_frames(videos, tmp_path, header):
    csv = tmp_path / "detectionGroundtruth-1-0.csv"
    csv.write_text(header + MPII_ROWS)
    report = build_pairs_from_videos(csv, videos, tmp_path / "pairs", size=32, heldout_fraction=0.0)
    assert report.written == 2
    assert dict(report.skipped) == {"background row(s)": 1, "malformed row(s)": 2, "missing video(s)": 1}
    records = [json.loads(line) for line in (tmp_path / "pairs" / "pairs.jsonl").read_text().splitlines()]
    assert [r["instruction"] for r in records] == ["take out from drawer", "open/close fridge"]
    # Frame n counted from 1 is the video's frame n - 1 counted from 0, i.e. frame_color(n - 1); its neighbours are
    # 20 levels away in two channels, so a frame off by one fails. 30 is the video's last frame.
    for record, (start, end) in zip(records, [(5, 13), (20, 30)]):
        assert (record["video"], record["start_frame"], record["end_frame"]) == ("s08-d02-cam-002", start, end)
        assert record["start"] == pytest.approx((start - 1) / FPS) and record["end"] == pytest.approx((end - 1) / FPS)
        assert np.abs(mean_color(tmp_path / "pairs" / record["before"]) - frame_color(start - 1)).max() < 12
        assert np.abs(mean_color(tmp_path / "pairs" / record["after"]) - frame_color(end - 1)).max() < 12


def test_frame_numbers_are_exact_where_the_time_base_cannot_hold_the_frame_times(tmp_path):
    """29.97 fps in Matroska's millisecond time base: frame 2 is stamped 33 ms, before its true 33.37 ms, so a
    choice by time (the first frame at or after (n - 1) / fps) would take frame 3; the choice by index does not."""
    path = tmp_path / "ntsc.mkv"
    write_video(path, frames=12, rate=Fraction(30000, 1001))
    for start in range(1, 12):
        first, last, first_time, last_time = numbered_frames(path, start, start + 1)
        assert np.abs(first.reshape(-1, 3).mean(0) - frame_color(start - 1)).max() < 12, start
        assert np.abs(last.reshape(-1, 3).mean(0) - frame_color(start)).max() < 12, start
        assert abs(first_time - (start - 1) * 1001 / 30000) < 1e-3
    by_time, _ = segment_frames(path, 1001 / 30000, 3 * 1001 / 30000)
    assert np.abs(by_time.reshape(-1, 3).mean(0) - frame_color(2)).max() < 12  # what this test guards against
