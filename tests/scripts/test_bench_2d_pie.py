"""nerf-edit-bench-2d on a PIE-Bench-shaped folder made by our generator, with tiny random-weight models: every
metric against a direct computation, resuming, and one-line usage errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nerf_edit.eval import pie_bench
from nerf_edit_scripts import bench_2d_pie, make_pie_bench

TINY_ARGS = ["--vimaedit.model", "tiny", "--vimaedit.ip-adapter", "tiny", "--vimaedit.clip-model", "tiny",
             "--vimaedit.steps", "6", "--dino-model", "tiny", "--clip-model", "tiny", "--lpips", "tiny", "--device", "cpu"]


def run_cli(monkeypatch, entrypoint, *args):
    monkeypatch.setattr(sys, "argv", ["prog", *map(str, args)])
    entrypoint()


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """The generated folder and one finished run over it."""
    folder = tmp_path_factory.mktemp("pie")
    data, output = folder / "data", folder / "out"
    make_pie_bench.write_pie_bench(data, count=3, size=64, seed=0)
    patch = pytest.MonkeyPatch()
    try:
        run_cli(patch, bench_2d_pie.entrypoint, "--data", data, "--output", output, *TINY_ARGS)
    finally:
        patch.undo()
    return data, output


def rows(output):
    return [json.loads(line) for path in sorted(output.glob("rows-*.jsonl")) for line in path.read_text().splitlines()]


def test_rle_round_trip_and_layout():
    mask = np.zeros((5, 7), dtype=bool)
    mask[1, 2:6] = mask[3, 0] = mask[4, 6] = True
    rle = pie_bench.encode_rle(mask)
    assert rle == [9, 4, 21, 1, 34, 1]  # (start, length) over row-major pixels
    assert np.array_equal(pie_bench.decode_rle(rle, (5, 7)), mask)
    border = pie_bench.evaluation_mask(np.zeros((4, 4), dtype=bool))
    assert border.sum() == 12 and not border[1:3, 1:3].any()


def test_runner_writes_images_rows_and_table(bench):
    data, output = bench
    items = pie_bench.load_mapping(data)
    assert [row["key"] for row in rows(output)] == [item.key for item in items]
    for item in items:
        assert bench_2d_pie.edited_path(output, item).is_file()
        assert item.source_prompt.startswith("a ") and "[" not in item.source_prompt
    summary = json.loads((output / "summary.json").read_text())
    assert summary["images"] == 3 and summary["published"]["ViMAEdit"]["psnr"] == 28.49
    assert summary["label"] == "ours: ViMAEdit, official preset"  # the default: beside the published rows
    assert "| ours: ViMAEdit, official preset (3 images) |" in (output / "summary.md").read_text()
    table = (output / "metrics.csv").read_text().splitlines()
    assert len(table) == 4 and table[0].startswith("key,image_path,structure_distance")
    means = pie_bench.summarize(rows(output))
    assert means["psnr"] == pytest.approx(np.mean([row["psnr"] for row in rows(output)]))
    assert means["mse"] == pytest.approx(1e4 * np.mean([row["mse"] for row in rows(output)]))


def load_pair(data, output, item):
    source = np.array(Image.open(data / pie_bench.IMAGES_FOLDER / item.image_path).convert("RGB"))
    edited = np.array(Image.open(bench_2d_pie.edited_path(output, item)).convert("RGB"))
    return source, edited


def test_background_metrics_against_direct_computation(bench):
    from torchmetrics.image import StructuralSimilarityIndexMeasure

    data, output = bench
    for item, row in zip(pie_bench.load_mapping(data), rows(output)):
        source, edited = load_pair(data, output, item)
        keep = ~pie_bench.evaluation_mask(pie_bench.decode_rle(item.mask_rle, source.shape[:2]))
        a = edited / 255.0 * keep[..., None]
        b = source / 255.0 * keep[..., None]
        mse = np.mean((a - b) ** 2)
        assert row["mse"] == pytest.approx(mse, rel=1e-4)
        assert row["psnr"] == pytest.approx(10 * np.log10(1 / mse), rel=1e-4)
        # PnP-Inversion's metric object (torchmetrics' SSIM; on 64² masked images it reads up to 0.12 above
        # skimage's, so the published computation is the reference)
        ssim = StructuralSimilarityIndexMeasure(data_range=1.0)(torch.from_numpy(a).permute(2, 0, 1)[None].float(),
                                                                torch.from_numpy(b).permute(2, 0, 1)[None].float())
        assert row["ssim"] == pytest.approx(float(ssim), rel=1e-4)
        assert 0 < row["lpips"] < 1


def test_identical_images_are_perfect_and_lpips_grows_with_damage():
    metrics = pie_bench.PieMetrics("tiny", "tiny", "tiny")
    rng = np.random.default_rng(0)
    source = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    mask = np.zeros((64, 64), dtype=bool)
    perfect = metrics.background(source, source, mask)
    assert perfect["mse"] == 0 and perfect["lpips"] == pytest.approx(0, abs=1e-6) and perfect["ssim"] == pytest.approx(1)
    assert metrics.structure_distance(source, source) == pytest.approx(0, abs=1e-9)
    slightly = np.clip(source.astype(int) + rng.integers(-8, 9, source.shape), 0, 255).astype(np.uint8)
    badly = np.clip(source.astype(int) + rng.integers(-80, 81, source.shape), 0, 255).astype(np.uint8)
    assert metrics.background(source, slightly, mask)["lpips"] < metrics.background(source, badly, mask)["lpips"]


def test_structure_distance_against_direct_key_self_similarity(bench):
    from torchvision.transforms import Normalize, Resize

    data, output = bench
    metrics = pie_bench.PieMetrics("tiny", "tiny", "tiny")
    vit = metrics.dino

    def keys_similarity(image):
        pixels = torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1)[None]
        pixels = Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))(Resize(224, max_size=480)(pixels))
        hidden = vit(pixel_values=pixels, output_hidden_states=True).hidden_states[-2]  # input of the last layer
        layer = [m for n, m in vit.named_modules() if n.endswith(("layers.1", "layer.1"))][0]
        keys = [m for n, m in layer.named_modules() if n.endswith(("k_proj", "attention.key"))][0](layer.layernorm_before(hidden))[0]
        norms = keys.norm(dim=-1, keepdim=True)
        return (keys @ keys.T) / (norms @ norms.T)

    item, row = pie_bench.load_mapping(data)[0], rows(output)[0]
    source, edited = load_pair(data, output, item)
    with torch.no_grad():
        expected = float(((keys_similarity(edited) - keys_similarity(source)) ** 2).mean())
    assert row["structure_distance"] == pytest.approx(expected, rel=1e-4, abs=1e-9)


def test_clip_scores_against_the_clip_model_forward(bench):
    """torchmetrics CLIPScore is 100·max(cos, 0); the cosine here comes from CLIPModel's own forward (its
    logits_per_image are exp(logit_scale)·cos), a different path from the metric's feature calls."""
    from transformers import CLIPProcessor

    data, output = bench
    metrics = pie_bench.PieMetrics("tiny", "tiny", "tiny")
    processor = CLIPProcessor(image_processor=metrics.clip_processor, tokenizer=metrics.clip_tokenizer)
    for item, row in zip(pie_bench.load_mapping(data), rows(output)):
        _, edited = load_pair(data, output, item)
        edited_part = edited * pie_bench.evaluation_mask(pie_bench.decode_rle(item.mask_rle, edited.shape[:2]))[..., None]
        for name, image in (("clip_whole", edited), ("clip_edited", edited_part.astype(np.uint8))):
            inputs = processor(text=[item.target_prompt], images=[image], return_tensors="pt", padding=True)
            with torch.no_grad():
                logits = metrics.clip(**inputs).logits_per_image[0, 0]
                cosine = float(logits / metrics.clip.logit_scale.exp())
            assert row[name] == pytest.approx(100 * max(cosine, 0.0), rel=1e-4, abs=1e-4)


