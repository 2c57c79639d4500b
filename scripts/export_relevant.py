"""nerf-edit-export-relevant: the Gaussians of a `wys-splat` run that the instruction acted on (relevance >= τ), all
the others (`--invert`, or `--set irrelevant`), the frozen ones (`--set frozen`: what stayed the reconstruction's)
or the free ones (`--set free`), as a .ply in `ns-export gaussian-splat`'s format.

    nerf-edit-export-relevant --load-config outputs/scene/wys-splat/<run>/config.yml --output-dir exports/
    nerf-edit-export-relevant --load-config ... --output-dir exports/ --invert   # the scene without the edited part
    nerf-edit-export-relevant --load-config ... --output-dir exports/ --set frozen

The .ply has the properties `ns-export gaussian-splat` writes (the 3DGS layout: position, normal, SH coefficients,
opacity, scale, rotation; nerfstudio 1.1.5 scripts/exporter.py ~575-620) and is written by its public
`ExportGaussianSplat.write_ply`, so the two exports of a run read the same way in any splat viewer.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import torch

from nerf_edit import validate
from nerf_edit.errors import UsageError
from nerf_edit_scripts.cli import run
from nerf_edit_scripts.shared import load_run, read_run_config

LOW_OPACITY_LOGIT = -5.5373  # logit(1/255): Gaussians the rasteriser skips, which ns-export leaves out too


@torch.no_grad()
def ply_properties(model, keep: torch.Tensor) -> "OrderedDict[str, np.ndarray]":
    """The .ply properties of the Gaussians where `keep` [N] bool is set, in ns-export's order and layout (SH
    coefficients; the rest transposed to the INRIA order), less those ns-export leaves out: non-finite values and
    opacities below 1/255 (exporter.py ~631-650). -> {name: [M] or [M, 1] float array}"""
    params = {name: value.detach()[keep].cpu() for name, value in model.gauss_params.items()}
    count = int(keep.sum())
    properties = OrderedDict((axis, params["means"][:, i].numpy()) for i, axis in enumerate("xyz"))
    for axis in ("nx", "ny", "nz"):
        properties[axis] = np.zeros(count, dtype=np.float32)
    for i in range(params["features_dc"].shape[1]):
        properties[f"f_dc_{i}"] = params["features_dc"][:, i, None].numpy()
    if model.config.sh_degree > 0:
        rest = params["features_rest"].transpose(1, 2).reshape(count, -1)  # [M, 3 * (K - 1)]
        for i in range(rest.shape[1]):
            properties[f"f_rest_{i}"] = rest[:, i, None].numpy()
    properties["opacity"] = params["opacities"].numpy()
    for name, width in (("scale", 3), ("rot", 4)):
        source = params["scales" if name == "scale" else "quats"]
        for i in range(width):
            properties[f"{name}_{i}"] = source[:, i, None].numpy()
    select = np.all([np.isfinite(value).all(axis=-1) if value.ndim > 1 else np.isfinite(value)
                     for value in properties.values()], axis=0)
    select &= properties["opacity"][:, 0] >= LOW_OPACITY_LOGIT
    return OrderedDict((name, value[select]) for name, value in properties.items())


@dataclass
class ExportRelevant:
    """Export the relevant Gaussians of a wys-splat run (or the irrelevant ones) as a .ply."""

    load_config: Path
    """config.yml of a finished wys-splat run."""
    output_dir: Path = Path("exports")
    """Folder of the .ply."""
    threshold: float = 0.5
    """τ: a Gaussian is relevant when its relevance (sigmoid of its logit) is at least this."""
    invert: bool = False
    """Export the Gaussians below τ instead: the scene without the part the instruction acted on (= --set
    irrelevant)."""
    set: Literal["relevant", "irrelevant", "frozen", "free"] = "relevant"
    """Which Gaussians: relevance at or above τ, below it, the frozen ones (the reconstruction's, unchanged by the
    edit) or the free ones."""
    output_filename: Optional[str] = None
    """Name of the .ply (default: <set>.ply)."""

    def validate(self) -> None:
        """Every setting, before the run is loaded (one UsageError line each)."""
        from nerf_edit_methods.validate import check_checkpoint_dir

        validate.check_range("--threshold", self.threshold, 0, 1)
        config = read_run_config(self.load_config.parent, "--load-config")
        if self.load_config.name != "config.yml":
            raise UsageError(f"--load-config {str(self.load_config)!r}: pass the run's config.yml")
        method = str(getattr(config, "method_name", ""))
        if not method.startswith("wys-splat"):
            raise UsageError(f"--load-config {str(self.load_config)!r} is a {method or 'non-nerfstudio'} run: only "
                             f"wys-splat runs have a relevance per Gaussian (export others with ns-export)")
        check_checkpoint_dir(self.load_config.parent / "nerfstudio_models", "--load-config's checkpoints")

    def main(self) -> dict:
        from nerfstudio.scripts.exporter import ExportGaussianSplat

        _, pipeline = load_run(self.load_config)
        model = pipeline.model
        if "relevance" not in getattr(model, "gauss_params", {}):
            raise UsageError(f"{str(self.load_config)!r} is not a wys-splat run (its model has no relevance per "
                             f"Gaussian): export other splat runs with ns-export gaussian-splat")
        keep, side = self.selection(model)
        total, kept = len(keep), int(keep.sum())
        if kept == 0:
            raise UsageError(f"no Gaussian of {total} is {side}: {self.hint}")
        properties = ply_properties(model, keep.to(model.gauss_params["relevance"].device))
        name = self.output_filename or f"{self.chosen}.ply"
        self.output_dir.mkdir(parents=True, exist_ok=True)
        temporary = self.output_dir / f".{name}.tmp"
        ExportGaussianSplat.write_ply(str(temporary), len(properties["x"]), properties)
        os.replace(temporary, self.output_dir / name)  # a reader never sees half a .ply
        print(f"wrote {kept} of {total} Gaussians ({side}) to {self.output_dir / name}")
        return {"kept": kept, "total": total, "path": str(self.output_dir / name)}

    @property
    def chosen(self) -> str:
        return "irrelevant" if self.invert else self.set

    @property
    def hint(self) -> str:
        return ("the run froze none (it made no edit, or --pipeline.freeze-irrelevant was off)"
                if self.chosen in ("frozen", "free") else "lower or raise --threshold")

    def selection(self, model) -> tuple[torch.Tensor, str]:
        """The Gaussians of the chosen set [N] bool, and how to say it."""
        if self.chosen in ("frozen", "free"):
            frozen = model.frozen
            return (frozen, "frozen") if self.chosen == "frozen" else (~frozen, "free (not frozen)")
        relevance = model.relevance.detach()  # [N]
        if self.chosen == "irrelevant":
            return relevance < self.threshold, f"relevance below {self.threshold}"
        return relevance >= self.threshold, f"relevance at or above {self.threshold}"


def entrypoint() -> None:
    run(ExportRelevant)


if __name__ == "__main__":
    entrypoint()
