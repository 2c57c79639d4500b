"""nerf-edit-action-pairs-from-videos: before/after action pairs from action-recognition video annotations.

    nerf-edit-action-pairs-from-videos --annotations EPIC_100_train.csv --videos EPIC-KITCHENS --output data/epic_pairs
    nerf-edit-action-pairs-from-videos --annotations my_actions.csv --videos my_videos --output data/my_pairs
    nerf-edit-action-pairs-from-videos --annotations detectionGroundtruth-1-0.csv --videos mpii-cooking/videos \
        --output data/mpii_pairs

EPIC-Kitchens-100 CSVs (video_id, start_timestamp, stop_timestamp, narration), a plain CSV (video, start, end,
instruction) or MPII-Cooking's detectionGroundtruth-1-0.csv (subject, file_name, start_frame, end_frame,
category id, category name; with or without its header; frames counted from 1; <file_name>.avi; the category name is
the instruction; "Background activity" rows skipped). Missing or corrupt videos, malformed rows and MPII's background
rows are skipped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from nerf_edit.action.data import EVALUATION_SIZE
from nerf_edit.action.videos import build_pairs_from_videos
from nerf_edit.errors import ActionDataError
from nerf_edit_scripts.cli import run


@dataclass
class ActionPairsFromVideos:
    """Decode the first and last frame of each annotated segment into a pair folder (pairs.jsonl, images/)."""

    annotations: Path
    """Annotation CSV: EPIC-Kitchens-100 format, video,start,end,instruction, or MPII-Cooking's
    detectionGroundtruth-1-0.csv (frame numbers)."""
    videos: Path
    """Folder of the videos (EPIC: the dataset root or its P01/videos/... layout; MPII: the folder of the .avi
    files)."""
    output: Path = Path("data/video_pairs")
    """Folder to write."""
    size: int = EVALUATION_SIZE
    """Frames are centre-cropped to a square and resized to size²: by default the paper's evaluation size (512, where
    it edits and computes both FIDs); training downsamples to its --resolution (the paper trains at 256)."""
    heldout_fraction: float = 0.05
    """Fraction of pairs put in the held-out split (seeded)."""
    seed: int = 0
    """Seed of the held-out split."""
    limit: Optional[int] = None
    """Only the first N annotation rows (a quick look at a big CSV)."""
    progress_every: int = 100
    """Rows between progress lines."""

    def main(self) -> None:
        def progress(number: int, total: int, report) -> None:
            if number and number % max(1, self.progress_every) == 0:
                print(f"row {number}/{total}: {report.line()}", flush=True)

        report = build_pairs_from_videos(self.annotations, self.videos, self.output, self.size,
                                         self.heldout_fraction, self.seed, self.limit, progress)
        print(f"{report.line()} -> {self.output}")
        if report.written == 0:
            raise ActionDataError("no pair could be built: check --videos and the annotation file")


def entrypoint() -> None:
    run(ActionPairsFromVideos)


if __name__ == "__main__":
    entrypoint()
