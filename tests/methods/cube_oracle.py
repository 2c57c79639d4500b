"""An editor whose right answer is known on a synthetic scene: "turn the cube green", by the scene's own masks.

The colorkey editor tells objects apart by colour, so once the ball is blue it can't edit the blue cube alone.
This oracle knows the scene: for each view it is handed it finds the photo of the scene nearest to it (the views of a
stacked run differ from the photos only where an earlier edit acted) and takes that photo's ground-truth cube mask
(label 2) as the relevance; the edit recolours the cube green (colorkey's recolouring: shading kept) and, as IP2P does,
over-edits the rest of the view: its colours drift OVER_EDIT of the way towards the green (so without a mask an
earlier edit, the blue ball, loses some of its blue). With a mask, pixels outside it are the background's (default
the input), as every editor guarantees.

The scene is the bundled one unless $CUBE_ORACLE_SCENE names another (a make_scene folder): the editor is built
by import path from an EditorConfig, which knows no scene.
"""

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nerf_edit.editing.colorkey import HUES, recolour
from nerf_edit.editing.editor import Editor, EditRequest, EditResult
from nerf_edit.eval.synthetic import load_object_masks

BUNDLED_SCENE = Path(__file__).resolve().parents[2] / "data" / "synthetic"
CUBE = 2  # label of the cube in masks.json
OVER_EDIT = 0.4  # how far the rest of the view drifts towards the green
GREEN = (0.15, 0.75, 0.2)


class CubeOracleEditor(Editor):
    # Its relevance reads the original views alone (the nearest photo's mask), and it says so: the 3D method then
    # renders no view for its relevance targets (18 renders of a 64² view, about a minute on one CPU thread).
    relevance_reads_conditioning = False

    def __init__(self, config):
        super().__init__(config)
        scene = Path(os.environ.get("CUBE_ORACLE_SCENE", BUNDLED_SCENE))
        masks = load_object_masks(scene)
        photos = [np.asarray(Image.open(scene / name).convert("RGB"), dtype=np.float32) / 255 for name in masks]
        self.photos = torch.from_numpy(np.stack(photos)).permute(0, 3, 1, 2)  # [N, 3, H, W]
        self.cubes = torch.from_numpy(np.stack([mask == CUBE for mask in masks.values()]))  # [N, H, W]

    def cube_masks(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] views of the scene -> [B, H, W] bool: the cube in the nearest photo of the scene."""
        distances = ((images.float().cpu()[:, None] - self.photos[None]) ** 2).flatten(2).mean(2)  # [B, N]
        return self.cubes[distances.argmin(1)].to(images.device)

    def relevance(self, images, instruction, conditioning=None, generator=None):
        return self.cube_masks(images).float()

    def run(self, request: EditRequest) -> EditResult:
        images, source = request.images, request.conditioning.to(request.images)
        cube = self.cube_masks(source)[:, None]  # [B, 1, H, W]
        drifted = source + OVER_EDIT * (torch.tensor(GREEN).to(source)[None, :, None, None] - source)
        edited = torch.where(cube, recolour(source, HUES["green"]).clamp(0, 1), drifted)
        return EditResult(images=edited.to(images))  # Editor.edit keeps the background outside a mask
