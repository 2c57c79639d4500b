import sys

import numpy as np
import pytest
import torch
from PIL import Image

from nerf_edit.config.editor import EditorConfig
from nerf_edit.config.zone import ZoneConfig
from nerf_edit.core.io import atomic_save_image, load_image
from nerf_edit_scripts import edit_image
from nerf_edit_scripts.edit_image import EditImage


@pytest.fixture()
def images(tmp_path):
    folder = tmp_path / "in"
    generator = torch.Generator().manual_seed(0)
    atomic_save_image(folder / "a.png", torch.rand(3, 30, 42, generator=generator))  # not multiples of 8
    atomic_save_image(folder / "b.png", torch.rand(3, 32, 32, generator=generator))
    return folder


def test_folder_round_trip(images, tmp_path):
    out = tmp_path / "out"
    EditImage(input=images, instruction="turn the ball blue", output=out, settings=EditorConfig(model="tiny", device="cpu", steps=2)).main()
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"{s}_{kind}.png" for s in "ab" for kind in ("edited", "mask", "relevance")]
    original = load_image(images / "a.png")
    edited = load_image(out / "a_edited.png")
    assert edited.shape == original.shape == (3, 30, 42)
    # the mask overlay is the input where the mask is off, and tinted red where it is on
    overlay = np.asarray(Image.open(out / "a_mask.png")).astype(int)
    plain = np.asarray(Image.open(images / "a.png")).astype(int)
    tinted = (overlay != plain).any(-1)
    assert 0 < tinted.mean() < 1
    # pixels outside the mask are the input's
    unchanged = (load_image(out / "a_edited.png") == original).all(0).numpy()
    assert unchanged[~tinted].all()
    relevance = np.asarray(Image.open(out / "a_relevance.png"))
    assert relevance.shape == (30, 42, 3)


def test_zone_cli_writes_rough_refined_and_result_pictures(images, tmp_path, capsys):
    out = tmp_path / "out"
    zone = ZoneConfig(fusion_model="tiny:1", segmenter="tiny", sam_points_per_side=4)
    EditImage(input=images / "a.png", instruction="remove the ball", output=out, editor="zone",
              settings=EditorConfig(model="tiny", device="cpu", steps=2, zone=zone)).main()
    assert "a: remove edit" in capsys.readouterr().out
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"a_{kind}.png" for kind in ("canvas", "edited", "mask", "refined_mask", "relevance", "rough_mask")]
    original = load_image(images / "a.png")
    edited = load_image(out / "a_edited.png")
    final = (np.asarray(Image.open(out / "a_mask.png")).astype(int) != np.asarray(Image.open(images / "a.png")).astype(int)).any(-1)
    unchanged = (edited == original).all(0).numpy()
    assert unchanged[~final].all()  # outside ZONE's final mask the picture is the input's


def test_zones_size_rule_edits_and_writes_the_padded_image(images, tmp_path):
    """With ZONE's size rule (the zone-official preset's) a 42 x 30 input is edited and written at 64 x 32, padded
    black as lsl001006/ZONE ptp_utils.py ~53-69 does (11 columns left and right, one row above and below): the mask
    overlay is drawn on that padded input (green and blue halved where the mask tints it red, as `overlay`)."""
    out = tmp_path / "out"
    zone = ZoneConfig(fusion_model="none", segmenter="none")
    EditImage(input=images / "a.png", instruction="make it red", output=out, editor="zone", zone_size_rule=True,
              settings=EditorConfig(model="tiny", device="cpu", steps=2, zone=zone)).main()
    assert load_image(out / "a_edited.png").shape == (3, 32, 64) and load_image(out / "a_canvas.png").shape == (3, 32, 64)
    padded = torch.nn.functional.pad(load_image(images / "a.png"), (11, 11, 1, 1)).permute(1, 2, 0) * 255
    drawn = np.asarray(Image.open(out / "a_mask.png")).astype(float)  # [32, 64, 3]
    tinted = (np.abs(drawn - padded.numpy()) > 1).any(-1)
    expected = np.where(tinted[..., None], 0.5 * padded.numpy(), padded.numpy())[..., 1:]  # green, blue
    assert np.abs(drawn[..., 1:] - expected).max() <= 1


def test_zone_localizer_flag_reaches_the_relevance_editor(images, tmp_path):
    import tyro

    out = tmp_path / "out"
    command = tyro.cli(EditImage, args=["--input", str(images / "b.png"), "--instruction", "make it red",
                                        "--output", str(out), "--localizer", "zone", "--model", "tiny", "--device",
                                        "cpu", "--steps", "2", "--zone.fusion-model", "none", "--zone.segmenter", "none"])
    assert command.settings.localizer == "zone" and command.editor == "relevance"
    command.main()
    assert {"b_rough_mask.png", "b_refined_mask.png", "b_edited.png"} <= {p.name for p in out.iterdir()}


# Bad input (one line, exit 2, nothing written) is covered for every command in test_cli_usage_errors.py.


