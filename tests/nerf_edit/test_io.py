import numpy as np
import pytest
import torch

from nerf_edit.core.io import IMAGE_SUFFIXES, atomic_save_array, atomic_save_image, atomic_write, load_image
from nerf_edit.errors import ImageReadError


def test_image_round_trip(tmp_path):
    image = torch.rand(3, 5, 7)
    atomic_save_image(tmp_path / "a.png", image)
    loaded = load_image(tmp_path / "a.png")
    assert loaded.shape == (3, 5, 7)
    assert (loaded - image).abs().max() <= 0.5 / 255 + 1e-6


@pytest.mark.parametrize("suffix", IMAGE_SUFFIXES)
def test_every_listed_suffix_is_written_and_read_back(tmp_path, suffix):
    """The commands pick files from a folder by IMAGE_SUFFIXES: each one must load (lossy formats within 4/255)."""
    ramp = torch.linspace(0, 1, 32)
    image = torch.stack([ramp[None, :].expand(24, 32), ramp[:24, None].expand(24, 32), torch.full((24, 32), 0.5)])
    atomic_save_image(tmp_path / f"a{suffix}", image)
    loaded = load_image(tmp_path / f"a{suffix}")
    assert loaded.shape == (3, 24, 32)
    assert (loaded - image).abs().mean() <= 4 / 255


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "keep.npy"
    atomic_save_array(target, np.arange(3))

    def broken(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert np.array_equal(np.load(target), np.arange(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.npy"]


def test_unreadable_image_is_one_line(tmp_path):
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(ImageReadError, match="cannot read image") as info:
        load_image(tmp_path / "bad.png")
    assert "\n" not in str(info.value)
