"""ZONE's functional core on planted inputs whose right answer is known."""

import hashlib
from types import SimpleNamespace

import pytest
import torch

from nerf_edit.config.zone import ZoneConfig
from nerf_edit.core.masks import mask_iou
from nerf_edit.errors import EditorError
from nerf_edit.models.tiny import build_tiny_text_encoder, build_tiny_tokenizer
from nerf_edit.zone import classifier, parts
from nerf_edit.zone import ops as zone


def square(size, top, left, side):
    mask = torch.zeros(size, dtype=torch.bool)
    mask[top : top + side, left : left + side] = True
    return mask


def disk(size, center, radius):
    rows, cols = torch.meshgrid(torch.arange(size[0]), torch.arange(size[1]), indexing="ij")
    return (rows - center[0]) ** 2 + (cols - center[1]) ** 2 <= radius**2


# ------------------------------------------------------------------------------------------- localisation
def planted_attention(grid=(8, 8), tokens=77, last=5, region=None):
    """Start-of-text attention high except on a region (cells [2:5, 3:6]); end-of-text attention high only there."""
    maps = torch.full((1, *grid, tokens), 0.01)
    region = square(grid, 2, 3, 3) if region is None else region
    maps[0, ..., 0] = torch.where(region, 0.1, 1.0)
    maps[0, ..., last] = torch.where(region, 1.0, 0.1)
    return maps, region


def test_rough_mask_finds_the_planted_region():
    maps, region = planted_attention()
    assert torch.equal(zone.rough_mask(maps, last_token=5, image_size=(8, 8))[0], region)  # on the attention grid
    # resized to the image (2 px per attention cell), the mask is the region up to its blurred edge
    maps, region = planted_attention(grid=(32, 48), region=square((32, 48), 8, 20, 16))
    mask = zone.rough_mask(maps, last_token=5, image_size=(64, 96))
    truth = region.repeat_interleave(2, 0).repeat_interleave(2, 1)
    assert mask.shape == (1, 64, 96)
    assert not (mask[0] & ~truth).any() and mask[0, 17:47, 41:71].all()  # the 32² square less its 1-px blurred rim
    assert mask_iou(mask[0], truth) >= 0.85


def test_rough_mask_threshold_is_on_the_0_255_scale():
    maps, _ = planted_attention()
    difference = zone.token_difference(maps, 5)
    assert float(difference.max()) == pytest.approx(229.5) and float(difference.min()) == 0  # 255 - 25.5
    at_zero = zone.rough_mask(maps, 5, (8, 8), threshold=0)[0]
    assert torch.equal(at_zero, difference[0] == 0)  # at most 0: only where the difference was cut to 0
    assert zone.rough_mask(maps, 5, (64, 64), threshold=255).all()  # contrast saturates at 255
    # without the x2 contrast, 229.5 is still above T = 128; with a weaker outside signal only contrast saves it
    weak = maps.clone()
    weak[0, ..., 5] = torch.where(weak[0, ..., 5] > 0.5, 1.0, 0.6)  # outside: 255 - 153 = 102 < 128
    assert zone.rough_mask(weak, 5, (64, 64), threshold=128, contrast=1.0).all()
    assert not zone.rough_mask(weak, 5, (64, 64), threshold=128, contrast=2.0).all()


def uniform_difference(value: float) -> torch.Tensor:
    """Maps whose first-minus-last token difference (0-255 scale) is `value` everywhere but one cell, where the
    last token's map has its maximum (difference 0 there)."""
    maps = torch.full((1, 4, 4, 77), 0.01)
    maps[0, ..., 0] = 1.0
    maps[0, ..., 5] = 1.0 - value / 255
    maps[0, 3, 3, 5] = 1.0
    return maps


def test_rough_mask_cuts_where_the_official_code_does():
    """lsl001006/ZONE msk_from_attn.py ~64-76: SOT and EOT maps each scaled to 0-255, `cv2.subtract` (negatives to
    0), resized, `convertScaleAbs(alpha=2)` (x2, saturating), then `new_image[new_image > 108] = 255` (background)
    and `bitwise_not`: the edit region is where 2 x difference <= 108, i.e. a difference of at most 54. The
    paper's Eq. 4 (< 128) would also take 60."""
    threshold = ZoneConfig().attention_threshold
    for difference, inside in ((54.0, True), (55.0, False), (60.0, False), (40.0, True)):
        mask = zone.rough_mask(uniform_difference(difference), 5, (4, 4), threshold)[0]
        assert bool(mask[1, 1]) == inside, difference


