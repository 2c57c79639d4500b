"""EditAction's action recogniser, the paper's accuracy (§5, "Quantitative evaluation"): TimeSformer fine-tuned on
the video segments the pairs were cut from (a pair's before image is its segment's first frame, its after image
the last), then asked which action an edit shows from 8 frames: the input image 4 times, the edit 4 times. The
paper starts from the Something-Something-V2 checkpoint for MPII-Cooking (LC) and the Kinetics-600 one for
EPIC-Kitchens (HC); transformers' `TimesformerForVideoClassification` and its video processor run both.

Training clips are 8 frames spread evenly from the segment's first to its last frame (`clips="segments"`, needs
the videos), or, for pairs without videos (the synthetic generator's), the inference clip itself (before ×4,
after ×4, `clips="pairs"`). Each clip is decoded once into OUTPUT/clips/ (uint8, at the model's input size).
The loop is the EditAction trainer's (nerf_edit/action/training.py): accelerate, seeded global batches, atomic
checkpoints, `--resume latest`, data parallel with `accelerate launch`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Optional, Sequence

import numpy as np
import torch

from nerf_edit.action.data import ActionPair, read_pairs
from nerf_edit.action.training import (
    CheckpointedRun,
    find_checkpoint,
    global_indices,
    make_accelerator,
    move_into,
    reset_accelerate_state,
    resume,
    save_checkpoint,
    tracker,
)
from nerf_edit.action.videos import find_video, square_resize
from nerf_edit.core.io import atomic_write, to_uint8
from nerf_edit.core.progress import Progress
from nerf_edit.errors import ActionDataError, UsageError
from nerf_edit.validate import check_at_least, check_range

# The paper's two starting checkpoints (TimeSformer-base, 8 frames of 224²).
KINETICS_600 = "facebook/timesformer-base-finetuned-k600"  # for EPIC-Kitchens (HC)
SOMETHING_SOMETHING_V2 = "facebook/timesformer-base-finetuned-ssv2"  # for MPII-Cooking (LC)
TRAINING_FILE = "recognizer_training.json"
LABELS_FILE = "recognizer_labels.json"  # the classes a run's checkpoints were trained on, in head order


@dataclass
class RecognizerTrainConfig(CheckpointedRun):
    """Fine-tuning of a TimeSformer action recogniser on the pairs' source video segments."""

    data: Path = Path("data/video_pairs")
    """Pair folder (pairs.jsonl) from nerf-edit-action-pairs-from-videos; its training split is used."""
    videos: Optional[Path] = None
    """The videos folder the pairs were cut from (needed by `--clips segments`)."""
    output: Path = Path("outputs/action_recognizer")
    """Folder of the trained recogniser (transformers save_pretrained: model and video processor), checkpoints/,
    logs/ and the decoded clips/."""
    model: str = KINETICS_600
    """Starting TimeSformer: hub id or local folder (the paper: `facebook/timesformer-base-finetuned-ssv2` for
    MPII-Cooking, `facebook/timesformer-base-finetuned-k600` for EPIC-Kitchens), or `tiny` (random, tests)."""
    clips: Literal["segments", "pairs", "both"] = "segments"
    """Training clips: `segments` (frames spread over each pair's source segment, as the paper), `pairs` (the
    inference clip, before ×4 and after ×4: for pairs without videos) or `both` (each pair gives both clips: the
    recogniser also sees the clip form it is scored on)."""
    steps: int = 2000
    """Optimizer steps."""
    batch_size: int = 8
    """Clips per process per step."""
    learning_rate: float = 5e-5
    """AdamW learning rate (transformers' video-classification fine-tuning recipe)."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    """Autocast precision (fp16 needs a GPU)."""
    seed: int = 0
    """Seed of the batches and of the new classification head."""

    def check(self) -> None:
        """UsageError (one line) on settings that cannot train."""
        for name in ("steps", "batch_size"):
            check_at_least("--" + name.replace("_", "-"), getattr(self, name), 1)
        check_range("--learning-rate", self.learning_rate, 0, low_open=True)
        check_range("--weight-decay", self.weight_decay, 0)
        self.check_run()
        if self.clips != "pairs":
            if self.videos is None:
                raise UsageError(f"--clips {self.clips} needs --videos (the folder the pairs were cut from), or use "
                                 f"--clips pairs")
            if not Path(self.videos).is_dir():
                raise UsageError(f"--videos {str(self.videos)!r} is not a folder")
        if self.mixed_precision == "fp16" and (self.cpu or not torch.cuda.is_available()):
            raise UsageError("--mixed-precision fp16 needs a GPU: use bf16 or no on the CPU")


# ----------------------------------------------------------------------------------------------- clips
def pair_clip(before: np.ndarray, after: np.ndarray, frames: int) -> np.ndarray:
    """The paper's inference clip: `before` repeated frames/2 times, then `after` ([H, W, 3] uint8 each).
    -> [frames, H, W, 3]"""
    first = frames // 2
    return np.stack([before] * first + [after] * (frames - first))


def segment_clip(path: Path, start: float, end: float, frames: int) -> np.ndarray:
    """`frames` frames of a video spread evenly from its first frame at or after `start` to its last at or before
    `end` (each the decoded frame nearest its target time). -> [frames, H, W, 3] uint8"""
    import av

    try:
        return _decode_segment(path, np.linspace(start, end, frames), start, end)
    except (av.error.FFmpegError, OSError) as error:  # PyAV's errors for an unreadable or corrupt file
        raise ActionDataError(f"video {str(path)!r} cannot be decoded ({error}): re-encode or replace it, or leave "
                              f"its pairs out of pairs.jsonl") from None


def _decode_segment(path: Path, targets: np.ndarray, start: float, end: float) -> np.ndarray:
    """The decoded frame nearest each of `targets` (seconds, ascending) in [start, end]. -> [T, H, W, 3] uint8"""
    import av

    frames, chosen = len(targets), []
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ActionDataError(f"{str(path)!r} has no video stream: its pairs need a video file")
        stream = container.streams.video[0]
        container.seek(max(0, int(start / stream.time_base)), stream=stream, backward=True, any_frame=False)
        previous = None
        for frame in container.decode(stream):
            if frame.time is None or frame.time < start - 1e-6:
                continue
            if frame.time > end + 1e-6:
                break
            while len(chosen) < frames and frame.time >= targets[len(chosen)] - 1e-6:
                target = targets[len(chosen)]
                nearer_previous = previous is not None and target - previous.time < frame.time - target
                chosen.append((previous if nearer_previous else frame).to_ndarray(format="rgb24"))
            previous = frame
            if len(chosen) == frames:
                break
        if previous is None:
            raise ActionDataError(f"no frame of {path} in [{start:.3f}, {end:.3f}] s")
        while len(chosen) < frames:  # targets after the last decoded frame: the segment's last frame
            chosen.append(previous.to_ndarray(format="rgb24"))
    return np.stack(chosen)


def _image(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return square_resize(np.asarray(image.convert("RGB")), size)


def training_clip(pair: ActionPair, clips: str, videos: Optional[Path], size: int, frames: int) -> np.ndarray:
    """A training pair's clip at size² ([frames, size, size, 3] uint8): its source segment (`clips` "segments")
    or its pair clip ("pairs")."""
    if clips == "pairs":
        return pair_clip(_image(pair.before, size), _image(pair.after, size), frames)
    if pair.video is None or pair.start is None or pair.end is None:
        raise ActionDataError(f"pair {pair.before.name} has no source segment (video, start, end) in pairs.jsonl: "
                              f"build the pairs with nerf-edit-action-pairs-from-videos, or use --clips pairs")
    path = find_video(Path(videos), pair.video)
    if path is None:
        raise ActionDataError(f"video {pair.video!r} of pair {pair.before.name} is not in {str(videos)!r}")
    return np.stack([square_resize(frame, size) for frame in segment_clip(path, pair.start, pair.end, frames)])


def clip_sources(pair: ActionPair, clips: str, videos: Optional[Path]) -> list[Path]:
    """The files a training clip is made of (the segment's video, or the pair's two images)."""
    if clips == "pairs":
        return [pair.before, pair.after]
    path = find_video(Path(videos), pair.video) if pair.video is not None else None
    return [path] if path is not None else []


def cached_clip(folder: Path, pair: ActionPair, clips: str, videos: Optional[Path], size: int,
                frames: int) -> np.ndarray:
    """`training_clip`, decoded once into `folder` (written atomically), named by what it is made of: the source
    files with their sizes and modification times (a rebuilt pair folder reuses names), the segment, the size."""
    stats = [f"{path}:{path.stat().st_size}:{path.stat().st_mtime_ns}" for path in clip_sources(pair, clips, videos)]
    source = "|".join([clips, f"{pair.video}|{pair.start}|{pair.end}", *stats, str(size), str(frames)])
    path = folder / f"{hashlib.sha1(source.encode()).hexdigest()[:24]}.npy"
    if path.is_file():
        return np.load(path)
    clip = training_clip(pair, clips, videos, size, frames)

    def write(temporary: Path) -> None:
        with open(temporary, "wb") as file:  # a handle: np.save would append .npy to a path
            np.save(file, clip, allow_pickle=False)

    atomic_write(path, write)
    return clip


# ------------------------------------------------------------------------------------------ recogniser
class ActionRecognizer:
    """A TimeSformer video classifier and its video processor: clips -> action labels."""

    def __init__(self, model, processor, device: str = "cpu"):
        self.model, self.processor = model.to(device).eval(), processor
        self.device = device

    @classmethod
    def load(cls, source: str, device: str = "cpu") -> "ActionRecognizer":
        """A trained recogniser folder (nerf-edit-train-recognizer's output) or hub id, offline."""
        from transformers import AutoImageProcessor, TimesformerForVideoClassification

        from nerf_edit.models.loading import check_model

        check_model(source, "--recognizer", "config.json", tiny_ok=False)
        if Path(source).is_dir() and not (Path(source) / "preprocessor_config.json").is_file():
            raise UsageError(f"--recognizer {source!r} has no preprocessor_config.json: pass a folder written by "
                             f"nerf-edit-train-recognizer (model and video processor)")
        return cls(TimesformerForVideoClassification.from_pretrained(source),
                   AutoImageProcessor.from_pretrained(source), device)

    @property
    def labels(self) -> list[str]:
        id2label = self.model.config.id2label
        return [id2label[i] for i in range(len(id2label))]

    @property
    def frames(self) -> int:
        return int(self.model.config.num_frames)

    @property
    def size(self) -> int:
        return int(self.model.config.image_size)

    def pixel_values(self, clips: Sequence[np.ndarray]) -> torch.Tensor:
        """[B, T, H, W, 3] uint8 clips -> the model's input [B, T, 3, S, S] (the processor's resize and normalisation)"""
        return self.processor([list(clip) for clip in clips], return_tensors="pt").pixel_values.to(self.device)

    @torch.no_grad()
    def predict(self, clips: Sequence[np.ndarray]) -> list[str]:
        logits = self.model(pixel_values=self.pixel_values(clips)).logits  # [B, classes]
        labels = self.labels
        return [labels[int(index)] for index in logits.argmax(-1)]


@dataclass
class RecognizerAccuracy:
    accuracy: float
    correct: int
    total: int
    unseen: int  # pairs whose action is not among the recogniser's labels (counted as wrong)
    predictions: list

    def summary(self, prefix: str = "recognizer") -> dict:
        return {f"{prefix}_accuracy": self.accuracy, f"{prefix}_correct": self.correct,
                f"{prefix}_unseen_labels": self.unseen}


def recognizer_accuracy(recognizer: ActionRecognizer, before: torch.Tensor, edited: torch.Tensor,
                        labels: Sequence[str], batch_size: int = 8) -> RecognizerAccuracy:
    """The paper's accuracy: per pair, the clip (before ×4, edit ×4) classified, right when it names the pair's
    action. before/edited [N, 3, H, W] in [0, 1]."""
    if len(before) != len(edited) or len(before) != len(labels):
        raise ValueError(f"{len(before)} before images, {len(edited)} edits and {len(labels)} labels")
    if not len(labels):
        raise UsageError("no pairs to score")
    clips = [pair_clip(to_uint8(b), to_uint8(e), recognizer.frames) for b, e in zip(before, edited)]
    predictions = []
    for first in range(0, len(clips), batch_size):
        predictions += recognizer.predict(clips[first:first + batch_size])
    correct = sum(p == label for p, label in zip(predictions, labels))
    known = set(recognizer.labels)
    return RecognizerAccuracy(correct / len(labels), correct, len(labels), sum(label not in known for label in labels),
                              predictions)


# ------------------------------------------------------------------------------------------ training
def load_for_training(model: str, labels: list[str], seed: int):
    """(TimeSformer with a new `labels` head, its video processor): `tiny` or pretrained weights, offline."""
    from nerf_edit.models.tiny import build_tiny_timesformer

    if model == "tiny":
        return build_tiny_timesformer(labels, seed)
    from transformers import AutoImageProcessor, TimesformerForVideoClassification

    from nerf_edit.models.loading import check_model

    check_model(model, "--model", "config.json", tiny_ok=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the new head's initial weights
        network = TimesformerForVideoClassification.from_pretrained(
            model, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)}, ignore_mismatched_sizes=True)
    return network, AutoImageProcessor.from_pretrained(model)


