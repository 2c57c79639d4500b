"""PIE-Bench: its folder layout and its metrics, as PnP-Inversion's evaluation computes them.

Layout (PnP-Inversion's release): `mapping_file.json` maps an id to {image_path, original_prompt, editing_prompt,
editing_instruction, blended_word, mask (run-length: start, length, start, length, ... over the row-major pixels)}
and images lie under `annotation_images/`. Prompts mark the edited words with [brackets], dropped here.

Metrics (PnP-Inversion evaluation/matrics_calculator.py; ViMAEdit's evaluation/ is the same), in the units of the
published tables:
* structure distance ×10³: MSE between the cosine self-similarities of DINO ViT-B/8's last-layer keys of the source
  and edited images (resized to 224, max 480; ImageNet normalisation applied to 0-255 values, as PnP's code does);
* background PSNR, LPIPS ×10³ (SqueezeNet), MSE ×10⁴, SSIM ×10² on both images multiplied by (1 − mask), the mask
  with its border rows/columns counted as edited (PnP's guard against annotation errors at the border);
* CLIP similarity (ViT-L/14, torchmetrics CLIPScore: 100·max(cos, 0)) of the edited image with the target prompt,
  whole and edited part (the image multiplied by the mask).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F

from nerf_edit.errors import ImageReadError, ModelUnavailableError
from nerf_edit.models.clip import load_clip, projected_features
from nerf_edit.models.loading import is_tiny, unavailable_message
from nerf_edit.models.tiny import build_tiny_dino

MAPPING_FILE = "mapping_file.json"
IMAGES_FOLDER = "annotation_images"
DINO_MODEL_ID = "facebook/dino-vitb8"
CLIP_L14_ID = "openai/clip-vit-large-patch14"
LPIPS_NET = "squeeze"
METRICS = ("structure_distance", "psnr", "lpips", "mse", "ssim", "clip_whole", "clip_edited")
UNITS = {"structure_distance": 1e3, "psnr": 1.0, "lpips": 1e3, "mse": 1e4, "ssim": 1e2, "clip_whole": 1.0,
         "clip_edited": 1.0}
# Published PIE-Bench numbers (ViMAEdit paper, PnP-Inversion units), shown beside ours.
PUBLISHED = {
    "ViMAEdit": {"structure_distance": 12.43, "psnr": 28.49, "lpips": 44.39, "mse": 29.12, "ssim": 86.38,
                 "clip_whole": 25.97, "clip_edited": 22.85},
    "P2P": {"structure_distance": 11.64, "psnr": 27.19, "lpips": 54.44, "mse": 33.15, "ssim": 84.71,
            "clip_whole": 25.03, "clip_edited": 22.13},
}


@dataclass
class PieItem:
    key: str
    image_path: str  # relative to annotation_images/
    source_prompt: str
    target_prompt: str
    instruction: str
    blend_words: str
    mask_rle: list


def strip_brackets(prompt: str) -> str:
    return prompt.replace("[", "").replace("]", "")


def load_mapping(folder: Path) -> List[PieItem]:
    """The benchmark's items, in the file's order; a missing or malformed file is one ImageReadError line."""
    path = Path(folder) / MAPPING_FILE
    if not path.is_file():
        raise ImageReadError(f"{str(folder)!r} has no {MAPPING_FILE}: pass a PIE-Bench folder (mapping_file.json "
                             f"and {IMAGES_FOLDER}/), e.g. one made by nerf-edit-make-pie-bench")
    try:
        mapping = json.loads(path.read_text())
        items = [PieItem(key=str(key), image_path=entry["image_path"],
                         source_prompt=strip_brackets(entry["original_prompt"]),
                         target_prompt=strip_brackets(entry["editing_prompt"]),
                         instruction=entry.get("editing_instruction", "") or "",
                         blend_words=entry.get("blended_word", "") or "", mask_rle=list(entry["mask"]))
                 for key, entry in mapping.items()]
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
        raise ImageReadError(f"{str(path)!r} is not a PIE-Bench mapping file ({type(error).__name__}: {error}): each "
                             "entry needs image_path, original_prompt, editing_prompt, mask") from error
    return items


def decode_rle(rle: List[int], shape: tuple[int, int]) -> np.ndarray:
    """PIE-Bench's run-length mask (start, length pairs over row-major pixels) -> [H, W] bool."""
    flat = np.zeros(shape[0] * shape[1], dtype=bool)
    for start, length in zip(rle[0::2], rle[1::2]):
        flat[start : start + length] = True
    return flat.reshape(shape)


