"""nerf-edit-preview: the 2D preview of a 3D edit (scripts/preview.py), run through its console entry point.

Every cell the command saves is checked against the editor called directly, as the 3D method calls it, for that
row's view, settings and seed: relevance = editor.relevance(photo, prompt), mask = relevance >= τ, edit =
editor.edit(photo, prompt, mask=mask, strength=s, generator=seeded). The photos are read here from the scene's files,
so a preview that edits the wrong view, ignores a setting or resizes a view fails. On a 6-view 32-px synthetic scene
with one view of another size (40x24, as a phone capture's odd frame), with colorkey (no model) and the tiny IP2P.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import itertools
import json
import re
import shlex
import shutil
import sys
from pathlib import Path
from typing import Optional
from urllib.parse import unquote

import numpy as np
import pytest
import torch
from PIL import Image

from nerf_edit.config.editor import EditorConfig
from nerf_edit.core.io import load_image
from nerf_edit.editing.editor import Editor, EditResult, editor_class
from nerf_edit.eval.synthetic import make_scene
from nerf_edit_methods.editor_settings import wys_editing
from nerf_edit_scripts import preview

PROMPT = "turn the red ball blue"
ODD = "frame_00002"  # resized to 40x24 in the scene: edited at its own size
TINY = ["--model", "tiny", "--device", "cpu", "--steps", "1"]
PNG_STEP = 0.5 / 255 + 1e-6  # an 8-bit PNG holds a value to within half a level


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    root = make_scene(tmp_path_factory.mktemp("preview") / "scene", num_views=6, size=32)
    odd = root / "images" / f"{ODD}.png"
    Image.open(odd).convert("RGB").resize((40, 24), Image.Resampling.BILINEAR).save(odd)
    return root


def run_preview(*argv) -> str:
    """`nerf-edit-preview ARGV` in this process (sys.argv, the console script's entry point); -> its stdout."""
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out):
        patch.setattr(sys, "argv", ["nerf-edit-preview", *map(str, argv)])
        preview.entrypoint()
    return out.getvalue()


@pytest.fixture(scope="module")
def colorkey_run(scene, tmp_path_factory):
    output = tmp_path_factory.mktemp("colorkey") / "preview"
    stdout = run_preview("--data", scene, "--prompt", PROMPT, "--editor", "colorkey", "--view-names", "frame_00001",
                         ODD, "--taus", "0.3", "0.5", "--strengths", "0.5", "0.98", "--output", output)
    return output, stdout, "colorkey", wys_editing(), ((7.5,), (1.5,), (0.3, 0.5), (0.5, 0.98))


@pytest.fixture(scope="module")
def tiny_run(scene, tmp_path_factory):
    """The tiny IP2P (random weights) through WYS's relevance editor; s_I and τ off the editor's defaults (1.5, 0.5),
    so a preview that ignored them would differ from the direct call."""
    output = tmp_path_factory.mktemp("tiny") / "preview"
    stdout = run_preview("--data", scene, "--prompt", "turn the ball blue", *TINY, "--view-names", ODD,
                         "--guidance-scales", "5", "9", "--image-guidance-scales", "2.0", "--taus", "0.4",
                         "--strengths", "0.3", "0.98", "--output", output)
    config = dataclasses.replace(wys_editing(), model="tiny", device="cpu", steps=1)
    return output, stdout, "relevance", config, ((5.0, 9.0), (2.0,), (0.4,), (0.3, 0.98))


def manifest(output: Path) -> dict:
    return json.loads((output / "preview.json").read_text())


def photo_of(scene: Path, view: str) -> torch.Tensor:
    return load_image(scene / "images" / f"{view}.png")


