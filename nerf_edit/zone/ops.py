"""ZONE (Li et al., CVPR 2024) as plain functions: localisation from IP2P's cross-attention, action-dependent
model fusion, Region-IoU refinement against segments, the FFT edge smoother and layer blending.

Pixel sizes are given for a 512² image, as in the paper and its code, and scaled with the image (`scaled_px`).
"""

from __future__ import annotations

import re
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F

from nerf_edit.config.zone import ACTIONS, EDGE_DIFFERENCES, Action
from nerf_edit.core.masks import dilate, mask_iou
from nerf_edit.errors import UsageError
from nerf_edit.plugins import build_plugin

# MagicBrush's weight in the fused step: it removes objects better, IP2P keeps identities better (ZONE §4.2).
FUSION_BETA: dict[str, float] = {"remove": 0.2, "add": 0.01, "change": 0.01}
REFERENCE_SIZE = 512
# ITU-R BT.601 luma weights of R, G, B: what OpenCV's RGB2GRAY applies and ZONE's edge smoother compares.
EDGE_GREY_WEIGHTS = (0.299, 0.587, 0.114)


def scaled_px(pixels: float, image_size: Sequence[int]) -> int:
    """A pixel size given at 512² scaled to `image_size` (by its shorter side), at least 1."""
    return max(1, round(pixels * min(image_size) / REFERENCE_SIZE))


def scaled_area(pixels: float, image_size: Sequence[int]) -> float:
    """An area in pixels given at 512² scaled to `image_size` (by its shorter side, squared: an area grows with
    both sides). Not rounded, so that a threshold stays exact at 512² and small at small sizes."""
    return pixels * (min(image_size) / REFERENCE_SIZE) ** 2


# ------------------------------------------------------------------------------------------- localisation
def token_difference(maps: torch.Tensor, last_token: int) -> torch.Tensor:
    """First-token minus last-token attention, each map scaled to 0–255 by its maximum, negatives cut to 0.

    maps [b, h, w, L] (averaged over layers, heads and steps); `last_token` is the instruction's end-of-text
    index. IP2P's start-of-text token soaks up attention everywhere except where the edit happens, so the
    difference is *low* on the edited region. -> [b, h, w] in [0, 255]
    """
    first, last = maps[..., 0], maps[..., last_token]

    def to_255(m):
        return 255 * m / m.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]

    return (to_255(first) - to_255(last)).clamp_min(0)


def rough_mask(
    maps: torch.Tensor,
    last_token: int,
    image_size: Sequence[int],
    threshold: float = 108.0,
    contrast: float = 2.0,
) -> torch.Tensor:
    """ZONE's rough edit mask M_b: the token difference, resized to the image, contrast-stretched (×`contrast`,
    saturating at 255) and kept where at most `threshold` (0–255 scale), as the official code
    (lsl001006/ZONE msk_from_attn.py ~64-76: `cv2.subtract(SOT, EOT)`, resize, `convertScaleAbs(alpha=2)`,
    background where > 108). [b, h, w, L] -> [b, H, W] bool"""
    difference = token_difference(maps, last_token)[:, None]
    difference = F.interpolate(difference, size=tuple(image_size), mode="bilinear", align_corners=False)[:, 0]
    return (difference * contrast).clamp(0, 255) <= threshold


def last_token_index(tokenizer, instruction: str) -> int:
    """Index of the end-of-text token of `instruction` in the padded sequence the UNet attends to."""
    ids = tokenizer(instruction, truncation=True, max_length=tokenizer.model_max_length).input_ids
    return len(ids) - 1


# ------------------------------------------------------------------------------------------- action + fusion
_REMOVE = r"\b(remove|delete|erase|eliminate|get rid of|take (away|out|off)|clear (away|out)|without|no longer)\b"
_ADD = r"\b(add|put|place|insert|give|include|attach|draw|let \w+ (wear|hold))\b"
_CHANGE = r"\b(change|turn|make|replace|convert|transform|swap|paint|colou?r)\b"


class RuleBasedActionClassifier:
    """ZONE's add/remove/change decision, by keywords: the fallback where ZONE's own classifier (a 2-layer MLP on
    IP2P's CLIP text embeddings, `nerf_edit.zone.classifier`) can't run (a tiny or other-width text encoder).

    The earliest keyword in the instruction decides: "remove/delete/erase/get rid of/take away/without…" is
    remove, "add/put/place/insert/give/include/attach…" is add, "change/turn/make/replace…" and anything
    else is change. So "give him a hat" is add, "make the dog wear a hat" is change, "turn the cat into a dog"
    change, "get rid of the car" remove.
    """

    name = "keyword rules"

    def __call__(self, instruction: str) -> Action:
        text = instruction.lower()
        found = []
        for action, pattern in (("remove", _REMOVE), ("add", _ADD), ("change", _CHANGE)):
            match = re.search(pattern, text)
            if match:
                found.append((match.start(), action))
        return min(found)[1] if found else "change"