def test_resume_skips_finished_images(bench, tmp_path, monkeypatch, capsys):
    data, finished = bench
    output = tmp_path / "out"
    import shutil

    shutil.copytree(finished, output)
    lines = (output / "rows-0.jsonl").read_text().splitlines()
    (output / "rows-0.jsonl").write_text("\n".join(lines[:2]) + "\n" + lines[2][:10])  # last row cut by a crash
    before = {p: p.stat().st_mtime_ns for p in (output / "images").rglob("*.png")}
    run_cli(monkeypatch, bench_2d_pie.entrypoint, "--data", data, "--output", output, *TINY_ARGS)
    printed = capsys.readouterr().out
    assert "2 already done, 1 to edit" in printed and "[1/1] 000000000002" in printed
    after = {p: p.stat().st_mtime_ns for p in (output / "images").rglob("*.png")}
    changed = [p.name for p in after if after[p] != before[p]]
    assert changed == ["000000000002.png"]
    run_cli(monkeypatch, bench_2d_pie.entrypoint, "--data", data, "--output", output, *TINY_ARGS)
    assert "3 already done, 0 to edit" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["missing", "no-mapping", "bad-mapping", "bad-editor"])
def test_usage_errors_are_one_line_exit_2(tmp_path, monkeypatch, capsys, case):
    data = tmp_path / "data"
    data.mkdir()
    args = ["--data", data, "--output", tmp_path / "out", *TINY_ARGS]
    expected = {"missing": "is not a folder", "no-mapping": "has no mapping_file.json",
                "bad-mapping": "is not a PIE-Bench mapping file", "bad-editor": "unknown --editor"}[case]
    if case == "missing":
        args[1] = tmp_path / "nowhere"
    if case == "bad-mapping":
        (data / "mapping_file.json").write_text(json.dumps({"1": {"image_path": "x.png"}}))
    if case == "bad-editor":
        make_pie_bench.write_pie_bench(data, count=1, size=32)
        args += ["--editor", "nonsense"]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(monkeypatch, bench_2d_pie.entrypoint, *args)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and err.count("\n") == 0 and expected in err
    assert not (tmp_path / "out").exists()


def test_a_row_not_made_with_the_official_settings_says_so():
    command = bench_2d_pie.BenchPie(data=Path("d"), output=Path("o"))
    assert bench_2d_pie.row_label(command) == "ours: ViMAEdit, official preset"
    command.vimaedit.composite = True
    assert bench_2d_pie.row_label(command) == "ours: ViMAEdit, composite=True (not the official run's)"
    assert bench_2d_pie.row_label(bench_2d_pie.BenchPie(data=Path("d"), output=Path("o"), editor="zone")) == "ours: zone"