def direct(editor, photo: torch.Tensor, prompt: str, row: dict, seed: int = 0):
    """What the 3D method's editor gives for this view and these settings. -> relevance [H, W], mask, result"""
    editor.config.guidance_scale = row["guidance_scale"]
    editor.config.image_guidance_scale = row["image_guidance_scale"]
    editor.config.tau = row["tau"]
    relevance = editor.relevance(photo[None], prompt, generator=torch.Generator().manual_seed(seed))[0]
    mask = relevance >= row["tau"]
    result = editor.edit(photo[None], prompt, mask=mask[None], strength=row["strength"],
                         generator=torch.Generator().manual_seed(seed))
    return relevance, mask, result


def turbo(relevance: torch.Tensor) -> np.ndarray:
    from matplotlib import colormaps

    return (np.clip(colormaps["turbo"](relevance.clamp(0, 1).numpy())[..., :3], 0, 1) * 255).round().astype(np.uint8)


@pytest.mark.parametrize("run", ["colorkey_run", "tiny_run"])
def test_every_cell_is_the_editors_output_for_its_view_settings_and_seed(run, scene, request):
    output, _, name, config, _ = request.getfixturevalue(run)
    editor = editor_class(name)(config)
    rows = manifest(output)["rows"]
    prompt = manifest(output)["prompt"]
    for row in rows:
        cells = {column: output / path for column, path in row["cells"].items()}
        photo = photo_of(scene, row["view"])
        relevance, mask, result = direct(editor, photo, prompt, row)
        assert torch.equal(load_image(cells["photo"]), photo), row
        assert np.array_equal(np.asarray(Image.open(cells["relevance"]).convert("RGB")), turbo(relevance)), row
        drawn = np.asarray(Image.open(cells["mask"])) > 127
        assert np.array_equal(drawn, mask.numpy()) and np.array_equal(drawn, result.mask[0].numpy()), row
        edit = load_image(cells["edit"])
        assert edit.shape == photo.shape and (edit - result.images[0]).abs().max() <= PNG_STEP, row
    sizes = {row["view"]: load_image(output / row["cells"]["edit"]).shape[1:] for row in rows}
    assert sizes[ODD] == (24, 40) and all(size == (32, 32) for view, size in sizes.items() if view != ODD)


def test_the_edits_differ_by_setting(tiny_run, colorkey_run):
    """The grid is no decoration: the tiny IP2P's edits change with s_T and strength, colorkey's masks with τ."""
    output, *_ = tiny_run
    edits = {(r["guidance_scale"], r["strength"]): load_image(output / r["cells"]["edit"]) for r in manifest(output)["rows"]}
    assert len(edits) == 4
    for a, b in itertools.combinations(edits.values(), 2):
        assert not torch.equal(a, b)
    output, *_ = colorkey_run
    masks = {(r["view"], r["tau"]): np.asarray(Image.open(output / r["cells"]["mask"])) for r in manifest(output)["rows"]}
    assert masks[(ODD, 0.3)].sum() > masks[(ODD, 0.5)].sum() > 0


@pytest.mark.parametrize("run", ["colorkey_run", "tiny_run"])
def test_the_grid_is_every_combination_and_the_page_lists_every_cell(run, request):
    output, stdout, _, _, lists = request.getfixturevalue(run)
    rows = manifest(output)["rows"]
    settings = [tuple(r[k] for k in ("guidance_scale", "image_guidance_scale", "tau", "strength")) for r in rows]
    views = list(dict.fromkeys(r["view"] for r in rows))
    assert settings == list(itertools.product(*lists)) * len(views)  # views × settings, in that order
    page = (output / "index.html").read_text()
    listed = [unquote(src) for src in re.findall(r'<img src="([^"]+)"', page)]
    cells = [path for r in rows for path in r["cells"].values()]
    assert listed == cells
    assert sorted(str(p.relative_to(output)) for p in (output / "cells").iterdir()) == sorted(cells)
    for r in rows:
        assert f"<b>{r['view']}</b><br>#{r['number']}: s_T {r['guidance_scale']:g}, s_I {r['image_guidance_scale']:g}, " \
               f"tau {r['tau']:g}, strength {r['strength']:g}</td>" in page
    sheet = Image.open(output / "preview.png")
    assert sheet.height >= len(rows) * 160 and sheet.width >= 4 * 160
    command = manifest(output)["command"]
    assert command in stdout.splitlines() and f'<pre id="command">{command.replace(chr(39), "&#x27;")}</pre>' in page


