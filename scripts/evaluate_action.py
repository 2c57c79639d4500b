"""nerf-edit-eval-action: held-out action accuracy of IP2P-architecture models (before/after EditAction fine-tuning).

    nerf-edit-eval-action --data data/action_pairs --models tiny outputs/editaction
    nerf-edit-eval-action --preset editaction-paper --data data/mpii_pairs --models outputs/editaction

For each held-out pair the true instruction and K negatives are scored by the model's mean denoising error over M
(t, ε) draws shared by all candidates (Diffusion Classifier); the lowest wins. Every model answers the same
questions (same negatives, same draws).

With --edit-metrics each model also edits every held-out "before" image with the pair's instruction (our global
editor: plain IP2P, by default s_T 7.5, s_I 1 as the paper; the same seed per pair for every model), writes the
edits to --edits-dir, and reports our edit metrics on them, averaged over the pairs: PSNR / L1 / SSIM against the true
"after" image, and with a CLIP model (--clip-model; `none` skips them) CLIP text-image similarity to the
instruction, CLIP similarity to the before image, and the CLIP direction (edited − before) against the true one
(after − before). With --fid: the paper's two FIDs (torchmetrics), between the edits and the true "after" images
(fid_to_after: how close to the ground truth) and between the edits and the "before" images (fid_to_before: how
close to the input), only where the Inception weights are already on disk.

With --recognizer (a TimeSformer from nerf-edit-train-recognizer): the paper's action accuracy, the recogniser's
reading of 8 frames (the before image ×4, the edit ×4) against the pair's action, for every model's edits and for
the true after images (the `ground truth (after images)` row: what the recogniser can read at all).

`--preset editaction-paper` is the paper's evaluation (its implementation details and quantitative evaluation):
edits at 512² (--edit-resolution; the Diffusion-Classifier accuracy stays at --resolution, the training size),
100 denoising steps, s_T 7.5, s_I 1, edit metrics and both FIDs; any other flag overrides it. It runs one --seed,
where the paper reports mean and variance over three.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Union

import torch
import tyro

from nerf_edit import validate
from nerf_edit.action.accuracy import action_accuracy
from nerf_edit.action.data import ActionPair, load_pair_image, pair_image_size, read_pairs
from nerf_edit.action.recognizer import ActionRecognizer, recognizer_accuracy
from nerf_edit.core.io import atomic_save_image, atomic_write, load_image
from nerf_edit.errors import UsageError
from nerf_edit.eval.metrics import (
    CLIP_MODEL_ID,
    TINY_CLIP,
    ClipEmbedder,
    background_metrics,
    cosine,
    directional_similarity,
    text_image_similarity,
)
from nerf_edit.models.loading import check_model, load_ip2p_pipeline
from nerf_edit_scripts.cli import run

GROUND_TRUTH = "ground truth (after images)"
# Columns of the side-by-side table (JSON holds them all).
EDIT_COLUMNS = ("psnr_to_after", "ssim_to_after", "clip_text_image", "clip_direction_to_after")
FID_COLUMNS = ("fid_to_after", "fid_to_before")  # the paper's two FIDs: to the ground truth and to the input

# torchmetrics' FID uses torch-fidelity's FeatureExtractorInceptionV3, which downloads this file on first use.
FID_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"


def fid_weights_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS


def check_fid_available() -> None:
    """ValueError (one line) unless FID can run offline: never start a download that would hang."""
    try:
        import torch_fidelity  # noqa: F401
        from torchmetrics.image.fid import FrechetInceptionDistance  # noqa: F401
    except ImportError:
        raise UsageError("--fid needs torchmetrics and torch-fidelity: pip install torchmetrics torch-fidelity") from None
    if not fid_weights_path().is_file():
        raise UsageError(f"--fid needs the Inception weights at {fid_weights_path()} (not present, and nothing is "
                         f"downloaded here): copy {FID_WEIGHTS} from a networked machine's torch hub cache, "
                         f"or drop --fid")


def edit_heldout(model: str, pairs: List[ActionPair], resolution: int, steps: int, seed: int, device: str,
                 folder: Path, guidance_scale: float = 7.5, image_guidance_scale: float = 1.0) -> torch.Tensor:
    """Edit each pair's before image with its instruction (global editor, s_T `guidance_scale`, s_I
    `image_guidance_scale`; pair i uses seed + i for every model), write the edits as folder/<i>.png, and return
    them as written (8-bit) [N, 3, H, W] in [0, 1]."""
    from nerf_edit.config.editor import EditorConfig
    from nerf_edit.editing.editor import make_editor

    editor = make_editor("global", EditorConfig(model=model, device=device, steps=steps,
                                                guidance_scale=guidance_scale,
                                                image_guidance_scale=image_guidance_scale))
    edited = []
    for index, pair in enumerate(pairs):
        before = (load_pair_image(pair.before, resolution)[None] + 1) / 2  # [1, 3, H, W] in [0, 1]
        result = editor.edit(before.to(editor.device), pair.instruction,
                             generator=torch.Generator().manual_seed(seed + index)).images
        path = folder / f"{index:05d}.png"
        atomic_save_image(path, result[0].float().cpu())
        edited.append(load_image(path))  # metrics of the files as written, so anyone can recompute them
    return torch.stack(edited)


def heldout_images(pairs: List[ActionPair], resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(before, after) [N, 3, H, W] in [0, 1], quantised to 8 bits as the edits are."""
    def load(path: Path) -> torch.Tensor:
        return ((load_pair_image(path, resolution) + 1) / 2 * 255).round().clamp(0, 255) / 255

    return torch.stack([load(p.before) for p in pairs]), torch.stack([load(p.after) for p in pairs])


