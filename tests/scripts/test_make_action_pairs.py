"""Synthetic action pairs: each instruction's motion is visible in the pictures (object centroids), held-out split."""

import numpy as np
import pytest
from PIL import Image

from nerf_edit.action.data import read_pairs
from nerf_edit_scripts.make_action_pairs import all_instructions, make_action_pairs


def centroid(path, colour: str) -> np.ndarray:
    """(column, row) centroid of the red-ball or blue-cube pixels."""
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=float)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    mask = (r > 1.8 * g) & (r > 1.8 * b) & (r > 60) if colour == "red" else (b > 1.8 * r) & (b > 1.5 * g) & (b > 60)
    rows, columns = np.nonzero(mask)
    assert len(rows) > 5, f"no {colour} object in {path}"
    return np.array([columns.mean(), rows.mean()])


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return make_action_pairs(tmp_path_factory.mktemp("pairs"), count=14, heldout=7, size=64, seed=4)


def test_split_and_vocabulary(pairs):
    train, heldout = read_pairs(pairs, "train"), read_pairs(pairs, "heldout")
    assert len(train) == 14 and len(heldout) == 7
    assert {p.instruction for p in heldout} == {p.instruction for p in train} == set(all_instructions())


def test_each_instruction_moves_its_object_as_it_says(pairs):
    for pair in read_pairs(pairs):
        words = pair.instruction.split()
        colour = "red" if "red" in words[:3] else "blue"
        before, after = centroid(pair.before, colour), centroid(pair.after, colour)
        if pair.instruction.startswith("swap"):
            other = "blue" if colour == "red" else "red"
            assert np.linalg.norm(after - centroid(pair.before, other)) < 4, pair  # took the other's place
        elif words[0] == "lift":
            assert after[1] < before[1] - 2 and abs(after[0] - before[0]) < 2, pair  # up in the image
        elif words[-1] == "left":
            assert after[0] < before[0] - 4, pair
        else:
            assert words[-1] == "right" and after[0] > before[0] + 4, pair


def test_actions_per_layout_shares_training_scenes_and_heldout_pairs_get_their_own(tmp_path):
    data = make_action_pairs(tmp_path / "pairs", count=14, heldout=7, size=32, seed=2, actions_per_layout=7)

    def before_pixels(pair) -> bytes:
        return np.asarray(Image.open(pair.before).convert("RGB")).tobytes()

    train, heldout = read_pairs(data, "train"), read_pairs(data, "heldout")
    for group in (train[:7], train[7:]):  # one scene, all seven actions
        assert len({before_pixels(pair) for pair in group}) == 1
        assert {pair.instruction for pair in group} == set(all_instructions())
    assert before_pixels(train[0]) != before_pixels(train[7])
    assert len({before_pixels(pair) for pair in heldout}) == 7  # a scene per held-out pair
    assert {pair.instruction for pair in heldout} == set(all_instructions())
    shared = make_action_pairs(tmp_path / "shared", count=7, heldout=7, size=32, seed=2, actions_per_layout=7,
                               heldout_actions_per_layout=7)
    assert len({before_pixels(pair) for pair in read_pairs(shared, "heldout")}) == 1
