"""Before/after pairs from action-recognition video annotations: the first and the last frame of each labelled
segment (the paper's LC/HC datasets, Sec. 3.2), decoded with PyAV, centre-cropped to a square, resized, and listed
in pairs.jsonl (nerf_edit/action/data.py).

Two annotation formats:
* EPIC-Kitchens-100 (EPIC_100_train.csv, ...): columns video_id, start_timestamp, stop_timestamp, narration;
  timestamps HH:MM:SS.ff; the video of P01_01 is found as <videos>/P01_01.MP4 or <videos>/P01/videos/P01_01.MP4
  (any of .MP4/.mp4/.mov/.mkv/.webm/.avi).
* plain: columns video, start, end, instruction; `video` is a path relative to the videos folder; start/end in
  seconds or HH:MM:SS(.ff).

A segment whose video is missing or cannot be decoded, or whose row is malformed, is skipped and counted; the build
never stops on one.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from nerf_edit.action.data import ActionDataError, write_index
from nerf_edit.core.io import atomic_save_image
from nerf_edit.errors import UsageError

VIDEO_SUFFIXES = (".MP4", ".mp4", ".mov", ".MOV", ".mkv", ".webm", ".avi")
EPIC_COLUMNS = ("video_id", "start_timestamp", "stop_timestamp", "narration")
PLAIN_COLUMNS = ("video", "start", "end", "instruction")


@dataclass
class Segment:
    video: str
    start: float
    end: float
    instruction: str


@dataclass
class BuildReport:
    written: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> count

    def line(self) -> str:
        skipped = ", ".join(f"{count} {reason}" for reason, count in sorted(self.skipped.items())) or "none"
        return f"wrote {self.written} pair(s); skipped: {skipped}"


def parse_time(text: str) -> float:
    """Seconds from `12.5` or `HH:MM:SS(.ff)` / `MM:SS`; ValueError otherwise."""
    text = text.strip()
    parts = text.split(":")
    if len(parts) > 3 or not text:
        raise UsageError(f"bad timestamp {text!r}")
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60 + float(part)
    if not np.isfinite(seconds) or seconds < 0:
        raise UsageError(f"bad timestamp {text!r}")
    return seconds


def read_annotations(csv_path: Path) -> tuple[list[Optional[Segment]], str]:
    """Segments of an EPIC-Kitchens-100 or plain CSV (None for a malformed row) and the format's name."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise ActionDataError(f"annotation file {str(csv_path)!r} does not exist")
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = set(reader.fieldnames or [])
        if set(EPIC_COLUMNS) <= columns:
            names, kind = EPIC_COLUMNS, "epic-kitchens-100"
        elif set(PLAIN_COLUMNS) <= columns:
            names, kind = PLAIN_COLUMNS, "plain"
        else:
            raise ActionDataError(f"{str(csv_path)!r} has columns {sorted(columns)}: need EPIC-Kitchens-100's "
                                  f"{', '.join(EPIC_COLUMNS)} or {', '.join(PLAIN_COLUMNS)}")
        segments = []
        for row in reader:
            try:
                segment = Segment(row[names[0]].strip(), parse_time(row[names[1]]), parse_time(row[names[2]]),
                                  " ".join(row[names[3]].split()))
                segments.append(segment if segment.video and segment.instruction and segment.end > segment.start
                                else None)
            except (ValueError, AttributeError, TypeError):
                segments.append(None)
    return segments, kind


def find_video(videos: Path, name: str) -> Optional[Path]:
    """The video file of an annotation row: a path (with or without suffix) under `videos`, or EPIC's
    <participant>/videos/<video_id>.<suffix> layout."""
    direct = videos / name
    if direct.is_file():
        return direct
    participant = name.split("_")[0]
    for folder in (videos, videos / participant / "videos", videos / participant):
        for suffix in VIDEO_SUFFIXES:
            candidate = folder / f"{name}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def segment_frames(path: Path, start: float, end: float) -> tuple[np.ndarray, np.ndarray]:
    """(first frame at or after `start`, last frame at or before `end`) as RGB uint8 [H, W, 3], decoded with PyAV
    (a seek to the keyframe before each time, then decoding forward). Raises on undecodable files."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]

        def decode_from(seconds: float):
            container.seek(max(0, int(seconds / stream.time_base)), stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                if frame.time is not None:
                    yield frame

        first = next((frame for frame in decode_from(start) if frame.time >= start - 1e-6), None)
        if first is None:
            raise UsageError(f"no frame after {start:.3f} s")
        first_rgb = first.to_ndarray(format="rgb24")
        last = None
        for frame in decode_from(max(0.0, end - 2.0) if end - start > 2.0 else start):
            if frame.time > end + 1e-6:
                break
            if frame.time >= start - 1e-6:
                last = frame
        if last is None:
            raise UsageError(f"no frame in [{start:.3f}, {end:.3f}] s")
        return first_rgb, last.to_ndarray(format="rgb24")


def square_resize(frame: np.ndarray, size: int) -> np.ndarray:
    """Centre crop to a square, resize to size² (bicubic)."""
    height, width = frame.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    crop = Image.fromarray(frame[top : top + side, left : left + side])
    return np.asarray(crop.resize((size, size), Image.BICUBIC))


def build_pairs_from_videos(
    annotations: Path, videos: Path, output: Path, size: int = 256, heldout_fraction: float = 0.05, seed: int = 0,
    limit: Optional[int] = None, progress=None,
) -> BuildReport:
    """Write pairs.jsonl + images/ into `output` from an annotation CSV; returns the counts (never raises on a
    bad video or row: those are skipped and counted)."""
    if size < 16 or size % 8:
        raise UsageError(f"--size must be >= 16 and a multiple of 8, got {size}")
    if not 0 <= heldout_fraction < 1:
        raise UsageError(f"--heldout-fraction must be in [0, 1), got {heldout_fraction}")
    videos, output = Path(videos), Path(output)
    if not videos.is_dir():
        raise ActionDataError(f"videos folder {str(videos)!r} does not exist")
    segments, _ = read_annotations(annotations)
    if limit is not None:
        segments = segments[:limit]
    rng = np.random.default_rng(seed)
    report, records = BuildReport(), []
    for number, segment in enumerate(segments):
        if progress is not None:
            progress(number, len(segments), report)
        if segment is None:
            report.skipped["malformed row(s)"] += 1
            continue
        path = find_video(videos, segment.video)
        if path is None:
            report.skipped["missing video(s)"] += 1
            continue
        try:
            before, after = segment_frames(path, segment.start, segment.end)
        except Exception:  # PyAV raises many error types for corrupt files; any of them means: skip this one
            report.skipped["unreadable segment(s)"] += 1
            continue
        before_path, after_path = f"images/{number:07d}_before.png", f"images/{number:07d}_after.png"
        atomic_save_image(output / before_path, square_resize(before, size))
        atomic_save_image(output / after_path, square_resize(after, size))
        records.append({"before": before_path, "after": after_path, "instruction": segment.instruction,
                        "split": "heldout" if rng.random() < heldout_fraction else "train",
                        "video": segment.video, "start": segment.start, "end": segment.end})
        report.written += 1
    write_index(output, records)
    return report