def action_edit_metrics(edited: torch.Tensor, before: torch.Tensor, after: torch.Tensor, instructions: List[str],
                        embedder: Optional[ClipEmbedder]) -> Dict[str, float]:
    """Our edit metrics of edits [N, 3, H, W] of `before` against the true `after` (all in [0, 1]), each the mean
    over the N pairs: PSNR / L1 / SSIM to the after image; with CLIP: text-image similarity to each pair's
    instruction, image similarity to the before image, and the edit's CLIP direction against the true one."""
    nothing_masked = torch.zeros(1, *edited.shape[-2:], dtype=torch.bool)
    per_pair: Dict[str, list] = {"psnr_to_after": [], "l1_to_after": [], "ssim_to_after": []}
    for index in range(len(edited)):
        pixels = background_metrics(edited[index:index + 1], after[index:index + 1], nothing_masked)
        per_pair["psnr_to_after"].append(pixels["psnr"])
        per_pair["l1_to_after"].append(pixels["l1"])
        per_pair["ssim_to_after"].append(ssim(edited[index:index + 1], after[index:index + 1]))
    if embedder is not None:
        edited_emb, before_emb, after_emb = (embedder.images(images) for images in (edited, before, after))
        text_emb = embedder.texts(instructions)
        per_pair["clip_text_image"] = [float(text_image_similarity(edited_emb[i:i + 1], text_emb[i])[0])
                                       for i in range(len(edited))]
        per_pair["clip_image_to_before"] = cosine(edited_emb, before_emb).tolist()
        per_pair["clip_direction_to_after"] = directional_similarity(edited_emb, before_emb, before_emb,
                                                                     after_emb).tolist()
    return {name: sum(values) / len(values) for name, values in per_pair.items()}