def test_the_printed_command_is_the_chosen_settings_as_ns_train_flags(colorkey_run, scene):
    """Default choice: the middle of each list (upper of two); strength s becomes the noise range [0.02, s]. The
    line parses as `ns-train wys` arguments into those settings."""
    from nerf_edit_methods.configs import method_config

    _, stdout, *_ = colorkey_run
    expected = (f"ns-train wys --data {scene} --pipeline.prompt '{PROMPT}' --pipeline.editor colorkey "
                "--pipeline.editing.guidance-scale 7.5 --pipeline.editing.image-guidance-scale 1.5 "
                "--pipeline.editing.tau 0.5 --pipeline.lower-bound 0.02 --pipeline.upper-bound 0.98")
    assert expected in stdout.splitlines()
    config = method_config("wys", shlex.split(expected)[2:]).pipeline
    assert (config.prompt, config.editor, config.editing.tau, config.editing.image_guidance_scale) == (PROMPT, "colorkey", 0.5, 1.5)
    assert (config.lower_bound, config.upper_bound) == (0.02, 0.98)


def test_pick_and_editor_settings_reach_the_command(scene, tmp_path):
    stdout = run_preview("--data", scene, "--prompt", PROMPT, "--editor", "colorkey", "--views", "1", "--taus", "0.3",
                         "0.6", "--strengths", "0.01", "0.5", "--pick", "3", "--dilate-px", "2", "--output", tmp_path)
    command = shlex.split(stdout.splitlines()[-1])
    flags = dict(zip(command[2::2], command[3::2]))
    assert flags["--pipeline.editing.tau"] == "0.6" and flags["--pipeline.editing.dilate-px"] == "2"
    assert (flags["--pipeline.lower-bound"], flags["--pipeline.upper-bound"]) == ("0.01", "0.01")  # #3: τ 0.6, s 0.01
    assert "--pipeline.editing.device" not in flags


@pytest.mark.parametrize("argv, expected", [
    ([], ["frame_00000", "frame_00002", "frame_00003", "frame_00005"]),  # default 4 of 6, spread over the capture
    (["--views", "2"], ["frame_00001", "frame_00004"]),
    (["--views", "1"], ["frame_00003"]),
    (["--views", "9"], [f"frame_{i:05d}" for i in range(6)]),
    (["--view-names", "frame_00004", "frame_00001"], ["frame_00004", "frame_00001"]),  # in the order named
])
def test_views_are_spread_over_the_capture_or_named(argv, expected, scene, tmp_path):
    run_preview("--data", scene, "--prompt", PROMPT, "--editor", "colorkey", "--taus", "0.5", "--strengths", "0.98",
                *argv, "--output", tmp_path)
    rows = manifest(tmp_path)["rows"]
    assert [r["view"] for r in rows] == expected
    for r in rows:
        assert torch.equal(load_image(tmp_path / r["cells"]["photo"]), photo_of(scene, r["view"]))


class SpyEditor(Editor):
    """A plug-in editor (`test_preview:SpyEditor`) that records what each edit was given: relevance is a
    left-to-right ramp, the edit paints the mask white."""

    calls: list = []

    def relevance(self, images, instruction, conditioning=None, generator=None):
        ramp = torch.linspace(0, 1, images.shape[-1])
        return ramp.expand(images.shape[0], images.shape[-2], images.shape[-1]).clone()

    def run(self, request) -> EditResult:
        c = self.config
        SpyEditor.calls.append((c.guidance_scale, c.image_guidance_scale, c.tau, request.strength,
                                request.mask.clone(), request.images.clone()))
        return EditResult(images=torch.where(request.mask[:, None], 1.0, request.images), mask=request.mask)