def _training_pairs(config: RecognizerTrainConfig) -> tuple[list[ActionPair], list[str]]:
    pairs = read_pairs(config.data, "train")
    labels = sorted({pair.label for pair in pairs})
    if len(labels) < 2:
        raise ActionDataError(f"{str(config.data)!r} has {len(labels)} action(s) in its training split: a recogniser "
                              f"needs at least two")
    return pairs, labels


def check_same_labels(output: Path, labels: list[str], resume_from: Optional[Path]) -> None:
    """Resuming: the checkpoint's classes must be this data's (a changed training split would shift every class
    index silently). A fresh start records them."""
    path = Path(output) / LABELS_FILE
    if resume_from is not None and path.is_file():
        saved = json.loads(path.read_text())
        if saved != labels:
            raise ActionDataError(f"the training pairs' actions ({len(labels)}) are not those of the checkpoints in "
                                  f"{str(output)!r} ({len(saved)}): resume with the same --data, or train into a new "
                                  f"--output")
    else:
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps(labels, indent=1)))


def _step_line(done: int, total: Optional[int], rate: float, elapsed: float, status: str) -> str:
    return f"step {done}/{total} {status} ({elapsed:.1f} s)"


def train_recognizer(config: RecognizerTrainConfig) -> Path:
    """Fine-tune a TimeSformer on the pairs' clips and write it (model + processor) to config.output."""
    config.check()
    pairs, labels = _training_pairs(config)
    resume_from = find_checkpoint(config.output, config.resume) if config.resume else None
    check_same_labels(config.output, labels, resume_from)
    log_with = tracker(config.log_with)
    accelerator = make_accelerator(config.output, 1, config.mixed_precision, config.cpu, log_with)
    try:
        network, processor = load_for_training(config.model, labels, config.seed)
        recognizer = ActionRecognizer(network, processor, accelerator.device)
        clips, targets = _training_clips(config, pairs, labels, recognizer, accelerator.is_main_process)
        network.train()
        optimizer = torch.optim.AdamW(network.parameters(), lr=config.learning_rate,
                                      weight_decay=config.weight_decay)
        network, optimizer = accelerator.prepare(network, optimizer)
        global_step = resume(accelerator, config.output, config.resume, resume_from)
        if log_with:
            accelerator.init_trackers("action_recognizer", config={k: str(v) for k, v in asdict(config).items()})
        global_step = _train_steps(config, accelerator, network, optimizer, recognizer, clips, targets, global_step)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            _write_result(config, accelerator.unwrap_model(network), processor, labels, global_step)
        accelerator.end_training()
    finally:
        reset_accelerate_state()
    return config.output