def test_last_token_is_the_instructions_end_of_text():
    tokenizer = build_tiny_tokenizer()
    index = zone.last_token_index(tokenizer, "turn the ball blue")
    ids = tokenizer("turn the ball blue", padding="max_length", max_length=77).input_ids
    assert index == 5 and ids[index] == tokenizer.eos_token_id and ids[0] == tokenizer.bos_token_id


# ------------------------------------------------------------------------------------------- action + fusion
@pytest.mark.parametrize(
    "instruction, action",
    [
        ("give him a red hat", "add"),
        ("add a boat on the lake", "add"),
        ("put a cup on the table", "add"),
        ("remove the car", "remove"),
        ("get rid of the person on the left", "remove"),
        ("take away the umbrella", "remove"),
        ("erase the text", "remove"),
        ("the street without cars", "remove"),
        ("turn the cat into a dog", "change"),
        ("make the ball blue", "change"),
        ("replace the apple with an orange", "change"),
        ("make the dog wear a hat", "change"),
        ("as a watercolour painting", "change"),
        ("Remove the hat and add a crown", "remove"),
    ],
)
def test_rule_based_action_classifier(instruction, action):
    assert zone.RuleBasedActionClassifier()(instruction) == action


def test_action_classifier_specs():
    assert zone.action_classifier("remove")("give him a hat") == "remove"
    assert zone.action_classifier("nerf_edit.zone:RuleBasedActionClassifier")("delete it") == "remove"
    with pytest.raises(ValueError, match="unknown action classifier"):
        zone.action_classifier("mlp")


def test_fusion_formula_and_betas():
    main, auxiliary = torch.full((1, 4, 2, 2), 1.0), torch.full((1, 4, 2, 2), 4.0)
    assert torch.equal(zone.fuse_latents(main, auxiliary, 0.0), main)
    torch.testing.assert_close(zone.fuse_latents(main, auxiliary, 0.2), torch.full_like(main, (1 + 0.8) / 1.2))
    # one weight per action, MagicBrush weighs most when removing (ZONE §4.2: it removes objects better)
    assert set(zone.FUSION_BETA) == set(zone.ACTIONS)
    assert all(zone.FUSION_BETA["remove"] > zone.FUSION_BETA[action] > 0 for action in ("add", "change"))


# ------------------------------------------------------------------------------------------- Region-IoU
def test_region_iou_picks_the_segment_that_matches_the_rough_mask():
    size = (64, 64)
    target = disk(size, (30, 34), 12)
    segments = torch.stack([
        torch.ones(size, dtype=torch.bool),  # whole image (SAM's coarsest level)
        disk(size, (30, 34), 5),  # a part of the object
        target,  # the object
        disk(size, (30, 10), 12),  # a neighbour
        ~target,  # everything else
    ])
    # an over-edited, blocky attention mask: the object's bounding box grown a little, one spill-over blob
    rough = square(size, 16, 20, 29) | disk(size, (55, 55), 4)
    refined, index = zone.refine_mask(segments, rough)
    assert index == 2 and torch.equal(refined, target)
    scores = zone.region_iou(segments, rough)
    assert scores.shape == (5,) and int(scores.argmax()) == 2


def test_refine_keeps_the_rough_mask_without_a_matching_segment():
    rough = square((32, 32), 4, 4, 8)
    refined, index = zone.refine_mask(None, rough)
    assert index == -1 and torch.equal(refined, rough)
    apart = square((32, 32), 20, 20, 8)[None]
    refined, index = zone.refine_mask(apart, rough)
    assert index == -1 and torch.equal(refined, rough)