ActionClassifier = Callable[[str], Action]


def action_classifier(spec: str) -> ActionClassifier:
    """`rules` (the keyword rules above), a fixed action (`add`/`remove`/`change`), or an import path
    `package.module:Name` naming a callable instruction -> action, or a class constructed without arguments."""
    if spec == "rules":
        return RuleBasedActionClassifier()
    if spec in ACTIONS:
        return lambda instruction: spec
    if ":" not in spec:
        raise UsageError(f"unknown action classifier {spec!r}: use 'rules', one of {list(ACTIONS)}, "
                         f"or an import path 'package.module:Name'")
    return build_plugin(spec, "action classifier")


def fuse_latents(main: torch.Tensor, auxiliary: torch.Tensor, beta: float) -> torch.Tensor:
    """ZONE's fused step z = (z_ip2p + β·z_mb) / (1 + β)."""
    return (main + beta * auxiliary) / (1 + beta)


# ------------------------------------------------------------------------------------------- refinement
def region_iou(segments: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """IoU of each segment with the mask. segments [N, H, W] bool, mask [H, W] bool -> [N]"""
    return mask_iou(segments, mask, dims=(-2, -1))


def refine_mask(segments: Optional[torch.Tensor], mask: torch.Tensor) -> tuple[torch.Tensor, int]:
    """ZONE's Region-IoU choice: the segment that best overlaps the rough mask, and its index.
    With no segments, or none touching the mask, the rough mask stays (index -1). [N, H, W], [H, W] -> [H, W]"""
    if segments is None or len(segments) == 0:
        return mask.bool(), -1
    scores = region_iou(segments, mask)
    best = int(scores.argmax())
    if scores[best] <= 0:
        return mask.bool(), -1
    return segments[best].bool().to(mask.device), best


def connected_components(mask: torch.Tensor) -> torch.Tensor:
    """Label the 4-connected components of set pixels (scipy.ndimage.label's default connectivity, which ZONE's
    code uses): each set pixel gets the flat index (row · W + column) of its component's first pixel in raster
    order, each unset pixel -1. [B, H, W] bool -> [B, H, W] long"""
    mask = mask.bool()
    batch, height, width = mask.shape
    unset = height * width  # above every index, so it never wins a minimum
    index = torch.arange(unset, device=mask.device).view(1, height, width).expand(batch, -1, -1)
    labels = torch.where(mask, index, unset)  # [B, H, W]
    while True:
        # each pixel takes the smallest label among itself and its 4 neighbours; unset pixels stay unset
        smallest = labels.clone()
        smallest[:, 1:] = torch.minimum(smallest[:, 1:], labels[:, :-1])
        smallest[:, :-1] = torch.minimum(smallest[:, :-1], labels[:, 1:])
        smallest[:, :, 1:] = torch.minimum(smallest[:, :, 1:], labels[:, :, :-1])
        smallest[:, :, :-1] = torch.minimum(smallest[:, :, :-1], labels[:, :, 1:])
        smallest = torch.where(mask, smallest, unset).flatten(1)  # [B, H·W]
        # then the label of the pixel its label names: a pixel of the same component whose label is no larger,
        # so labels travel along chains at once instead of one pixel per pass (long thin regions)
        jumped = smallest.gather(1, smallest.clamp_max(unset - 1))
        jumped = torch.where(mask.flatten(1), jumped, unset).view(batch, height, width)
        if torch.equal(jumped, labels):  # every component holds its smallest index everywhere
            return torch.where(mask, labels, -1)
        labels = jumped


def remove_small_regions(mask: torch.Tensor, area_px: float = 64.0) -> torch.Tensor:
    """Unset every 4-connected region of set pixels smaller than `area_px` pixels (at 512², scaled with the
    image's area); holes (unset regions) stay. ZONE's code does this to M_b and M_f (lsl001006/ZONE
    utils/mask_utils.py ~140-150, `filter_small_regions(mask, region_thres=64)`, called at ~161 and ~163).
    It differs from that code in two slips we don't copy: its "area" is the sum of the label image over the
    region, i.e. pixels × label number, so only the first region in raster order is held to 64 px (the k-th to
    64/k); and it clears the region's whole bounding box, with any pixels of other regions inside it.
    `area_px` 0 keeps every region. [B, H, W] bool -> [B, H, W] bool"""
    mask = mask.bool()
    if area_px <= 0:
        return mask
    labels = connected_components(mask).flatten(1).clamp_min(0)  # [B, H·W]; unset pixels point at 0, add 0, masked
    pixels = torch.zeros_like(labels).scatter_add_(1, labels, mask.flatten(1).long())  # region sizes at first pixels
    area = pixels.gather(1, labels).view_as(mask)  # [B, H, W] each pixel's region size
    return mask & (area >= scaled_area(area_px, mask.shape[-2:]))


# ------------------------------------------------------------------------------------------- morphology
# dilate (square, by a radius) is nerf_edit.core.masks.dilate, imported above.
def erode(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Square erosion; outside the image counts as set, as in OpenCV's default border for erosion."""
    if radius <= 0:
        return mask.bool()
    return ~dilate(~mask.bool(), radius)


def close(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Morphological closing (dilate, then erode): bridges gaps narrower than 2·radius."""
    return erode(dilate(mask, radius), radius)


def fill_holes(mask: torch.Tensor) -> torch.Tensor:
    """Set every pixel not reachable from the border through unset pixels. [B, H, W] bool -> [B, H, W] bool"""
    background = ~mask.bool()
    outside = torch.zeros_like(background)
    outside[:, 0, :], outside[:, -1, :] = background[:, 0, :], background[:, -1, :]
    outside[:, :, 0], outside[:, :, -1] = background[:, :, 0], background[:, :, -1]
    while True:  # flood fill: grow through background pixels (4-connected) until nothing changes
        grown = outside.clone()
        grown[:, 1:] |= outside[:, :-1]
        grown[:, :-1] |= outside[:, 1:]
        grown[:, :, 1:] |= outside[:, :, :-1]
        grown[:, :, :-1] |= outside[:, :, 1:]
        grown &= background
        if torch.equal(grown, outside):
            return ~outside
        outside = grown


# ------------------------------------------------------------------------------------------- edge smoother
def ideal_low_pass(images: torch.Tensor, radius: float) -> torch.Tensor:
    """Keep the centred spectrum within `radius` of the centre. [..., H, W] real -> [..., H, W] complex spectrum"""
    height, width = images.shape[-2:]
    spectrum = torch.fft.fftshift(torch.fft.fft2(images.float()), dim=(-2, -1))
    rows = torch.arange(height, device=images.device) - height // 2
    cols = torch.arange(width, device=images.device) - width // 2
    inside = rows[:, None] ** 2 + cols[None, :] ** 2 <= radius**2
    return spectrum * inside


def fft_edge_mask(
    edited: torch.Tensor,
    original: torch.Tensor,
    mask: torch.Tensor,
    dilate_px: float = 4.0,
    radius_px: float = 200.0,
    threshold: float = 30.0,
    close_px: float = 10.0,
    difference: str = "max-channel",
) -> torch.Tensor:
    """ZONE's edge smoother: the mask M_f* of pixels the edit really changed near the refined mask M_f.

    Both layers are cut to M_f dilated (M_d), low-passed with an ideal filter (D0 = `radius_px` at 512²), and the
    inverse FFT of the spectra's difference is binarised (> `threshold` on 0–255), closed and hole-filled; the
    result is kept inside M_d. `difference` "max-channel" takes the difference per colour channel and keeps the
    largest, so a hue change of equal brightness still counts; "grey" compares the layers' BT.601 luma
    0.299 R + 0.587 G + 0.114 B, as ZONE's code (lsl001006/ZONE utils/mask_utils.py ~252-255, cv2's RGB2GRAY).
    edited, original [B, 3, H, W] in [0, 1]; mask [B, H, W] bool -> [B, H, W] bool
    """
    size = edited.shape[-2:]
    region = dilate(mask.bool(), scaled_px(dilate_px, size))[:, None]  # M_d [B, 1, H, W]
    change = edited.float() - original.float()  # [B, 3, H, W]
    if difference == "grey":  # luma is linear too: the luma of the difference is the difference of the lumas
        weights = torch.tensor(EDGE_GREY_WEIGHTS, device=change.device)
        change = (change * weights[:, None, None]).sum(1, keepdim=True)  # [B, 1, H, W]
    elif difference != "max-channel":
        raise UsageError(f"unknown edge difference {difference!r}: use one of {list(EDGE_DIFFERENCES)}")
    # H(f(L)) − H(f(G)) = H(f(L − G)): the FFT and the filter are linear, so one transform of the difference
    spectrum = ideal_low_pass(change * region, radius_px * min(size) / REFERENCE_SIZE)
    changed = torch.fft.ifft2(torch.fft.ifftshift(spectrum, dim=(-2, -1))).abs().amax(1) * 255  # [B, H, W]
    smoothed = fill_holes(close(changed > threshold, scaled_px(close_px, size)))
    return smoothed & region[:, 0]


BLEND_BANDS = ("difference", "official")


def blend_layers(
    edited: torch.Tensor,
    original: torch.Tensor,
    final_mask: torch.Tensor,
    refined_mask: torch.Tensor,
    edge_alpha: float = 0.6,
    band: str = "difference",
) -> torch.Tensor:
    """Composite the edited layer onto the original: the edit inside M_f ∩ M_f*, an `edge_alpha` mix on the band,
    and the original, bit for bit, everywhere else.

    `band` "difference" (ours): the band is M_f* \\ M_f, so everything outside M_f* is the original. "official":
    the band of lsl001006/ZONE inference.py ~125-129, `edge_bimask = modified_sty_edge - mask_image` on uint8 masks of
    0/255, which wraps (0 − 255 = 1): M_f* \\ M_f and also M_f \\ M_f* (the refined mask where the smoother found
    no change) get the mix, so pixels outside M_f* change there too: the changed pixels are M_f* ∪ M_f. We differ
    in the arithmetic only: the official mix is truncated to uint8 by the assignment, ours stays a float.
    edited, original [B, 3, H, W]; masks [B, H, W] bool -> [B, 3, H, W]"""
    if band not in BLEND_BANDS:
        raise UsageError(f"unknown blend band {band!r}: use one of {list(BLEND_BANDS)}")
    final_mask = final_mask[:, None].to(edited.device)
    refined_mask = refined_mask[:, None].to(edited.device)
    mixed_band = final_mask ^ refined_mask if band == "official" else final_mask & ~refined_mask
    mixed = edge_alpha * edited + (1 - edge_alpha) * original
    layer = torch.where(mixed_band, mixed, edited)
    return torch.where(final_mask | mixed_band, layer, original)


# ------------------------------------------------------------------------------------------- the official size rule
OFFICIAL_MAX_SIZE = 512  # lsl001006/ZONE ptp_utils.py ~24: check_image_size(pil_image, side_multiple=32, max_size=512)
OFFICIAL_SIDE_MULTIPLE = 32


def official_image_size(width: int, height: int, side_multiple: int = OFFICIAL_SIDE_MULTIPLE,
                        max_size: int = OFFICIAL_MAX_SIZE) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """ZONE's size rule for a width × height image (lsl001006/ZONE ptp_utils.py ~24-71, `check_image_size`, applied
    to every input at inference.py ~50): a longest side above `max_size` is resized to it, the other side scaled and
    truncated (`int`); then each side is padded with black to the next multiple of `side_multiple`, the padding
    split with its smaller half first (left, top). -> ((resized width, height), (left, top, right, bottom) padding)"""
    if width > max_size or height > max_size:
        if width > height:
            width, height = max_size, int(height * max_size / width)
        else:
            width, height = int(width * max_size / height), max_size
    pad_x = -width % side_multiple
    pad_y = -height % side_multiple
    return (width, height), (pad_x // 2, pad_y // 2, pad_x - pad_x // 2, pad_y - pad_y // 2)


def check_image_size(image: torch.Tensor, side_multiple: int = OFFICIAL_SIDE_MULTIPLE,
                     max_size: int = OFFICIAL_MAX_SIZE) -> torch.Tensor:
    """An image [3, H, W] in [0, 1] brought to ZONE's size rule (`official_image_size`): resized as the official
    code does, with PIL's default resampling (bicubic) on 8-bit values, then padded black. The official code edits
    and writes the padded image: so does the zone-official preset of nerf-edit-image. -> [3, H', W'] in [0, 1]"""
    import numpy as np
    from PIL import Image

    height, width = image.shape[-2:]
    (new_width, new_height), (left, top, right, bottom) = official_image_size(width, height, side_multiple, max_size)
    if (new_width, new_height) != (width, height):
        pixels = (image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
        resized = Image.fromarray(pixels).resize((new_width, new_height), Image.Resampling.BICUBIC)
        image = torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1).float().div(255).to(image.device)
    return F.pad(image, (left, right, top, bottom), value=0.0)