def ssim(image: torch.Tensor, reference: torch.Tensor) -> float:
    """SSIM of [1, 3, H, W] images in [0, 1] (Gaussian window 11, σ 1.5), averaged over the pixels whose window
    lies inside the image, as Wang et al.'s reference code and scikit-image do (torchmetrics' mean also counts
    border windows over reflected padding)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    _, full = structural_similarity_index_measure(image.float(), reference.float(), data_range=1.0,
                                                  return_full_image=True)  # [1, 3, H, W]
    border = 5  # (11 - 1) / 2
    return float(full[..., border:-border, border:-border].mean())


def edit_fid(edited: torch.Tensor, reference: torch.Tensor, feature: Union[int, torch.nn.Module] = 2048) -> float:
    """FID between the model's edits and reference images ([N, 3, H, W] in [0, 1] each): the true after images
    (the paper's FID to the ground truth) or the before images (its FID to the input). `feature`: the Inception
    layer's width (64, 192, 768 or 2048, torchmetrics' choices), or a module mapping such images to [N, d] features
    in its place (what a test can run offline)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    fid = FrechetInceptionDistance(feature=feature, normalize=True)
    fid.update(reference.float(), real=True)
    fid.update(edited.float(), real=False)
    return float(fid.compute())


def model_folder_name(position: int, model: str) -> str:
    """A folder name per compared model: its position (two models may share a name) and a readable slug."""
    return f"{position:02d}_" + (re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("._") or "model")[-60:]