def test_small_regions_go_as_in_the_official_code():
    """lsl001006/ZONE @9788584 utils/mask_utils.py ~140-150, `filter_small_regions(mask, region_thres=64)`: scipy's
    `label(mask)` (default structure: 4-connected) numbers the regions of set pixels, and one whose area is
    `< region_thres` is set to 0; unset pixels are never labelled, so holes stay. ~161 and ~163 apply it to M_b
    and M_f at the image's size (512² here). The 49-px island is the first region in raster order, so the official
    "area" (pixels × label number) is its pixel count there too."""
    size = (512, 512)
    island = square(size, 2, 2, 7)  # 49 px < 64: removed
    body = square(size, 100, 100, 40) & ~square(size, 110, 110, 3)  # 1591 px with a 9-px hole that stays
    kept = square(size, 300, 300, 8)  # 64 px: kept, the official cut is `area < 64`
    mask = (island | body | kept)[None]
    threshold = ZoneConfig().small_regions_px
    assert threshold == 64 and zone.scaled_area(threshold, size) == 64
    filtered = zone.remove_small_regions(mask, threshold)
    assert torch.equal(filtered[0], body | kept) and not torch.equal(filtered, mask)  # unfiltered, the island stays


def test_small_regions_are_4_connected_scaled_with_the_area_and_optional():
    size = (128, 128)  # 64 px at 512² is 4 px here
    staircase = torch.zeros(size, dtype=torch.bool)
    for i in range(4):
        staircase[10 + i, 10 + i] = True  # four 1-px regions touching at corners: 8-connected they would be 4 px
    block = square(size, 40, 40, 2)  # 4 px: kept
    line = torch.zeros(size, dtype=torch.bool)
    line[80, 80:83] = True  # 3 px: removed
    mask = (staircase | block | line)[None]
    assert zone.scaled_area(64, size) == 4
    assert torch.equal(zone.remove_small_regions(mask, 64)[0], block)
    assert torch.equal(zone.remove_small_regions(mask, 0), mask)  # 0: off


def test_connected_components_name_each_region_by_its_first_pixel():
    # a 73-px serpentine path, one region however far its ends are apart along it; then a dot and a square apart
    snake = torch.zeros(16, 16, dtype=torch.bool)
    snake[0::4] = True  # rows 0, 4, 8, 12
    snake[1:4, 15] = snake[5:8, 0] = snake[9:12, 15] = True  # joined at alternate ends
    mask = torch.stack([snake, square((16, 16), 14, 3, 1) | square((16, 16), 2, 2, 2)])
    labels = zone.connected_components(mask)
    assert labels.shape == (2, 16, 16) and labels.dtype == torch.long
    assert torch.equal(labels[0], torch.where(snake, 0, -1))
    expected = torch.full((16, 16), -1)
    expected[2:4, 2:4], expected[14, 3] = 2 * 16 + 2, 14 * 16 + 3
    assert torch.equal(labels[1], expected)


