"""Before/after pairs from action-recognition video annotations: the first and the last frame of each labelled
segment (the paper's LC/HC datasets, Sec. 3.2), decoded with PyAV, centre-cropped to a square, resized, and listed
in pairs.jsonl (nerf_edit/action/data.py).

Three annotation formats:
* EPIC-Kitchens-100 (EPIC_100_train.csv, ...): columns video_id, start_timestamp, stop_timestamp, narration;
  timestamps HH:MM:SS.ff; the video of P01_01 is found as <videos>/P01_01.MP4 or <videos>/P01/videos/P01_01.MP4
  (any of .MP4/.mp4/.mov/.mkv/.webm/.avi).
* plain: columns video, start, end, instruction; `video` is a path relative to the videos folder; start/end in
  seconds or HH:MM:SS(.ff).
* MPII-Cooking (detectionGroundtruth-1-0.csv, the paper's LC dataset): rows subject, file_name, start_frame,
  end_frame, activity_category_id, activity_category_name, with or without the header
  Subject,File,Start,End,Category,Name; frames counted from 1, the end frame included; the video is
  <videos>/<file_name>.avi; the instruction is the category name, and "Background activity" rows are skipped.
  Frame n is the decoded frame whose index round((time - stream start) · fps) is n - 1 (the exact frame of a
  constant-rate video); pairs.jsonl keeps start/end in seconds (the two frames' times) and adds
  start_frame/end_frame.

A segment whose video is missing or cannot be decoded, or whose row is malformed or an MPII background row, is
skipped and counted by reason; the build never stops on one.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Optional, Union

import numpy as np
from PIL import Image

from nerf_edit.action.data import EVALUATION_SIZE, ActionDataError, write_index
from nerf_edit.core.io import atomic_save_image
from nerf_edit.errors import UsageError

VIDEO_SUFFIXES = (".MP4", ".mp4", ".mov", ".MOV", ".mkv", ".webm", ".avi")
EPIC_COLUMNS = ("video_id", "start_timestamp", "stop_timestamp", "narration")
PLAIN_COLUMNS = ("video", "start", "end", "instruction")
# MPII-Cooking's header where it has one; the columns read are File, Start, End and Name (compared in lower case).
MPII_COLUMNS = ("Subject", "File", "Start", "End", "Category", "Name")
MPII_BACKGROUND = "background activity"  # MPII's filler category between activities: no action to learn
MALFORMED, BACKGROUND = "malformed row(s)", "background row(s)"  # reasons a row gives no pair, as the report counts


@dataclass
class Segment:
    video: str
    """The video's name or path relative to the videos folder (found by find_video)."""
    start: Optional[float]
    """Start in seconds; None where the annotation counts frames (start_frame)."""
    end: Optional[float]
    """End in seconds; None where the annotation counts frames (end_frame)."""
    instruction: str
    """What happens in the segment."""
    start_frame: Optional[int] = None
    """First frame, counted from 1 (MPII-Cooking); its time is known only once the video's frame rate is."""
    end_frame: Optional[int] = None
    """Last frame (included), counted from 1 (MPII-Cooking)."""


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