@dataclass
class EvaluateAction:
    """Action accuracy (Diffusion-Classifier reading) of each model on the held-out pairs; optional FID."""

    data: Path
    """Pair folder with pairs.jsonl and a held-out split."""
    models: List[str] = field(default_factory=lambda: ["timbrooks/instruct-pix2pix"])
    """Models to compare (hub id, local folder from nerf-edit-train-action, or `tiny`)."""
    negatives: int = 3
    """K wrong instructions per pair (chance = 1/(K+1)), drawn from the data's other instructions."""
    draws: int = 16
    """M (t, ε) draws per pair, shared by all candidates."""
    resolution: int = 256
    """Images are resized to this square size for the Diffusion-Classifier accuracy (use the training resolution),
    and for the edits unless --edit-resolution says otherwise."""
    edit_resolution: Optional[int] = None
    """Square size of the edits and of every metric on them (None: --resolution); the paper edits at 512 a model
    trained at 256."""
    timestep_fraction: float = 1.0
    """Draw t from the first fraction of the schedule (1: all of it; low noise carries most of the signal)."""
    seed: int = 0
    """Seed of the negatives and draws (the same questions for every model)."""
    edit_metrics: bool = False
    """Also edit each held-out before image with its instruction and report our edit metrics on the edits."""
    clip_model: str = CLIP_MODEL_ID
    """CLIP weights of the edit metrics' CLIP scores: hub id, local folder, `tiny` (random, tests) or `none`."""
    edits_dir: Optional[Path] = None
    """Where the edits are written, one folder per model (default: beside --output, `action_edits/`)."""
    fid: bool = False
    """Also the paper's two FIDs of the edits: to the true after images (fid_to_after) and to the before images
    (fid_to_before); needs the Inception weights on disk."""
    edit_steps: int = 100
    """Denoising steps of each edit (the paper: 100)."""
    edit_guidance_scale: float = 7.5
    """Text guidance s_T of each edit (the paper: 7.5, IP2P's)."""
    edit_image_guidance_scale: float = 1.0
    """Image guidance s_I of each edit (the paper: 1)."""
    recognizer: Optional[str] = None
    """The paper's action accuracy: a TimeSformer from nerf-edit-train-recognizer (folder or hub id) classifies
    each edit from the before image ×4 and the edit ×4 (`recognizer_accuracy`), and the true after images the same
    way (the `ground truth` row)."""
    device: str = "cpu"
    """Device of the models."""
    output: Path = Path("eval/action_accuracy.json")
    """JSON of the results."""

    def validate(self) -> None:
        """Every setting, before any model or image loads (one UsageError line each)."""
        if self.negatives < 1 or self.draws < 1:
            raise UsageError(f"--negatives and --draws must be >= 1, got {self.negatives} and {self.draws}")
        for flag, size in (("--resolution", self.resolution), ("--edit-resolution", self.edits_resolution)):
            if size < 16 or size % 8:
                raise UsageError(f"{flag} must be >= 16 and a multiple of 8, got {size}")
        if self.editing:
            validate.check_at_least("--edit-steps", self.edit_steps, 1)
            validate.check_range("--edit-guidance-scale", self.edit_guidance_scale, 0)
            validate.check_range("--edit-image-guidance-scale", self.edit_image_guidance_scale, 0)
            validate.check_output_dir(self.edits_folder, "--edits-dir")
        if self.edit_metrics and self.clip_model not in ("none", TINY_CLIP):
            try:
                check_model(self.clip_model, "--clip-model", "config.json")
            except UsageError as error:
                raise UsageError(f"{error} (or skip the CLIP scores with --clip-model none)") from None

    def main(self) -> dict:
        self.validate()
        everything, heldout = self.read_heldout()
        recognizer = ActionRecognizer.load(self.recognizer, self.device) if self.recognizer is not None else None
        read_size, before, after = self.edit_references(heldout) if self.editing else (None, None, None)
        vocabulary = [pair.instruction for pair in everything]
        embedder = ClipEmbedder(self.clip_model, self.device) if self.edit_metrics and self.clip_model != "none" else None
        results = {}
        if recognizer is not None:  # the recogniser's own ceiling on these pairs: the true after images
            truth = recognizer_accuracy(recognizer, before, after, [pair.label for pair in heldout])
            results[GROUND_TRUTH] = truth.summary()
            print(f"{GROUND_TRUTH}: recognizer accuracy {truth.accuracy:.3f} ({truth.correct}/{truth.total}"
                  f"{f', {truth.unseen} action(s) it was not trained on' if truth.unseen else ''})", flush=True)
        print(f"{len(heldout)} held-out pairs, K={self.negatives} negatives (chance {1 / (self.negatives + 1):.3f}), "
              f"M={self.draws} draws", flush=True)
        for position, model in enumerate(self.models):
            results[model] = self.evaluate_model(position, model, heldout, vocabulary)
            if self.editing:
                results[model].update(pair_image_size=read_size, edit_resolution=self.edits_resolution,
                                      **self.edit_scores(position, model, heldout, before, after, embedder, recognizer))
        print_table(results)
        atomic_write(self.output, lambda tmp: tmp.write_text(json.dumps(results, indent=2)))
        return results

    @property
    def editing(self) -> bool:
        """Whether the held-out before images are edited (for the edit metrics, FID or the recogniser)."""
        return self.edit_metrics or self.fid or self.recognizer is not None

    def read_heldout(self) -> tuple[List[ActionPair], List[ActionPair]]:
        """(every pair, the held-out ones); one UsageError line when there are too few for what is asked."""
        everything = read_pairs(self.data)
        heldout = [pair for pair in everything if pair.split == "heldout"]
        if not heldout:
            raise UsageError(f"{str(self.data)!r} has no held-out pairs (split `heldout`)")
        if self.fid:
            if len(heldout) < 2:
                raise UsageError(f"--fid needs at least 2 held-out pairs, {str(self.data)!r} has {len(heldout)}")
            check_fid_available()
        return everything, heldout

    def evaluate_model(self, position: int, model: str, heldout: List[ActionPair], vocabulary: List[str]) -> dict:
        """The Diffusion-Classifier action accuracy of one model."""
        pipe = load_ip2p_pipeline(model, device=self.device)
        result = action_accuracy(pipe, heldout, vocabulary, self.negatives, self.draws, self.resolution, self.seed,
                                 self.timestep_fraction)
        del pipe
        print(f"{model}: action accuracy {result.accuracy:.3f} ({result.correct}/{result.total})", flush=True)
        return result.summary()

    def edit_scores(self, position: int, model: str, heldout: List[ActionPair], before, after, embedder,
                    recognizer) -> dict:
        """One model's edits of the held-out before images, written to its folder, and what is asked of them: the
        edit metrics, the FIDs, the recogniser's accuracy."""
        folder = self.edits_folder / model_folder_name(position, model)
        print(f"{model}: editing {len(heldout)} held-out before images ({self.edit_steps} steps) into {folder}",
              flush=True)
        edited = edit_heldout(model, heldout, self.edits_resolution, self.edit_steps, self.seed, self.device, folder,
                              self.edit_guidance_scale, self.edit_image_guidance_scale)
        scores = {"edits": str(folder)}
        if self.edit_metrics:
            scores.update(action_edit_metrics(edited, before, after, [pair.instruction for pair in heldout], embedder))
        if self.fid:
            scores.update(fid_to_after=edit_fid(edited, after), fid_to_before=edit_fid(edited, before))
        if recognizer is not None:
            scores.update(recognizer_accuracy(recognizer, before, edited, [pair.label for pair in heldout]).summary())
        return scores

    def edit_references(self, heldout: List[ActionPair]) -> tuple[int, torch.Tensor, torch.Tensor]:
        """The held-out images' size, said in one line, and the before and after images at the edit resolution;
        one UsageError line when the edits would need them upsampled (the pairs must be cut at the evaluation
        size: nerf-edit-action-pairs-from-videos --size). -> (size, before, after [N, 3, S, S] in [0, 1])"""
        size = pair_image_size(heldout)
        if size < self.edits_resolution:
            raise UsageError(f"--edit-resolution {self.edits_resolution} is above the held-out images' size "
                             f"({size}²): the edits and the FIDs' reference images would be upsampled; build "
                             f"the pairs at {self.edits_resolution} (nerf-edit-action-pairs-from-videos --size "
                             f"{self.edits_resolution}) or lower --edit-resolution")
        print(f"held-out images read at {size}² (the pairs' size): edits, their metrics and the FIDs' reference "
              f"images at {self.edits_resolution}², the Diffusion-Classifier accuracy at {self.resolution}²", flush=True)
        return (size, *heldout_images(heldout, self.edits_resolution))

    @property
    def edits_resolution(self) -> int:
        return self.edit_resolution if self.edit_resolution is not None else self.resolution

    @property
    def edits_folder(self) -> Path:
        return self.edits_dir if self.edits_dir is not None else self.output.parent / "action_edits"