# ------------------------------------------------------------------------------------------- edge smoother
def synthetic_pair(size=(128, 128), seed=0):
    """A textured original and the same image with one blob recoloured (the edit), plus the blob."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, size[0] // 16, size[1] // 16, generator=generator)
    original = 0.2 + 0.6 * torch.nn.functional.interpolate(coarse, size=size, mode="bicubic", align_corners=False)
    original = (original + 0.03 * torch.rand(1, 3, *size, generator=generator)).clamp(0, 1)
    k = size[0] / 128
    blob = disk(size, (60 * k, 70 * k), 22 * k) | disk(size, (80 * k, 50 * k), 12 * k)
    edited = original.clone()
    edited[:, :, blob] = torch.tensor([0.1, 0.3, 0.9])[:, None] * (0.8 + 0.2 * original[:, :1, blob])
    return original, edited, blob


def test_fft_smoother_recovers_the_edited_region():
    original, edited, blob = synthetic_pair()
    # the refined mask is imperfect: SAM cut the blob's lower lobe short and the main disk by 3 px
    refined = disk(blob.shape, (60, 70), 19)[None]
    final = zone.fft_edge_mask(edited, original, refined, dilate_px=4 * 512 / 128 * 4)  # reach the missing lobe
    assert mask_iou(final[0], blob) >= 0.9
    # the mask stays within the dilated refined mask: nothing far away can change
    assert not (final[0] & ~zone.dilate(refined, zone.scaled_px(16 * 4, (128, 128)))[0]).any()


def test_fft_smoother_with_the_papers_settings_at_512():
    """Defaults (dilate 4 px, D0 = 200, threshold 30/255, close 10 px): a refined mask 3 px short of the edit
    all round grows back to it."""
    original, edited, blob = synthetic_pair(size=(512, 512))
    refined = zone.erode(blob[None], 3)
    final = zone.fft_edge_mask(edited, original, refined)
    assert mask_iou(final[0], blob) >= 0.95


def test_grey_edge_difference_misses_a_hue_change_of_equal_luma():
    """lsl001006/ZONE @9788584 utils/mask_utils.py ~252-255: `subtract_fft_images` turns both layers grey with
    `cv2.cvtColor(..., cv2.COLOR_RGB2GRAY)` (Y = 0.299 R + 0.587 G + 0.114 B) before the FFTs, so a recolouring that
    keeps Y changes nothing it sees; the largest channel difference (our default) sees it."""
    size = (64, 64)
    blob = disk(size, (32, 32), 12)
    original = torch.full((1, 3, *size), 0.5)
    hue = torch.tensor([0.8, 0.5 - 0.3 * (0.299 + 0.114) / 0.587, 0.8])  # R, B +0.3 and G down to keep Y = 0.5
    assert float((hue * torch.tensor([0.299, 0.587, 0.114])).sum()) == pytest.approx(0.5, abs=1e-6)
    recoloured, brighter = original.clone(), original.clone()
    recoloured[:, :, blob] = hue[:, None]
    brighter[:, :, blob] = 0.8
    assert ZoneConfig().edge_difference == "max-channel"
    assert not zone.fft_edge_mask(recoloured, original, blob[None], difference="grey").any()
    assert mask_iou(zone.fft_edge_mask(recoloured, original, blob[None], difference="max-channel")[0], blob) >= 0.9
    assert mask_iou(zone.fft_edge_mask(brighter, original, blob[None], difference="grey")[0], blob) >= 0.9
    with pytest.raises(ValueError, match="unknown edge difference 'gray'"):
        zone.fft_edge_mask(recoloured, original, blob[None], difference="gray")


def test_fft_smoother_ignores_an_unchanged_region():
    original, _, blob = synthetic_pair()
    assert not zone.fft_edge_mask(original.clone(), original, blob[None]).any()


def test_blending_is_exact_outside_the_final_mask():
    original, edited, blob = synthetic_pair(seed=1)
    refined = disk(blob.shape, (60, 70), 19)[None]
    final = zone.fft_edge_mask(edited, original, refined, dilate_px=64)
    result = zone.blend_layers(edited, original, final, refined, edge_alpha=0.6)
    outside = ~final[:, None].expand_as(original)
    assert torch.equal(result[outside], original[outside])
    core = (final & refined)[:, None].expand_as(original)
    assert torch.equal(result[core], edited[core])
    band = (final & ~refined)[:, None].expand_as(original)
    assert band.any()
    torch.testing.assert_close(result[band], 0.6 * edited[band] + 0.4 * original[band])



def official_composite(edited, original, fine_mask, smoothed, alpha=0.6):
    """lsl001006/ZONE @9788584 inference.py ~123-129, re-derived on the official types: uint8 images [H, W, 3] and
    uint8 masks of 0/255 (`mask_image`, the refined mask M_f; `modified_sty_edge`, the smoother's M_f*).
    `edge_bimask = modified_sty_edge - mask_image` is a uint8 subtraction: 0 − 255 wraps to 1, so the band is
    where the two masks differ; the float mix assigned into the uint8 canvas is truncated."""
    import numpy as np

    edge_bimask = smoothed - fine_mask  # uint8 arithmetic, as numpy does it on the official arrays
    canvas = original.copy()
    canvas[smoothed > 0] = edited[smoothed > 0]
    canvas[edge_bimask > 0] = edited[edge_bimask > 0] * alpha + original[edge_bimask > 0] * (1 - alpha)
    assert canvas.dtype == np.uint8 and edge_bimask.dtype == np.uint8
    return canvas


def test_the_official_band_mixes_wherever_the_refined_and_smoothed_masks_differ():
    """ZONE's own composite (the wrap of its uint8 subtraction included) against `blend_layers(band="official")`;
    our default band keeps the original on M_f \\ M_f* instead."""
    import numpy as np

    original, edited, blob = synthetic_pair(seed=2)
    refined = disk(blob.shape, (60, 70), 19)[None] | square(blob.shape, 10, 10, 12)[None]  # a segment far off too
    final = zone.fft_edge_mask(edited, original, refined, dilate_px=64)
    only_refined, only_final = refined & ~final, final & ~refined
    assert only_refined.sum() > 50 and only_final.sum() > 50  # both sides of the band are tested
    edited8, original8 = (np.ascontiguousarray((t[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy())
                          for t in (edited, original))
    refined8, final8 = (m[0].numpy().astype(np.uint8) * 255 for m in (refined, final))
    expected = torch.from_numpy(official_composite(edited8, original8, refined8, final8)).permute(2, 0, 1)[None] / 255
    edited, original = (torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255 for a in (edited8, original8))
    ours = zone.blend_layers(edited, original, final, refined, edge_alpha=0.6, band="official")
    torch.testing.assert_close(ours, expected.float(), atol=1 / 255 + 1e-6, rtol=0)  # the official mix truncates
    inside_only = only_refined[:, None].expand_as(ours)  # M_f \\ M_f*: mixed by the wrap
    torch.testing.assert_close(ours[inside_only], (0.6 * edited + 0.4 * original)[inside_only])
    assert (ours[inside_only] != original[inside_only]).any()
    default = zone.blend_layers(edited, original, final, refined, edge_alpha=0.6)
    assert torch.equal(default[inside_only], original[inside_only])  # ours: the original outside M_f*
    outside = (~(final | refined))[:, None].expand_as(ours)
    assert torch.equal(ours[outside], original[outside])


@pytest.mark.parametrize("width, height", [(700, 300), (300, 700), (1000, 1000), (101, 75), (64, 64), (513, 200)])
def test_the_official_size_rule(width, height):
    """lsl001006/ZONE @9788584 ptp_utils.py ~24-71 (`check_image_size`, side_multiple 32, max_size 512), re-derived:
    a side above 512 -> the longest side becomes 512 and the other `int(side · 512 / longest)`, PIL's `resize`
    with its default filter; then black padding to the next multiple of 32, `padding // 2` first (ImageOps.expand
    with (x // 2, 0, x − x // 2, 0), then (0, y // 2, 0, y − y // 2))."""
    import math

    import numpy as np
    from PIL import Image, ImageOps

    rng = np.random.default_rng(width * 1000 + height)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    picture = Image.fromarray(pixels)
    if width > 512 or height > 512:
        size = (512, int(height * 512 / width)) if width > height else (int(width * 512 / height), 512)
        picture = picture.resize(size)
    w, h = picture.size
    x, y = math.ceil(w / 32) * 32 - w, math.ceil(h / 32) * 32 - h
    picture = ImageOps.expand(ImageOps.expand(picture, (x // 2, 0, x - x // 2, 0), fill="black"),
                              (0, y // 2, 0, y - y // 2), fill="black")
    expected = torch.from_numpy(np.asarray(picture).copy()).permute(2, 0, 1).float() / 255
    ours = zone.check_image_size(torch.from_numpy(pixels).permute(2, 0, 1).float() / 255)
    assert ours.shape == expected.shape and ours.shape[1] % 32 == 0 and ours.shape[2] % 32 == 0
    assert max(ours.shape[1:]) <= 512
    torch.testing.assert_close(ours, expected, atol=1e-6, rtol=0)

def test_morphology():
    ring = disk((32, 32), (16, 16), 8) & ~disk((32, 32), (16, 16), 4)
    assert torch.equal(zone.fill_holes(ring[None])[0], disk((32, 32), (16, 16), 8))
    gap = square((32, 32), 8, 4, 10) | square((32, 32), 8, 16, 10)  # two squares 2 px apart
    closed = zone.close(gap[None], 2)[0]
    assert closed[10, 14] and closed[10, 15] and not gap[10, 14]
    assert torch.equal(zone.erode(zone.dilate(square((32, 32), 8, 8, 8)[None], 3), 3)[0], square((32, 32), 8, 8, 8))
    assert zone.scaled_px(200, (512, 512)) == 200 and zone.scaled_px(200, (64, 96)) == 25 and zone.scaled_px(1, (8, 8)) == 1


# ------------------------------------------------------------------------------------------- the official classifier
def test_the_shipped_checkpoint_is_zones_file_with_its_notice():
    digest = hashlib.sha256(classifier.CHECKPOINT.read_bytes()).hexdigest()
    assert digest == classifier.CHECKPOINT_SHA256  # ckpts/action_classifier.pth of lsl001006/ZONE @9788584
    mlp = classifier.ActionMLP()
    mlp.load_state_dict(torch.load(classifier.CHECKPOINT, map_location="cpu", weights_only=True))  # strict: all keys
    notice = (classifier.CHECKPOINT.parent / "ACTION_CLASSIFIER_NOTICE.md").read_text()
    assert "Apache License" in notice and digest in notice


@pytest.mark.parametrize("best_tokens, label", [((3, 7, 10), "remove"), ((12, 7, 10), "change"), ((3, 9, 2), "add")])
def test_official_readout_takes_the_class_whose_best_token_comes_last(best_tokens, label):
    """lsl001006/ZONE msk_from_attn.py ~124-130 and ~108-116, its two lines reproduced here as the reference."""
    logits = torch.zeros(1, 77, 3)
    for cls, token in enumerate(best_tokens):
        logits[0, token, cls] = 1.0 + cls
    _, predicted = torch.max(logits, 1)
    mapper = {"0": "CHANGE", "1": "ADD", "2": "REMOVE"}
    official = mapper[str(predicted[0].argmax().item())].lower()
    assert classifier.official_readout(logits) == [official] == [label]


def wide_text_encoder(tokenizer):
    """A random CLIP text encoder of SD-1.5's width (768) on the tiny tokenizer's vocabulary."""
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    return CLIPTextModel(CLIPTextConfig(vocab_size=tokenizer.vocab_size, hidden_size=768, intermediate_size=3072,
                                        num_attention_heads=12, num_hidden_layers=1, max_position_embeddings=77)).eval()


def official_cls_predict(state: dict, tokenizer, text_encoder, text: str) -> str:
    """ZONE's own read-out, re-derived from lsl001006/ZONE @9788584 msk_from_attn.py ~101-133 (`MLPClassifier`,
    `tensor2label`, `cls_predict`): the instruction padded to 77 tokens, `text_encoder(input_ids, attn_mask)[0]`
    (its attention mask passed), fc1 -> ReLU -> fc2 on every token, `torch.max(outputs, 1)` (for each class the
    token of its highest logit), then the argmax of those three token indices, {0: CHANGE, 1: ADD, 2: REMOVE}.
    The MLP is written out from the checkpoint's tensors, not with our ActionMLP."""
    encodings = tokenizer(text, padding="max_length", truncation=True, max_length=77, return_tensors="pt")
    with torch.no_grad():
        embeddings = text_encoder(encodings["input_ids"], encodings["attention_mask"])[0]  # [1, 77, 768]
        hidden = torch.relu(embeddings @ state["fc1.weight"].T + state["fc1.bias"])
        outputs = hidden @ state["fc2.weight"].T + state["fc2.bias"]  # [1, 77, 3]
    _, predicted = torch.max(outputs, 1)  # [1, 3] token indices
    return {"0": "CHANGE", "1": "ADD", "2": "REMOVE"}[str(predicted[0].argmax().item())].lower()


CLASSIFIED = ["remove the cat", "add a red hat to him", "turn the ball blue", "make it snow", "give him a beard",
              "take away the cup", "put a dog on the sofa", "change the sky to sunset", "delete the car",
              "make the dog a golden statue", "insert a lamp", "replace the apple with an orange"]


def test_auto_picks_the_official_classifier_for_a_real_width_model_and_the_rules_for_tiny():
    """`auto` on a 768-wide text encoder is the shipped checkpoint read out as ZONE's `cls_predict` does: the same
    label for every instruction (of at least two different labels, so the comparison can tell read-outs apart)."""
    tokenizer = build_tiny_tokenizer()
    wide = SimpleNamespace(tokenizer=tokenizer, text_encoder=wide_text_encoder(tokenizer))
    official = parts.action_classifier("auto", "timbrooks/instruct-pix2pix", wide)
    assert isinstance(official, classifier.OfficialActionClassifier)
    state = torch.load(classifier.CHECKPOINT, map_location="cpu", weights_only=True)
    ours = [official(text) for text in CLASSIFIED]
    reference = [official_cls_predict(state, tokenizer, wide.text_encoder, text) for text in CLASSIFIED]
    print(dict(zip(CLASSIFIED, reference)))
    assert ours == reference and len(set(reference)) >= 2
    tiny = SimpleNamespace(tokenizer=tokenizer, text_encoder=build_tiny_text_encoder(tokenizer, 32))
    rules = parts.action_classifier("auto", "tiny", tiny)
    assert parts.classifier_name(rules, "auto") == "keyword rules" and rules("remove the cat") == "remove"
    assert parts.classifier_name(parts.action_classifier("add", "tiny", tiny), "add") == "fixed action 'add'"
    with pytest.raises(EditorError, match="reads 768-wide CLIP text embeddings but this model's text encoder gives 32"):
        parts.action_classifier("official", "tiny", tiny)


# ------------------------------------------------------------------------------------------- the official preset
@torch.no_grad()
def test_the_official_preset_ends_dpm_solver_at_sigma_min_as_the_diffusers_zone_pins():
    """lsl001006/ZONE requirements.txt pins diffusers==0.18.0, whose DPMSolverMultistepScheduler (it has no
    `final_sigmas_type`) takes its last step to t = 0, the training schedule's smallest σ; diffusers today ends at
    σ = 0 unless built with `final_sigmas_type="sigma_min"`. The preset's fused edit from noise is diffusers' own
    IP2P pipeline with that scheduler, `from_config` of the model's (inference.py ~15); our default is the other."""
    from dataclasses import replace

    from diffusers import DPMSolverMultistepScheduler, StableDiffusionInstructPix2PixPipeline

    from nerf_edit.config.presets import official_zone_config
    from nerf_edit.models.ip2p import InstructPix2Pix
    from nerf_edit.models.tiny import build_tiny_ip2p_pipeline
    from nerf_edit.zone.localizer import ZoneLocalizer
    from nerf_edit.zone.parts import ZoneParts

    pipe = build_tiny_ip2p_pipeline()
    image = torch.rand(1, 3, 32, 48, generator=torch.Generator().manual_seed(1))

    def diffusers_edit(final_sigmas_type):
        scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, final_sigmas_type=final_sigmas_type)
        official = StableDiffusionInstructPix2PixPipeline(**{**pipe.components, "scheduler": scheduler})
        official.set_progress_bar_config(disable=True)
        return official("turn it red", image=image, num_inference_steps=6, guidance_scale=7.5, image_guidance_scale=1.5,
                        generator=torch.Generator().manual_seed(3), output_type="latent").images

    def our_edit(config):
        ip2p = InstructPix2Pix(pipe)
        encoded = ip2p.encode_inputs(image, image)
        noise = ip2p.draw_noise(image, torch.Generator().manual_seed(3))
        no_fusion = ZoneParts(fusion=None, segmenter=None, classify=lambda instruction: "change")
        return ZoneLocalizer(config, ip2p, no_fusion).fused_edit(encoded, "turn it red", 1.0, noise).latents

    preset = official_zone_config(model="tiny", steps=6)
    assert preset.zone.final_sigmas == "sigma_min" and preset.zone.sampler == "dpm-solver++"
    sigma_min, zero = diffusers_edit("sigma_min"), diffusers_edit("zero")
    assert (sigma_min - zero).abs().max() > 1e-2  # the two ends differ: the comparison below can fail
    torch.testing.assert_close(our_edit(preset), sigma_min, rtol=1e-4, atol=1e-4)
    default = replace(preset, zone=replace(preset.zone, final_sigmas="zero"))
    assert ZoneConfig().final_sigmas == "zero"
    torch.testing.assert_close(our_edit(default), zero, rtol=1e-4, atol=1e-4)