def test_existing_outputs_are_replaced_whole(images, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "b_edited.png").write_bytes(b"old")
    EditImage(input=images / "b.png", instruction="make it red", output=out, settings=EditorConfig(model="tiny", device="cpu", steps=1)).main()
    assert load_image(out / "b_edited.png").shape == (3, 32, 32)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_vimaedit_cli_flags_reach_the_editor_and_keep_the_background(images, tmp_path):
    """nerf-edit-image --editor vimaedit --source-prompt ... --blend-words ...: with tiny SD-1.5, CLIP and
    IP-Adapter built from code; outside the written mask the edit is the input."""
    import tyro

    out = tmp_path / "out"
    command = tyro.cli(EditImage, args=[
        "--input", str(images / "b.png"), "--instruction", "a blue ball on a floor", "--output", str(out),
        "--editor", "vimaedit", "--source-prompt", "a red ball on a floor", "--blend-words", "red blue",
        "--device", "cpu", "--vimaedit.model", "tiny", "--vimaedit.ip-adapter", "tiny", "--vimaedit.clip-model",
        "tiny", "--vimaedit.steps", "4"])
    command.main()
    assert command.settings.vimaedit.source_prompt == "a red ball on a floor"
    assert command.settings.vimaedit.blend_words == "red blue"
    original, edited = load_image(images / "b.png"), load_image(out / "b_edited.png")
    mask = (np.asarray(Image.open(out / "b_mask.png")).astype(int) != np.asarray(Image.open(images / "b.png")).astype(int)).any(-1)
    unchanged = (edited == original).all(0).numpy()
    assert unchanged[~mask].all() and not unchanged.all()


def test_vimaedit_localizer_flag_reaches_the_relevance_editor(images, tmp_path):
    import tyro

    out = tmp_path / "out"
    command = tyro.cli(EditImage, args=["--input", str(images / "b.png"), "--instruction", "make the ball red",
                                        "--output", str(out), "--localizer", "vimaedit", "--model", "tiny",
                                        "--device", "cpu", "--steps", "3"])
    command.main()
    relevance = np.asarray(Image.open(out / "b_relevance.png"))
    original, edited = load_image(images / "b.png"), load_image(out / "b_edited.png")
    mask = (np.asarray(Image.open(out / "b_mask.png")).astype(int) != np.asarray(Image.open(images / "b.png")).astype(int)).any(-1)
    assert relevance.shape == (32, 32, 3) and 0 < mask.mean() < 1  # a grounding mask, not the whole image
    assert (edited == original).all(0).numpy()[~mask].all()


def parsed(monkeypatch, *argv) -> EditImage:
    """What `nerf-edit-image ARGV` parses to (its run is replaced: no model loads)."""
    seen = []
    monkeypatch.setattr(sys, "argv", ["nerf-edit-image", *argv])
    monkeypatch.setattr(EditImage, "validate", lambda self: None)
    monkeypatch.setattr(EditImage, "main", lambda self: seen.append(self))
    edit_image.entrypoint()
    return seen[0]


def test_a_preset_starts_from_the_official_settings_and_flags_override_it(monkeypatch):
    plain = parsed(monkeypatch, "--input", "a.png", "--instruction", "give him a hat")
    assert (plain.editor, plain.settings.steps, plain.settings.zone.sampler) == ("relevance", 100, "ddim")
    zone = parsed(monkeypatch, "--preset", "zone-official", "--input", "a.png", "--instruction", "give him a hat")
    settings = zone.settings
    assert zone.editor == "zone" and zone.instruction == "give him a hat"
    assert (settings.steps, settings.guidance_scale, settings.image_guidance_scale) == (20, 7.5, 1.5)
    assert settings.zone.sampler == "dpm-solver++" and settings.zone.attention_threshold == 108.0
    # the official smoother compares grey levels (utils/mask_utils.py ~252-255); its diffusers 0.18 ends at σ_min
    assert settings.zone.edge_difference == "grey" and settings.zone.final_sigmas == "sigma_min"
    assert zone.zone_size_rule and not plain.zone_size_rule  # ptp_utils.check_image_size, applied before the edit
    mine = parsed(monkeypatch, "--input", "a.png", "--steps", "30", "--preset=zone-official", "--instruction", "x")
    assert mine.settings.steps == 30 and mine.settings.zone.sampler == "dpm-solver++"  # a flag wins over the preset
    vima = parsed(monkeypatch, "--preset", "vimaedit-official", "--input", "a.png", "--instruction", "a dog")
    assert vima.editor == "vimaedit" and not vima.settings.vimaedit.composite
    assert (vima.settings.vimaedit.ip_ordering, vima.settings.vimaedit.timestep_offset) == ("official", 1)


def test_an_unknown_preset_is_one_line(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["nerf-edit-image", "--preset", "zone-paper", "--input", "a.png", "--instruction", "x"])
    with pytest.raises(SystemExit) as info:
        edit_image.entrypoint()
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and err == ["error: unknown --preset 'zone-paper': use one of ['vimaedit-official', "
                                            "'zone-official']"]
