import json
import math

import numpy as np
import pytest
from PIL import Image

from nerf_edit.eval.synthetic import SceneSpec, camera_ring, load_object_masks, make_scene, render_view


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return make_scene(tmp_path_factory.mktemp("scene"), num_views=8, size=48, seed=3)


def test_same_seed_same_bytes_other_seed_other_cameras(scene, tmp_path):
    again = make_scene(tmp_path / "again", num_views=8, size=48, seed=3)
    for name in ["transforms.json", "masks.json", "images/frame_00005.png", "masks/frame_00005.png"]:
        assert (again / name).read_bytes() == (scene / name).read_bytes(), name
    other = json.loads(make_scene(tmp_path / "other", num_views=8, size=48, seed=4).joinpath("transforms.json").read_text())
    ours = json.loads((scene / "transforms.json").read_text())
    assert other["frames"][0]["transform_matrix"] != ours["frames"][0]["transform_matrix"]


def test_masks_agree_with_a_rerender(scene):
    transforms = json.loads((scene / "transforms.json").read_text())
    masks = load_object_masks(scene)
    assert len(masks) == 8
    for frame in transforms["frames"][::3]:
        rgb, labels = render_view(SceneSpec(), np.array(frame["transform_matrix"]), 48, 48, transforms["fl_x"])
        assert np.array_equal(labels, masks[frame["file_path"]])
        saved = np.asarray(Image.open(scene / frame["file_path"]), dtype=np.float64) / 255
        assert np.abs(saved - rgb).max() <= 0.5 / 255 + 1e-9


def test_masks_are_the_objects_by_colour(scene):
    """Independent check: the red ball's pixels are red, the blue cube's blue, and both are visible somewhere."""
    index = json.loads((scene / "masks.json").read_text())
    assert index["objects"]["1"]["name"] == "red_ball" and index["objects"]["2"]["name"] == "blue_cube"
    for path, labels in load_object_masks(scene).items():
        rgb = np.asarray(Image.open(scene / path), dtype=np.float64)
        for label, (bright, dim) in ((1, (0, 2)), (2, (2, 0))):
            core = eroded(labels == label)  # supersampled edges blend with neighbours
            if core.sum() > 10:
                assert (rgb[core][:, bright] > rgb[core][:, dim]).all()
    assert all((labels == k).any() for labels in load_object_masks(scene).values() for k in (1, 2))


def eroded(mask: np.ndarray) -> np.ndarray:
    core = mask.copy()
    core[1:] &= mask[:-1]
    core[:-1] &= mask[1:]
    core[:, 1:] &= mask[:, :-1]
    core[:, :-1] &= mask[:, 1:]
    return core


def test_sphere_centre_projects_onto_its_label():
    spec = SceneSpec()
    ball = spec.objects[0]
    size, focal = 64, 64 / 2 / math.tan(math.radians(25))
    for c2w in camera_ring(6, seed=0):
        camera = np.linalg.inv(c2w) @ np.array([*ball.center, 1.0])
        u = focal * camera[0] / -camera[2] + size / 2
        v = -focal * camera[1] / -camera[2] + size / 2
        _, labels = render_view(spec, c2w, size, size, focal, supersample=1)
        assert labels[int(v), int(u)] in (1, 2)  # the ball, unless the cube is in front of it


def test_cameras_vary_in_height_and_look_at_the_scene():
    heights = [pose[2, 3] for pose in camera_ring(40, seed=0)]
    assert max(heights) - min(heights) > 0.8
    for pose in camera_ring(8, seed=0):
        forward = -pose[:3, 2]
        to_centre = np.array([0, 0, 0.15]) - pose[:3, 3]
        assert np.dot(forward, to_centre / np.linalg.norm(to_centre)) > 0.999


def test_nerfstudio_reads_the_scene(scene):
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    outputs = NerfstudioDataParserConfig(data=scene).setup().get_dataparser_outputs(split="train")
    assert len(outputs.image_filenames) == math.ceil(8 * 0.9)
    assert int(outputs.cameras.width[0]) == 48
    assert "mask_filenames" not in outputs.__dict__ or outputs.mask_filenames is None  # GT masks never mask the loss


def numbers(value):
    """Every number in a JSON document, in order (strings and keys are compared separately)."""
    if isinstance(value, dict):
        return [n for key in sorted(value) for n in numbers(value[key])]
    if isinstance(value, list):
        return [n for item in value for n in numbers(item)]
    return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def test_bundled_scene_is_the_default_generator_output(tmp_path):
    """The same scene on any x86-64 CPU: numbers within 1e-9 (the file holds 10 decimals), images within one
    grey level, masks on all but a few edge pixels. Nothing depends on the last bits of floating point."""
    import json
    from pathlib import Path

    from PIL import Image

    bundled = Path(__file__).resolve().parents[2] / "data" / "synthetic"
    fresh = make_scene(tmp_path / "fresh")
    for name in ["transforms.json", "masks.json"]:
        ours, theirs = json.loads((fresh / name).read_text()), json.loads((bundled / name).read_text())
        assert json.dumps(ours, sort_keys=True).count('"') == json.dumps(theirs, sort_keys=True).count('"')
        assert [f.get("file_path") for f in ours["frames"]] == [f.get("file_path") for f in theirs["frames"]]
        np.testing.assert_allclose(numbers(ours), numbers(theirs), rtol=0, atol=1e-9, err_msg=name)
    for index in (0, 17, 39):
        name = f"frame_{index:05d}.png"
        ours = np.asarray(Image.open(fresh / "images" / name), dtype=np.int16)
        theirs = np.asarray(Image.open(bundled / "images" / name), dtype=np.int16)
        assert np.abs(ours - theirs).max() <= 1, name
        labels, bundled_labels = (np.asarray(Image.open(root / "masks" / name)) for root in (fresh, bundled))
        assert (labels != bundled_labels).mean() <= 0.002, name
    total = sum(p.stat().st_size for p in bundled.rglob("*") if p.is_file())
    assert total < 5 * 1024 * 1024


def test_transforms_json_has_rounded_numbers(tmp_path):
    text = (make_scene(tmp_path / "scene", num_views=3, size=16)).joinpath("transforms.json").read_text()
    decimals = [len(token.split(".")[1].rstrip(",]")) for token in text.split() if "." in token and token[0] in "-0123456789"]
    assert decimals and max(decimals) <= 10