def print_table(results: dict) -> None:
    """The models side by side: action accuracy, then whichever edit metrics were computed."""
    columns = [c for c in ("action_accuracy", "recognizer_accuracy", *EDIT_COLUMNS, *FID_COLUMNS)
               if any(c in row for row in results.values())]
    width = max(16, *(len(model) for model in results))
    print(f"{'model':{width}s} " + " ".join(f"{c:>23s}" for c in columns))
    for model, row in results.items():  # the ground-truth row has the recogniser's column only
        print(f"{model:{width}s} " + " ".join(f"{row[c]:23.4f}" if c in row else f"{'-':>23s}" for c in columns),
              flush=True)


PRESETS = {
    # The paper's implementation details: inference at 512² (training at 256²), 100 denoising steps, s_I 1 and
    # s_T 7.5 as IP2P suggests; its quantitative evaluation: FID to the input and to the ground truth.
    "editaction-paper": ("the paper's evaluation: edits at 512² (the accuracy read at --resolution, the training "
                         "size), 100 steps, s_T 7.5, s_I 1, edit metrics and both FIDs; one seed (the paper: three, "
                         "mean and variance)",
                         lambda: EvaluateAction(data=tyro.MISSING, edit_resolution=512, edit_metrics=True, fid=True,
                                                edit_steps=100, edit_guidance_scale=7.5,
                                                edit_image_guidance_scale=1.0)),
}


def entrypoint() -> None:
    run(EvaluateAction, PRESETS)


if __name__ == "__main__":
    entrypoint()