def _training_clips(config: RecognizerTrainConfig, pairs, labels: list[str], recognizer: "ActionRecognizer",
                    main_process: bool) -> tuple[list, torch.Tensor]:
    """Every training item's clip (segments and/or pairs, `config.clips`; cached on disk, so a resumed run skips
    the decoding) and its class index [M]."""
    clip_folder = config.output / "clips"
    kinds = ("segments", "pairs") if config.clips == "both" else (config.clips,)
    items = [(pair, kind) for pair in pairs for kind in kinds]
    clips = []
    progress = Progress("clips", len(items), "clips", enabled=main_process)
    for pair, kind in items:  # every process decodes what it needs
        clips.append(cached_clip(clip_folder, pair, kind, config.videos, recognizer.size, recognizer.frames))
        progress.advance()
    progress.close()
    return clips, torch.tensor([labels.index(pair.label) for pair, _ in items])


def _train_steps(config: RecognizerTrainConfig, accelerator, network, optimizer, recognizer: "ActionRecognizer",
                 clips: list, targets: torch.Tensor, global_step: int) -> int:
    """Optimisation steps from `global_step` until config.steps (or config.stop_after of them), seeded global
    batches split over the processes, checkpoints as configured. -> the step reached"""
    global_batch = config.batch_size * accelerator.num_processes
    mine = slice(accelerator.process_index * config.batch_size, (accelerator.process_index + 1) * config.batch_size)
    progress = Progress("recogniser", config.steps, "steps", every=config.log_every, initial=global_step,
                        line=_step_line, enabled=accelerator.is_main_process)
    steps_this_run = 0
    while global_step < config.steps and (config.stop_after is None or steps_this_run < config.stop_after):
        indices = global_indices(config.seed, global_step, global_batch, len(clips))[mine]
        pixel_values = recognizer.pixel_values([clips[i] for i in indices])
        with accelerator.autocast():
            loss = network(pixel_values=pixel_values, labels=targets[indices].to(accelerator.device)).loss
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(network.parameters(), config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad()
        global_step += 1
        steps_this_run += 1
        mean_loss = accelerator.reduce(loss.detach().float().reshape(1), "mean").item()
        accelerator.log({"loss": mean_loss}, step=global_step)
        progress.advance(status=f"loss={mean_loss:.4f}")
        if global_step % config.checkpoint_every == 0 or global_step == config.steps or (
            config.stop_after is not None and steps_this_run == config.stop_after
        ):
            save_checkpoint(accelerator, config.output, global_step, config.checkpoints_total_limit)
    progress.close()
    return global_step


def _write_result(config: RecognizerTrainConfig, network, processor, labels: list[str], global_step: int) -> None:
    if global_step < config.steps:
        print(f"stopped at step {global_step}/{config.steps}; continue with --resume latest")
        return
    temporary = config.output / ".recognizer.tmp"
    if temporary.exists():
        import shutil

        shutil.rmtree(temporary)
    network.eval().save_pretrained(str(temporary))
    processor.save_pretrained(str(temporary))
    move_into(temporary, config.output, "config.json")
    info = {"steps": global_step, "model": config.model, "labels": labels,
            "config": {k: str(v) for k, v in asdict(config).items()}}
    atomic_write(config.output / TRAINING_FILE, lambda tmp: tmp.write_text(json.dumps(info, indent=2)))
    print(f"wrote the action recogniser ({len(labels)} actions) to {config.output} "
          f"(score edits with nerf-edit-eval-action --recognizer {config.output})")