def test_a_plug_in_editor_gets_every_setting_and_its_mask(scene, tmp_path):
    SpyEditor.calls.clear()
    run_preview("--data", scene, "--prompt", "anything", "--editor", "test_preview:SpyEditor", "--view-names", ODD,
                "--guidance-scales", "3", "4", "--image-guidance-scales", "1.25", "--taus", "0.25", "0.75",
                "--strengths", "0.5", "--output", tmp_path)
    photo = photo_of(scene, ODD)
    assert [call[:4] for call in SpyEditor.calls] == list(itertools.product((3.0, 4.0), (1.25,), (0.25, 0.75), (0.5,)))
    ramp = torch.linspace(0, 1, 40)
    for *_, tau, _, mask, images in SpyEditor.calls:
        assert torch.equal(mask[0], (ramp >= tau).expand(24, 40)) and torch.equal(images[0], photo)


@pytest.mark.parametrize("editor", ["global", "zone", "vimaedit"])
def test_the_other_registered_editors_preview_offline(editor, scene, tmp_path):
    """relevance and colorkey are checked cell by cell above; the rest run end to end with tiny models, and
    outside each mask the edit is the photo."""
    extra = {"zone": ["--zone.fusion-model", "none", "--zone.segmenter", "none"],
             "vimaedit": ["--vimaedit.model", "tiny", "--vimaedit.ip-adapter", "tiny", "--vimaedit.clip-model", "tiny",
                          "--vimaedit.steps", "2", "--vimaedit.source-prompt", "a red ball on a floor",
                          "--vimaedit.blend-words", "red blue"]}
    run_preview("--data", scene, "--prompt", "a blue ball on a floor", "--editor", editor, *TINY, *extra.get(editor, []),
                "--view-names", ODD, "--taus", "0.5", "--strengths", "0.98", "--output", tmp_path)
    (row,) = manifest(tmp_path)["rows"]
    photo, edit = photo_of(scene, ODD), load_image(tmp_path / row["cells"]["edit"])
    mask = torch.from_numpy(np.asarray(Image.open(tmp_path / row["cells"]["mask"])) > 127)
    assert edit.shape == photo.shape and torch.equal(edit[:, ~mask], photo[:, ~mask])


# ------------------------------------------------------------------------------------------------ bad input
@pytest.fixture()
def no_loading(monkeypatch):
    """Loading a model during a usage error fails the test: the checks come first."""
    from nerf_edit.models import ip2p, loading

    def loaded(*args, **kwargs):
        raise AssertionError("a model was loaded before the settings were checked")

    monkeypatch.setattr(ip2p.InstructPix2Pix, "from_pretrained", loaded)
    monkeypatch.setattr(loading, "load_ip2p_pipeline", loaded)


