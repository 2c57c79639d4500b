import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from nerf_edit.core.io import atomic_save_image
from nerf_edit_scripts.evaluate import Evaluate


@pytest.fixture()
def frames(tmp_path):
    generator = torch.Generator().manual_seed(0)
    original = torch.rand(3, 3, 32, 32, generator=generator)
    edited = original.clone()
    edited[:, :, 8:16, 8:16] = torch.tensor([0.0, 0.0, 1.0])[:, None, None]  # the edit
    edited[:, :, 24:, :] = (edited[:, :, 24:, :] + 0.2).clamp(0, 1)  # over-editing the background
    for i in range(3):
        atomic_save_image(tmp_path / "original" / f"{i:03d}.png", original[i])
        atomic_save_image(tmp_path / "edited" / f"{i:03d}.png", edited[i])
        mask = np.zeros((32, 32), np.uint8)
        mask[8:16, 8:16] = 255
        atomic_save_image(tmp_path / "masks" / f"{i:03d}.png", mask)
    return tmp_path


def test_cli_writes_json_and_plot_with_known_background_psnr(frames):
    output = frames / "eval" / "results.json"
    Evaluate(edited=frames / "edited", original=frames / "original", instruction="turn the square blue",
             source_caption="noise", target_caption="noise with a blue square", masks=frames / "masks",
             clip_model="tiny", output=output).main()
    results = json.loads(output.read_text())
    original = np.stack([np.asarray(Image.open(frames / "original" / f"{i:03d}.png"), np.float64) / 255 for i in range(3)])
    edited = np.stack([np.asarray(Image.open(frames / "edited" / f"{i:03d}.png"), np.float64) / 255 for i in range(3)])
    outside = np.ones((3, 32, 32), bool)
    outside[:, 8:16, 8:16] = False
    mse = np.mean((edited[outside] - original[outside]) ** 2)
    assert results["background_psnr"] == pytest.approx(10 * math.log10(1 / mse), rel=1e-4)
    assert results["frames"] == 3 and len(results["per_frame"]["clip_text_image"]) == 3
    assert output.with_suffix(".png").stat().st_size > 1000


# Bad input (one line, exit 2, nothing written) is covered for every command in test_cli_usage_errors.py.


def test_a_missing_run_is_a_run_not_found_error(tmp_path):
    from nerf_edit.errors import RunNotFoundError
    from nerf_edit_methods.validate import check_checkpoint_dir
    from nerf_edit_scripts.evaluate_scene import EvaluateScene, read_run_config

    with pytest.raises(RunNotFoundError, match="is not a folder"):
        EvaluateScene(run=tmp_path / "missing").validate()
    with pytest.raises(RunNotFoundError, match="no run config"):
        read_run_config(tmp_path, "--run")
    with pytest.raises(RunNotFoundError, match="does not exist"):
        check_checkpoint_dir(tmp_path / "missing")
    with pytest.raises(RunNotFoundError, match="holds no checkpoints"):
        check_checkpoint_dir(tmp_path)
