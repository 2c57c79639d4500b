"""nerf-edit-export-relevant: the Gaussians of a `wys-splat` run that the instruction acted on (relevance >= τ), or
all the others (`--invert`), as a .ply in `ns-export gaussian-splat`'s format.

    nerf-edit-export-relevant --load-config outputs/scene/wys-splat/<run>/config.yml --output-dir exports/
    nerf-edit-export-relevant --load-config ... --output-dir exports/ --invert   # the scene without the edited part

The .ply is written by nerfstudio's own exporter (ExportGaussianSplat) on the run's model with the other Gaussians
taken out, so the two exports of a run read the same way in any splat viewer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from unittest import mock

import torch

from nerf_edit import validate
from nerf_edit.errors import UsageError
from nerf_edit_scripts.cli import run
from nerf_edit_scripts.evaluate_scene import load_run, read_run_config


def keep_gaussians(model, keep: torch.Tensor) -> None:
    """Keep only the Gaussians where `keep` [N] bool is set, in every per-Gaussian parameter of the model."""
    with torch.no_grad():
        for name, value in list(model.gauss_params.items()):
            model.gauss_params[name] = torch.nn.Parameter(value[keep].clone())


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
    """Export the Gaussians below τ instead: the scene without the part the instruction acted on."""
    output_filename: Optional[str] = None
    """Name of the .ply (default: relevant.ply, or irrelevant.ply with --invert)."""

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
        from nerfstudio.scripts import exporter

        config, pipeline = load_run(self.load_config)
        model = pipeline.model
        if "relevance" not in getattr(model, "gauss_params", {}):
            raise UsageError(f"{str(self.load_config)!r} is not a wys-splat run (its model has no relevance per "
                             f"Gaussian): export other splat runs with ns-export gaussian-splat")
        relevance = torch.sigmoid(model.gauss_params["relevance"].detach()).squeeze(-1)  # [N]
        keep = relevance < self.threshold if self.invert else relevance >= self.threshold
        total, kept = len(relevance), int(keep.sum())
        side = f"below {self.threshold}" if self.invert else f"at or above {self.threshold}"
        if kept == 0:
            raise UsageError(f"no Gaussian of {total} has relevance {side}: lower or raise --threshold")
        keep_gaussians(model, keep.to(model.gauss_params["relevance"].device))
        name = self.output_filename or ("irrelevant.ply" if self.invert else "relevant.ply")
        self.output_dir.mkdir(parents=True, exist_ok=True)
        temporary = f".{name}.tmp"
        # nerfstudio's exporter loads the run itself; it is handed this pipeline, with only the kept Gaussians.
        loaded = (config, pipeline, None, None)
        with mock.patch.object(exporter, "eval_setup", lambda *args, **kwargs: loaded):
            exporter.ExportGaussianSplat(load_config=self.load_config, output_dir=self.output_dir,
                                         output_filename=temporary).main()
        os.replace(self.output_dir / temporary, self.output_dir / name)  # a reader never sees half a .ply
        print(f"wrote {kept} of {total} Gaussians (relevance {side}) to {self.output_dir / name}")
        return {"kept": kept, "total": total, "path": str(self.output_dir / name)}


def entrypoint() -> None:
    run(ExportRelevant)


if __name__ == "__main__":
    entrypoint()
