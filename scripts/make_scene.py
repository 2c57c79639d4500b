"""nerf-edit-make-scene: render the synthetic two-object scene (nerf_edit.eval.synthetic) into a nerfstudio dataset
with ground-truth object masks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nerf_edit.errors import UsageError
from nerf_edit.eval.synthetic import MASKS_FILE, make_scene
from nerf_edit_scripts.cli import run


@dataclass
class MakeScene:
    """Render the synthetic two-object scene into a nerfstudio dataset with ground-truth object masks."""

    output: Path = Path("data/synthetic")
    """Folder to write (transforms.json, images/, masks/, masks.json)."""
    num_views: int = 40
    """Number of cameras on the ring."""
    size: int = 96
    """Image width and height in pixels."""
    seed: int = 0
    """Seed of the camera jitter."""
    points: int = 0
    """Also write a seed point cloud of this many surface points (sparse_pc.ply, for splatfacto); 0: none."""

    def validate(self) -> None:
        """Every setting, before anything is rendered or written (one UsageError line each)."""
        from nerf_edit import validate

        validate.check_at_least("--num-views", self.num_views, 2)
        validate.check_at_least("--size", self.size, 16)
        validate.check_at_least("--seed", self.seed, 0)  # numpy's generator takes no negative seed
        validate.check_at_least("--points", self.points, 0)
        validate.check_output_dir(self.output, "--output")
        if self.output.is_dir() and any(self.output.iterdir()) and not (self.output / MASKS_FILE).is_file():
            # Only a folder this generator wrote (it has masks.json) is rewritten: never someone's real scene.
            raise UsageError(f"--output {str(self.output)!r} holds files this generator did not write "
                                      f"(no {MASKS_FILE}): pass a new or empty folder")

    def main(self) -> None:
        self.validate()
        make_scene(self.output, self.num_views, self.size, self.seed, points=self.points)
        print(f"wrote {self.num_views} views of {self.size}x{self.size} to {self.output}")


def entrypoint() -> None:
    run(MakeScene)


if __name__ == "__main__":
    entrypoint()
