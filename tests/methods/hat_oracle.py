"""An editor whose right answer is known for an instruction that ADDS geometry: "put a purple hat on the red ball".

It knows the scene ($HAT_ORACLE_SCENE, a make_scene folder; the bundled scene by default) and the scene with the hat
(a purple box standing on the ball: `HAT`). For each view it is handed it finds the photo nearest to its
conditioning (the original view) and returns the true view of that camera with the hat; its relevance is where the
hat changes that view, plus the ball (what the instruction is about). With a mask, pixels outside it are the
background's, as every editor guarantees (Editor.edit). Plugged in by import path, as a user's editor would be.
"""

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nerf_edit.editing.editor import Editor, EditRequest, EditResult
from nerf_edit.eval.synthetic import Box, SceneSpec, render_scene_views, with_objects

BUNDLED_SCENE = Path(__file__).resolve().parents[2] / "data" / "synthetic"
BALL = 1
HAT = Box("purple_hat", (-0.35, -0.1, 0.70), (0.13, 0.13, 0.14), (0.55, 0.12, 0.72))
HAT_LABEL = len(SceneSpec().objects) + 1


def purpleness(rgb: np.ndarray) -> np.ndarray:
    """[..., 3] -> [...]: (r + b) / 2 - g, high on the hat's purple, low on the sky, floor, ball and cube."""
    return (rgb[..., 0] + rgb[..., 2]) / 2 - rgb[..., 1]


@lru_cache(maxsize=4)
def scene_with_hat(scene: str):
    """The scene's photos [N, 3, H, W], the true views with the hat [N, 3, H, W], where the hat changes each view
    [N, H, W] and its ball [N, H, W], in transforms.json's frame order."""
    before, before_labels = render_scene_views(Path(scene), SceneSpec())
    after, after_labels = render_scene_views(Path(scene), with_objects(SceneSpec(), HAT))
    transforms = __import__("json").loads((Path(scene) / "transforms.json").read_text())
    photos = np.stack([np.asarray(Image.open(Path(scene) / frame["file_path"]).convert("RGB"), dtype=np.float32) / 255
                       for frame in transforms["frames"]])
    as_chw = lambda array: torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2).float()  # noqa: E731
    return (as_chw(photos), as_chw(after), torch.from_numpy(after_labels == HAT_LABEL),
            torch.from_numpy(before_labels == BALL))


class HatOracleEditor(Editor):
    relevance_reads_conditioning = False  # its relevance reads the original views alone

    def __init__(self, config):
        super().__init__(config)
        self.scene = str(os.environ.get("HAT_ORACLE_SCENE", BUNDLED_SCENE))

    def nearest(self, images: torch.Tensor) -> torch.Tensor:
        photos = scene_with_hat(self.scene)[0]
        return ((images.float().cpu()[:, None] - photos[None]) ** 2).flatten(2).mean(2).argmin(1)  # [B]

    def relevance(self, images, instruction, conditioning=None, generator=None):
        _, _, hat, ball = scene_with_hat(self.scene)
        index = self.nearest(images)
        return (hat[index] | ball[index]).float().to(images.device)

    def run(self, request: EditRequest) -> EditResult:
        _, after, _, _ = scene_with_hat(self.scene)
        # Editor.edit keeps the background outside a mask
        return EditResult(images=after[self.nearest(request.conditioning)].to(request.images))


def hat_metrics(run: Path, scene: Path) -> dict:
    """On a finished run's held-out views (every 4th, as wys_runs.HOLD_OUT): how much purpler than the photo the
    render is inside the true hat (`gain`), what the truth gives there (`truth`), and the background PSNR against
    the photos away from the objects and the hat (`background`)."""
    from wys_runs import away_from_objects, held_out_views, psnr

    rgbs, _, photos, labels = held_out_views(run, scene)
    _, after, hat, _ = scene_with_hat(str(scene))
    held = [i for i in range(len(after)) if i % 4 == 0]
    hat, after = hat[held].numpy(), after[held].permute(0, 2, 3, 1).numpy()
    background = away_from_objects(labels) & ~hat
    return {"gain": float((purpleness(rgbs) - purpleness(photos))[hat].mean()),
            "truth": float((purpleness(after) - purpleness(photos))[hat].mean()),
            "background": psnr(rgbs[background], photos[background])}