def read_annotations(csv_path: Path) -> tuple[list[Union[Segment, str]], str]:
    """The rows of an EPIC-Kitchens-100, plain or MPII-Cooking CSV, each a Segment or, for a row that gives no
    pair, the reason (MALFORMED, BACKGROUND), and the format's name."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise ActionDataError(f"annotation file {str(csv_path)!r} does not exist")
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        header = next(csv.reader(f), [])
        # MPII's file usually comes without a header: its first row is then already a segment.
        if is_mpii_row(header):
            return [mpii_segment(header)] + [mpii_segment(row) for row in csv.reader(f) if row], "mpii-cooking"
        columns = set(header)
        lowered = [name.strip().lower() for name in header]
        if set(EPIC_COLUMNS) <= columns:
            names, kind = EPIC_COLUMNS, "epic-kitchens-100"
        elif set(PLAIN_COLUMNS) <= columns:
            names, kind = PLAIN_COLUMNS, "plain"
        elif {"file", "start", "end", "name"} <= set(lowered):
            positions = tuple(lowered.index(name) for name in ("file", "start", "end", "name"))
            return [mpii_segment(row, positions) for row in csv.reader(f) if row], "mpii-cooking"
        else:
            raise ActionDataError(f"{str(csv_path)!r} has columns {sorted(columns)}: need EPIC-Kitchens-100's "
                                  f"{', '.join(EPIC_COLUMNS)}, {', '.join(PLAIN_COLUMNS)} or MPII-Cooking's "
                                  f"{','.join(MPII_COLUMNS)} (or its rows without a header)")
        segments: list[Union[Segment, str]] = []
        for row in csv.DictReader(f, fieldnames=header):
            try:
                segment = Segment(row[names[0]].strip(), parse_time(row[names[1]]), parse_time(row[names[2]]),
                                  " ".join(row[names[3]].split()))
                segments.append(segment if segment.video and segment.instruction and segment.end > segment.start
                                else MALFORMED)
            except (ValueError, AttributeError, TypeError):
                segments.append(MALFORMED)
    return segments, kind


def is_mpii_row(fields: list[str]) -> bool:
    """Whether a CSV row is an MPII-Cooking segment (subject, file, start frame, end frame, category id, name):
    how a header-less file is told from one with a header."""
    if len(fields) < 6:
        return False
    try:
        int(fields[2]), int(fields[3])
    except ValueError:
        return False
    return True


def mpii_segment(fields: list[str], positions: tuple[int, int, int, int] = (1, 2, 3, 5)) -> Union[Segment, str]:
    """A Segment of an MPII-Cooking row (positions of file, start, end and name in it), or why it gives none."""
    if len(fields) <= max(positions):
        return MALFORMED
    file, start, end, name = (fields[position] for position in positions)
    try:
        start_frame, end_frame = int(start), int(end)
    except ValueError:
        return MALFORMED
    instruction = " ".join(name.split())
    if instruction.lower() == MPII_BACKGROUND:
        return BACKGROUND
    if not file.strip() or not instruction or start_frame < 1 or end_frame <= start_frame:
        return MALFORMED
    return Segment(file.strip(), None, None, instruction, start_frame, end_frame)


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
        first, last = first_and_last(container, stream, start, end, lambda frame: frame.time,
                                     start - 1e-6, end + 1e-6)
        return first.to_ndarray(format="rgb24"), last.to_ndarray(format="rgb24")


def numbered_frames(path: Path, start_frame: int, end_frame: int) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Frames `start_frame` and `end_frame` (counted from 1, as MPII-Cooking counts) as RGB uint8 [H, W, 3] and
    their times in seconds. Frame n is the decoded frame whose index round((time - stream start) · fps) is n - 1,
    computed in exact fractions of the stream's time base: the very frame of a constant-rate video, whatever its
    time base's rounding (a variable-rate one gets the nearest frame inside the segment). Raises on undecodable
    files."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        if not rate:
            raise UsageError(f"{str(path)!r} has no frame rate: frame numbers cannot be placed in it")
        origin = stream.start_time or 0  # a stream may start after 0: MPII counts from its first frame

        def index(frame) -> int:
            return round((frame.pts - origin) * stream.time_base * Fraction(rate))

        def seconds(number: int) -> float:
            return float(origin * stream.time_base + Fraction(number - 1) / Fraction(rate))

        first, last = first_and_last(container, stream, seconds(start_frame), seconds(end_frame), index,
                                     start_frame - 1, end_frame - 1)
        return first.to_ndarray(format="rgb24"), last.to_ndarray(format="rgb24"), float(first.time), float(last.time)


def first_and_last(container, stream, start: float, end: float, position, low, high):
    """The first decoded frame whose position(frame) is in [low, high] and the last one; `start`/`end` are the
    segment's bounds in seconds, where decoding starts (from the keyframe before each)."""

    def decode_from(seconds: float):
        container.seek(max(0, int(seconds / stream.time_base)), stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            if frame.time is not None:
                yield frame

    first = next((frame for frame in decode_from(start) if position(frame) >= low), None)
    if first is None:
        raise UsageError(f"no frame after {start:.3f} s")
    last = None
    for frame in decode_from(max(0.0, end - 2.0) if end - start > 2.0 else start):
        if position(frame) > high:
            break
        if position(frame) >= low:
            last = frame
    if last is None:
        raise UsageError(f"no frame in [{start:.3f}, {end:.3f}] s")
    return first, last


def square_resize(frame: np.ndarray, size: int) -> np.ndarray:
    """Centre crop to a square, resize to size² (bicubic)."""
    height, width = frame.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    crop = Image.fromarray(frame[top : top + side, left : left + side])
    return np.asarray(crop.resize((size, size), Image.BICUBIC))


def build_pairs_from_videos(
    annotations: Path, videos: Path, output: Path, size: int = EVALUATION_SIZE, heldout_fraction: float = 0.05,
    seed: int = 0, limit: Optional[int] = None, progress=None,
) -> BuildReport:
    """Write pairs.jsonl + images/ into `output` from an annotation CSV, frames at size² (default the paper's
    evaluation size, 512: training downsamples to its resolution, the evaluation edits at 512² without upsampling);
    returns the counts (never raises on a bad video or row: those are skipped and counted)."""
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
        if isinstance(segment, str):
            report.skipped[segment] += 1
            continue
        path = find_video(videos, segment.video)
        if path is None:
            report.skipped["missing video(s)"] += 1
            continue
        numbered = {}
        try:
            if segment.start_frame is None:
                before, after = segment_frames(path, segment.start, segment.end)
                start, end = segment.start, segment.end
            else:  # the records keep seconds, as for the other formats: the two frames' times
                before, after, start, end = numbered_frames(path, segment.start_frame, segment.end_frame)
                numbered = {"start_frame": segment.start_frame, "end_frame": segment.end_frame}
        except Exception:  # PyAV raises many error types for corrupt files; any of them means: skip this one
            report.skipped["unreadable segment(s)"] += 1
            continue
        before_path, after_path = f"images/{number:07d}_before.png", f"images/{number:07d}_after.png"
        atomic_save_image(output / before_path, square_resize(before, size))
        atomic_save_image(output / after_path, square_resize(after, size))
        records.append({"before": before_path, "after": after_path, "instruction": segment.instruction,
                        "split": "heldout" if rng.random() < heldout_fraction else "train",
                        "video": segment.video, "start": start, "end": end, **numbered})
        report.written += 1
    write_index(output, records)
    return report