GOOD = ["--prompt", PROMPT, "--editor", "colorkey", "--output", "{out}"]
BAD = [
    (["--prompt", PROMPT, "--output", "{out}"], "no --data given: pass the scene folder"),
    (["--data", "{missing}", *GOOD], "--data '{missing}' is not a folder"),
    (["--data", "{empty}", *GOOD], "--data '{empty}' has no transforms.json"),
    (["--data", "{broken}", *GOOD], "is not a nerfstudio transforms file"),
    (["--data", "{scene}", *GOOD, "--view-names", "frame_00001", "frame_00099"], "the scene has no view 'frame_00099'"),
    (["--data", "{scene}", *GOOD, "--views", "0"], "--views must be an integer >= 1, got 0"),
    (["--data", "{scene}", *GOOD, "--views", "2", "--view-names", "frame_00001"], "pass --views or --view-names, not both"),
    (["--data", "{scene}", *GOOD, "--taus"], "--taus is empty: give at least one value"),
    (["--data", "{scene}", *GOOD, "--strengths"], "--strengths is empty"),
    (["--data", "{scene}", *GOOD, "--guidance-scales"], "--guidance-scales is empty"),
    (["--data", "{scene}", *GOOD, "--taus", "0.5", "1.5"], "--taus must be in [0, 1], got 1.5"),
    (["--data", "{scene}", *GOOD, "--strengths", "0"], "--strengths must be in (0, 1], got 0"),
    (["--data", "{scene}", *GOOD, "--strengths", "1.2"], "--strengths must be in (0, 1], got 1.2"),
    (["--data", "{scene}", *GOOD, "--guidance-scales", "-1"], "--guidance-scales must be >= 0, got -1"),
    (["--data", "{scene}", *GOOD, "--image-guidance-scales", "nan"], "--image-guidance-scales must be a finite number"),
    (["--data", "{scene}", *GOOD, "--tau", "0.3"], "--tau: the preview tries a grid of these: use --taus 0.3"),
    (["--data", "{scene}", *GOOD, "--pick", "5"], "--pick 5: the grid has settings #1 to #4"),
    (["--data", "{scene}", *GOOD, "--cell-height", "4"], "--cell-height must be an integer >= 16"),
    (["--data", "{scene}", *GOOD, "--seed", str(2**64)], "--seed 18446744073709551616 is out of range"),
    (["--data", "{scene}", *GOOD, "--steps", "0"], "--steps must be an integer >= 1"),
    (["--data", "{scene}", "--prompt", " ", "--output", "{out}"], "--prompt is empty"),
    (["--data", "{scene}", "--prompt", "make it nicer", "--editor", "colorkey", "--output", "{out}"],
     "can't read a source and a target colour"),
    (["--data", "{scene}", *GOOD, "--editor", "bogus"], "unknown --editor 'bogus'"),
    (["--data", "{scene}", "--prompt", "x", "--model", "some-org/not-downloaded", "--output", "{out}"],
     "'some-org/not-downloaded' is not available"),
    (["--data", "{scene}", *GOOD[:-1], "{file.txt}"], "is an existing file, not a folder"),
    (["--data", "{lost_image}", *GOOD, "--views", "6"], "listed in transforms.json does not exist"),
]


@pytest.fixture()
def inputs(scene, tmp_path) -> Path:
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "transforms.json").write_text('{"camera_model": "OPENCV"}')
    (tmp_path / "file.txt").write_text("a file where a folder is expected")
    shutil.copytree(scene, tmp_path / "scene")
    shutil.copytree(scene, tmp_path / "lost_image")
    (tmp_path / "lost_image" / "images" / "frame_00003.png").unlink()
    return tmp_path


def fill(text: str, root: Path) -> str:
    return re.sub(r"\{([^{}]+)\}", lambda m: str(root / m.group(1)), text)


@pytest.mark.parametrize("argv, message", BAD, ids=[" ".join(a[-3:])[-50:] for a, _ in BAD])
def test_bad_input_is_one_error_line_and_exit_2(argv, message, inputs, no_loading, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["nerf-edit-preview", *[fill(a, inputs) for a in argv]])
    with pytest.raises(SystemExit) as info:
        preview.entrypoint()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert info.value.code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: ") and fill(message, inputs) in lines[0], err
    assert not (inputs / "out").exists()  # nothing written


def test_an_editor_without_a_relevance_map_is_one_line(scene, tmp_path, monkeypatch, capsys):
    """The 3D method cuts its mask from the relevance; an editor that gives none (ViMAEdit without blend words)
    stops with one line."""

    def no_map(self, images, instruction, conditioning=None, generator=None) -> Optional[torch.Tensor]:
        return None

    monkeypatch.setattr(SpyEditor, "relevance", no_map)
    monkeypatch.setattr(sys, "argv", ["nerf-edit-preview", "--data", str(scene), "--prompt", "x", "--editor",
                                      "test_preview:SpyEditor", "--output", str(tmp_path / "out")])
    with pytest.raises(SystemExit) as info:
        preview.entrypoint()
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1 and "gave no relevance map for 'x'" in err[0]


def test_settings_default_to_the_3d_methods_editor_settings():
    command = preview.Preview(data=Path("d"), prompt="p")
    assert command.settings == wys_editing() and command.settings != EditorConfig()
