"""nerf-edit-make-action-pairs: synthetic before/after action pairs from our scene renderer (nerf_edit.eval.synthetic).

Each pair is one fixed camera looking at the red ball and the blue cube at random floor positions (before), and
the same scene after one action (after): an object moved to the left or right (in the camera's frame), lifted, or
the two objects swapped. The instruction says which ("move the red ball to the left", "lift the blue cube",
"swap the red ball and the blue cube"). Scenes are drawn independently, so the held-out split asks about the same
actions in layouts never trained on. Deterministic from the seed. Writes pairs.jsonl + images/ (see
nerf_edit/action/data.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from nerf_edit.action.data import write_index
from nerf_edit.core.io import atomic_save_image
from nerf_edit.errors import UsageError
from nerf_edit.eval.synthetic import SceneSpec, Sphere, look_at, render_view
from nerf_edit_scripts.cli import run

CAMERA_POSITION = np.array([0.0, -2.6, 1.5])  # looks along +y: the camera's right is world +x
CAMERA_TARGET = np.array([0.0, 0.0, 0.15])
SHIFT = 0.5  # world units moved by left/right
LIFT = 0.4  # world units lifted
NAMES = {"red_ball": "the red ball", "blue_cube": "the blue cube"}
ACTIONS = ("left", "right", "lift")


def instruction_for(action: str, subject: str, other: str) -> str:
    if action == "swap":
        return f"swap {NAMES[subject]} and {NAMES[other]}"
    if action == "lift":
        return f"lift {NAMES[subject]}"
    return f"move {NAMES[subject]} to the {action}"


def all_instructions() -> list[str]:
    """The generator's whole instruction vocabulary (7 instructions)."""
    names = list(NAMES)
    return [instruction_for(a, s, o) for s, o in (names, names[::-1]) for a in ACTIONS] + [
        instruction_for("swap", *names)]


def _place(obj, x: float, y: float, lift: float = 0.0):
    z = obj.radius if isinstance(obj, Sphere) else obj.half_size[2]
    return replace(obj, center=(x, y, z + lift))


def random_layout(rng: np.random.Generator) -> dict[str, tuple[float, float]]:
    """Floor positions (x, y) of both objects, at least 0.75 apart so they never intersect."""
    while True:
        positions = {name: (rng.uniform(-0.6, 0.6), rng.uniform(-0.45, 0.45)) for name in NAMES}
        (x0, y0), (x1, y1) = positions.values()
        if math.hypot(x0 - x1, y0 - y1) > 0.75:
            return positions


def apply_action(layout: dict, action: str, subject: str) -> tuple[dict, dict] | None:
    """(positions, lifts) after the action; None when it would leave the floor area or hit the other object."""
    positions, lifts = dict(layout), {name: 0.0 for name in layout}
    other = next(name for name in layout if name != subject)
    if action == "swap":
        positions[subject], positions[other] = layout[other], layout[subject]
    elif action == "lift":
        lifts[subject] = LIFT
    else:
        x, y = layout[subject]
        x += -SHIFT if action == "left" else SHIFT
        if abs(x) > 0.95 or math.hypot(x - positions[other][0], y - positions[other][1]) < 0.75:
            return None
        positions[subject] = (x, y)
    return positions, lifts


def render_layout(base: SceneSpec, positions: dict, lifts: dict, size: int) -> np.ndarray:
    objects = tuple(_place(obj, *positions[obj.name], lifts.get(obj.name, 0.0)) for obj in base.objects)
    focal = size / 2 / math.tan(math.radians(40.0) / 2)
    rgb, _ = render_view(replace(base, objects=objects), look_at(CAMERA_POSITION, CAMERA_TARGET), size, size, focal)
    return rgb


def make_action_pairs(output: Path, count: int = 64, heldout: int = 16, size: int = 64, seed: int = 0,
                      actions_per_layout: int = 1, heldout_actions_per_layout: int = 1) -> Path:
    """`count` training pairs and `heldout` held-out pairs into `output` (pairs.jsonl, images/).

    With actions_per_layout = n > 1, each training layout (before image) is shared by n pairs with n different
    actions, so the before image alone says nothing about the instruction: only the change between before and
    after does. (With one action per layout, a model can tie each training before-image to its instruction, a
    shortcut that does not carry over to held-out layouts.) Held-out pairs get a layout each by default
    (heldout_actions_per_layout = 1): held-out accuracy then averages over as many independent scenes as there are
    pairs. A layout's pairs all lie in one split."""
    if count < 1 or heldout < 0 or size < 16 or size % 8:
        raise UsageError(f"need --count >= 1, --heldout >= 0 and --size >= 16 (a multiple of 8); got {count}, "
                         f"{heldout}, {size}")
    choices = [(a, s) for s in NAMES for a in ACTIONS] + [("swap", "red_ball")]
    for flag, value in (("actions-per-layout", actions_per_layout),
                        ("heldout-actions-per-layout", heldout_actions_per_layout)):
        if not 1 <= value <= len(choices):
            raise UsageError(f"--{flag} must be in [1, {len(choices)}] (there are {len(choices)} actions), got {value}")
    output = Path(output)
    rng = np.random.default_rng(seed)
    base = SceneSpec()
    if {obj.name for obj in base.objects} != set(NAMES):
        raise UsageError(f"the scene spec must hold exactly {sorted(NAMES)}")
    records = []
    number = 0
    while number < count + heldout:
        split_end = count if number < count else count + heldout
        per_layout = actions_per_layout if number < count else heldout_actions_per_layout
        group = range(number, min(number + per_layout, split_end))
        # Cycle through the actions so every instruction is equally frequent in both splits.
        actions = [choices[k % len(choices)] for k in group]
        layout = random_layout(rng)
        while None in (afters := [apply_action(layout, action, subject) for action, subject in actions]):
            layout = random_layout(rng)
        before_image = render_layout(base, layout, {}, size)
        for k, (action, subject), after in zip(group, actions, afters):
            other = next(name for name in NAMES if name != subject)
            before_path, after_path = f"images/{k:05d}_before.png", f"images/{k:05d}_after.png"
            atomic_save_image(output / before_path, before_image)
            atomic_save_image(output / after_path, render_layout(base, *after, size))
            records.append({"before": before_path, "after": after_path,
                            "instruction": instruction_for(action, subject, other),
                            "split": "train" if k < count else "heldout"})
        number = group.stop
    write_index(output, records)
    return output


@dataclass
class MakeActionPairs:
    """Render synthetic before/after action pairs (move left/right, lift, swap) with instructions and a held-out split."""

    output: Path = Path("data/action_pairs")
    """Folder to write (pairs.jsonl, images/)."""
    count: int = 64
    """Training pairs."""
    heldout: int = 16
    """Held-out pairs (new layouts, same actions), for action accuracy."""
    size: int = 64
    """Image width and height in pixels (a multiple of 8)."""
    seed: int = 0
    """Seed of the layouts."""
    actions_per_layout: int = 1
    """Pairs per layout, each with a different action (> 1: the before image alone tells nothing about the
    instruction; see README "EditAction")."""
    heldout_actions_per_layout: int = 1
    """Held-out pairs per layout (1: every held-out pair is a scene of its own, the most independent questions)."""

    def main(self) -> None:
        make_action_pairs(self.output, self.count, self.heldout, self.size, self.seed, self.actions_per_layout,
                          self.heldout_actions_per_layout)
        print(f"wrote {self.count} training and {self.heldout} held-out pairs of {self.size}x{self.size} to {self.output}")


def entrypoint() -> None:
    run(MakeActionPairs)


if __name__ == "__main__":
    entrypoint()
