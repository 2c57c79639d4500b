"""Before/after action pairs on disk: a folder with a JSONL index and PNG images.

`pairs.jsonl`, one object per line: {"before": "images/00000_before.png", "after": "images/00000_after.png",
"instruction": "lift the red ball", "split": "train" | "heldout"} (image paths relative to the folder); pairs cut
from videos also keep their segment, "video" (as the annotation names it), "start" and "end" (seconds), which the
action recogniser trains on, and may name their "action" class (default: the instruction). Both
builders (the synthetic generator in scripts/make_action_pairs.py and the video builder in
nerf_edit/action/videos.py) write it; the trainer and the action-accuracy evaluation read it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image

from nerf_edit.core.io import atomic_write
from nerf_edit.errors import ActionDataError

INDEX_FILE = "pairs.jsonl"
# The size pairs cut from videos are written at: the paper's evaluation size (its edits, and both FIDs' reference
# sets, at 512²). Training and the Diffusion-Classifier accuracy downsample to their --resolution (the paper
# trains at 256²); nothing is upsampled for the evaluation.
EVALUATION_SIZE = 512
SPLITS = ("train", "heldout")
# Words too common to count as "sharing a token" when picking a contrastive instruction (the paper's c_T' shares
# no token with c_T; articles and prepositions would rule out nearly every instruction).
STOP_WORDS = frozenset({"the", "a", "an", "to", "of", "and", "on", "in", "into", "from", "with", "it", "its", "up"})


@dataclass(frozen=True)
class ActionPair:
    before: Path
    after: Path
    instruction: str
    split: str = "train"
    action: str = ""  # the action class (the recogniser's label); "" means the instruction
    video: Optional[str] = None  # the source segment, for pairs cut from videos
    start: Optional[float] = None  # seconds
    end: Optional[float] = None  # seconds

    @property
    def label(self) -> str:
        return self.action or self.instruction


def write_index(root: Path, pairs: list[dict]) -> Path:
    """Write pairs.jsonl atomically (records with before/after relative to `root`)."""
    path = Path(root) / INDEX_FILE
    text = "".join(json.dumps(record) + "\n" for record in pairs)
    atomic_write(path, lambda tmp: tmp.write_text(text))
    return path


def read_pairs(root: Path, split: str | None = None) -> list[ActionPair]:
    """The pairs of `root`'s index (all splits, or one); ActionDataError on a missing folder, index, image or a
    malformed line."""
    root = Path(root)
    if not root.is_dir():
        raise ActionDataError(f"pair folder {str(root)!r} does not exist: build one with nerf-edit-make-action-pairs "
                              f"or nerf-edit-action-pairs-from-videos")
    index = root / INDEX_FILE
    if not index.is_file():
        raise ActionDataError(f"{str(root)!r} has no {INDEX_FILE}: is it a pair folder written by our builders?")
    if split is not None and split not in SPLITS:
        raise ActionDataError(f"unknown split {split!r}: use one of {list(SPLITS)}")
    pairs = []
    for number, line in enumerate(index.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            pair = ActionPair(root / record["before"], root / record["after"], str(record["instruction"]).strip(),
                              record.get("split", "train"), str(record.get("action") or "").strip(),
                              record.get("video"), _seconds(record.get("start")), _seconds(record.get("end")))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise ActionDataError(f"{index}:{number} is not a pair record ({type(error).__name__}: {error}); "
                                  f"need before, after, instruction") from None
        if not pair.instruction:
            raise ActionDataError(f"{index}:{number} has an empty instruction")
        if split is None or pair.split == split:
            pairs.append(pair)
    for pair in pairs:
        for image in (pair.before, pair.after):
            if not image.is_file():
                raise ActionDataError(f"image {str(image)!r} listed in {index} is missing")
    return pairs


def _seconds(value) -> Optional[float]:
    return None if value is None else float(value)


def load_pair_image(path: Path, resolution: int) -> torch.Tensor:
    """An image resized to resolution² as [3, H, W] in [-1, 1] (the VAE's input range)."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        if image.size != (resolution, resolution):
            image = image.resize((resolution, resolution), Image.BICUBIC)
        array = np.asarray(image, dtype=np.float32) / 127.5 - 1
    return torch.from_numpy(array).permute(2, 0, 1)


def pair_image_size(pairs: list[ActionPair]) -> int:
    """The smallest side of the pairs' before and after images (read from the headers): the largest size they can
    be edited and compared at without upsampling."""
    sides = []
    for pair in pairs:
        for path in (pair.before, pair.after):
            with Image.open(path) as image:
                sides.append(min(image.size))
    if not sides:
        raise ActionDataError("no pairs to read the image size of")
    return min(sides)


def content_words(instruction: str) -> set[str]:
    return set(re.findall(r"[a-z0-9']+", instruction.lower())) - STOP_WORDS


def contrastive_candidates(instructions: list[str], disjoint: bool = True) -> dict[str, list[str]]:
    """For each distinct instruction, the others sharing no content word with it (the paper's c_T'); where there
    are none, or with disjoint=False, every other instruction."""
    distinct = sorted(set(instructions))
    candidates = {}
    for instruction in distinct:
        words = content_words(instruction)
        others = [other for other in distinct if other != instruction]
        disjoint_others = [other for other in others if not (content_words(other) & words)]
        candidates[instruction] = (disjoint_others if disjoint else []) or others
    return candidates