def encode_rle(mask: np.ndarray) -> List[int]:
    """[H, W] bool -> PIE-Bench's run-length list (inverse of decode_rle)."""
    flat = np.concatenate([[False], mask.reshape(-1).astype(bool), [False]])
    changes = np.flatnonzero(flat[1:] != flat[:-1])
    starts, ends = changes[0::2], changes[1::2]
    return [int(v) for pair in zip(starts, ends - starts) for v in pair]


def evaluation_mask(mask: np.ndarray) -> np.ndarray:
    """The edited region as PnP's evaluation uses it: the border rows and columns count as edited. -> [H, W] bool"""
    mask = mask.copy()
    mask[0, :] = mask[-1, :] = mask[:, 0] = mask[:, -1] = True
    return mask


class PieMetrics:
    """The seven PIE-Bench metrics of one (source, edited) pair; models by hub id or folder, or `tiny` (random
    weights, same computations) for offline tests."""

    def __init__(self, dino_model: str = DINO_MODEL_ID, clip_model: str = CLIP_L14_ID, lpips: str = LPIPS_NET,
                 device: str = "cpu"):
        self._use(self._load_dino(dino_model), *self._load_clip(clip_model), self._load_lpips(lpips), device)

    @classmethod
    def from_models(cls, dino, clip, clip_tokenizer, clip_processor, lpips, device: str = "cpu") -> "PieMetrics":
        """The metrics with models built elsewhere (e.g. the full-size random-weight architectures of
        nerf_edit.models.full_size, for the conformance tests)."""
        metrics = cls.__new__(cls)
        metrics._use(dino, clip, clip_tokenizer, clip_processor, lpips, device)
        return metrics

    def _use(self, dino, clip, clip_tokenizer, clip_processor, lpips, device: str) -> None:
        self.device = device
        self.dino = dino.to(device).eval()
        self.clip, self.clip_tokenizer, self.clip_processor = clip.to(device).eval(), clip_tokenizer, clip_processor
        self.lpips = lpips.to(device).eval()

    @staticmethod
    def _load_dino(model: str):
        from transformers import ViTModel

        if is_tiny(model):
            return build_tiny_dino()
        try:
            return ViTModel.from_pretrained(model, add_pooling_layer=False)
        except (OSError, ValueError) as error:
            raise ModelUnavailableError(unavailable_message(model, error)) from error

    @staticmethod
    def _load_clip(model: str):
        return load_clip(model)

    @staticmethod
    def _load_lpips(net: str):
        from torchmetrics.functional.image.lpips import _LPIPS

        if is_tiny(net):  # the shipped SqueezeNet LPIPS heads on a random backbone
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                return _LPIPS(pretrained=True, net=LPIPS_NET, pnet_rand=True)
        try:
            return _LPIPS(pretrained=True, net=net)
        except Exception as error:  # torchvision downloads the ImageNet backbone on first use
            raise ModelUnavailableError(f"LPIPS ({net}) backbone weights are not available ({type(error).__name__}): "
                                        "run once on a networked machine so torchvision caches them (TORCH_HOME), "
                                        "or use --lpips tiny for the random-backbone test metric") from error

    # ------------------------------------------------------------------ metrics; images [H, W, 3] uint8 arrays
    @torch.no_grad()
    def dino_key_self_similarity(self, image: np.ndarray) -> torch.Tensor:
        """Cosine self-similarity of the last layer's keys (all heads concatenated). -> [T, T]"""
        from torchvision.transforms import Normalize, Resize

        pixels = torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1)[None].to(self.device)  # 0..255, as PnP
        pixels = Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))(Resize(224, max_size=480)(pixels))
        key_layer = [module for name, module in self.dino.named_modules() if name.endswith(("k_proj", "attention.key"))][-1]
        captured = []
        handle = key_layer.register_forward_hook(lambda module, inputs, output: captured.append(output))
        try:
            self.dino(pixel_values=pixels, interpolate_pos_encoding=True)
        finally:
            handle.remove()
        keys = captured[0][0].float()  # [T, D]
        unit = keys / keys.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        return unit @ unit.T

    def structure_distance(self, source: np.ndarray, edited: np.ndarray) -> float:
        return float(F.mse_loss(self.dino_key_self_similarity(edited), self.dino_key_self_similarity(source)))

    @staticmethod
    def _masked(image: np.ndarray, keep: np.ndarray) -> torch.Tensor:
        """[H, W, 3] uint8 times keep [H, W] -> [1, 3, H, W] float in [0, 1]."""
        array = image.astype(np.float32) / 255 * keep[..., None].astype(np.float32)
        return torch.from_numpy(array).permute(2, 0, 1)[None]

    def background(self, source: np.ndarray, edited: np.ndarray, mask: np.ndarray) -> Dict[str, float]:
        """PSNR, LPIPS, MSE, SSIM of the two images multiplied by (1 − evaluation mask); NaN when nothing is kept."""
        from torchmetrics.functional.image import structural_similarity_index_measure

        keep = ~evaluation_mask(mask)
        if not keep.any():
            return {name: float("nan") for name in ("psnr", "lpips", "mse", "ssim")}
        a, b = self._masked(edited, keep), self._masked(source, keep)
        mse = float(((a - b) ** 2).mean())
        with torch.no_grad():
            lpips = float(self.lpips(a.to(self.device) * 2 - 1, b.to(self.device) * 2 - 1).mean())
        return {"psnr": float(10 * np.log10(1.0 / mse)) if mse > 0 else float("inf"), "lpips": lpips, "mse": mse,
                "ssim": float(structural_similarity_index_measure(a, b, data_range=1.0))}

    @torch.no_grad()
    def clip_score(self, image: np.ndarray, text: str) -> float:
        """torchmetrics CLIPScore of one image: 100·max(cos(image, text), 0)."""
        pixels = self.clip_processor(images=[image], return_tensors="pt").pixel_values.to(self.device)
        tokens = self.clip_tokenizer([text], padding=True, truncation=True, return_tensors="pt").to(self.device)
        image_features = F.normalize(projected_features(self.clip.get_image_features(pixel_values=pixels)).float(), dim=-1)
        text_features = F.normalize(projected_features(self.clip.get_text_features(**tokens)).float(), dim=-1)
        return float(100 * (image_features * text_features).sum(-1).clamp_min(0)[0])

    def all(self, source: np.ndarray, edited: np.ndarray, mask: np.ndarray, target_prompt: str) -> Dict[str, float]:
        """The seven metrics in raw units (multiply by UNITS for the tables)."""
        results = {"structure_distance": self.structure_distance(source, edited)}
        results.update(self.background(source, edited, mask))
        results["clip_whole"] = self.clip_score(edited, target_prompt)
        edited_part = evaluation_mask(mask)
        results["clip_edited"] = self.clip_score((edited * edited_part[..., None]).astype(np.uint8), target_prompt)
        return results


def summarize(rows: List[Dict[str, float]]) -> Dict[str, Optional[float]]:
    """Means over images (NaNs skipped) in table units."""
    summary = {}
    for name in METRICS:
        values = np.array([row[name] for row in rows if name in row], dtype=np.float64)
        values = values[np.isfinite(values)]
        summary[name] = float(values.mean() * UNITS[name]) if len(values) else None
    return summary
