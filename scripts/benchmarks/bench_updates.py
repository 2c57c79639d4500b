"""Dataset-update benchmark: the same edits one view at a time, batched (`--pipeline.edit-batch K`) and overlapped
with training (`--pipeline.overlap-edits`), side by side in one run; and the demo's seconds per edit.

    python scripts/benchmarks/bench_updates.py [--views 4] [--size 64] [--rounds 3] [--train_steps 20]

CPU: the tiny random-weight IP2P relevance editor on a synthetic scene with the light CPU config (the GPU cost of
the real IP2P is in bench_gpu.py). Blocks alternate so machine load hits every variant alike.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import torch

from nerf_edit_scripts.benchmarks.bench_common import Flag, run_cli, timed

REPO = Path(__file__).resolve().parents[2]


def pipeline_for(scene: Path, output: Path, args: list[str], method: str = "wys"):
    from nerf_edit_methods.configs import LIGHT_CPU_ARGS, method_config

    torch.manual_seed(0)  # every variant is the same NeRF
    config = method_config(method, LIGHT_CPU_ARGS + ["--data", str(scene), "--output-dir", str(output),
                                                     "--max-num-iterations", "100000", *args])
    config.set_timestamp()
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    return trainer


def measure(options) -> list[tuple[str, str]]:
    torch.set_num_threads(options.threads)
    from nerf_edit.eval.synthetic import make_scene
    from nerf_edit_methods.configs import DEMO_CPU_EDIT_ARGS

    work = Path(tempfile.mkdtemp(prefix="bench-updates-"))
    scene = make_scene(work / "scene", num_views=max(8, 2 * options.views), size=options.size, seed=0)
    tiny = ["--pipeline.prompt", "turn the ball blue", "--pipeline.editing.model", "tiny",
            "--pipeline.relevance-warmup-steps", "0", "--pipeline.edit-rate", "1"]
    k = options.views
    single = pipeline_for(scene, work / "single", tiny).pipeline
    batched = pipeline_for(scene, work / "batched", tiny + ["--pipeline.edit-batch", str(k)]).pipeline
    for pipeline in (single, batched):
        pipeline.compute_relevance_targets()
        pipeline.edit_views(list(range(k)), strength=0.7)  # warm-up
    one_by_one, together = [], []
    for round_ in range(options.rounds):
        views = [(round_ * k + i) % single.datamanager.num_views for i in range(k)]
        one_by_one.append(timed(lambda: [single.edit_views([v], strength=0.7) for v in views]) / k)
        together.append(timed(lambda: batched.edit_views(views, strength=0.7)) / k)
    single_s, batched_s = statistics.median(one_by_one), statistics.median(together)

    # Training with updates: the same schedule sequential and overlapped (edit every 2 steps, K views per update).
    steps = options.train_steps
    trainers = {name: pipeline_for(scene, work / name, tiny + ["--pipeline.edit-rate", "2", *extra])
                for name, extra in (("sequential", []), ("overlapped", ["--pipeline.overlap-edits", "True"]))}
    for trainer in trainers.values():  # relevance targets first: not part of what is compared
        trainer.pipeline.compute_relevance_targets()
    seconds = {name: 0.0 for name in trainers}
    for start in range(0, steps, 5):  # alternating blocks of 5 steps
        for name, trainer in trainers.items():
            seconds[name] += timed(lambda: [trainer.train_iteration(s) for s in range(start, start + 5)])
    # The overlapped run owes the edits still in flight: waiting for them is part of its time.
    seconds["overlapped"] += timed(trainers["overlapped"].pipeline.updates.finish)

    # The demo's editing phase: colorkey on the bundled 96² scene, one view per update.
    demo = pipeline_for(REPO / "data" / "synthetic", work / "demo",
                        DEMO_CPU_EDIT_ARGS + ["--pipeline.prompt", "turn the red ball blue", "--pipeline.editor",
                                              "colorkey"]).pipeline
    demo.compute_relevance_targets()
    demo_s = statistics.median(timed(lambda: demo.edit_views([v])) for v in range(options.rounds))

    setting = f"tiny IP2P, {options.size}² scene, {options.threads} threads"
    return [
        (f"3D update, one view at a time ({setting}), per view", f"{single_s * 1000:.1f} ms"),
        (f"3D update, {k} views batched (--pipeline.edit-batch {k}), per view", f"{batched_s * 1000:.1f} ms"),
        ("3D update batched ÷ one by one, per view (same edits)", f"{batched_s / single_s:.3f}"),
        (f"3D {steps} training steps with an update every 2: sequential", f"{seconds['sequential']:.1f} s"),
        (f"3D {steps} training steps with an update every 2: overlapped", f"{seconds['overlapped']:.1f} s"),
        ("3D overlapped ÷ sequential, wall time (CPU: one pool of cores)",
         f"{seconds['overlapped'] / seconds['sequential']:.3f}"),
        ("demo editing phase (colorkey, bundled 96² scene): seconds per edit", f"{demo_s:.2f} s"),
    ]


def main() -> None:
    run_cli(__doc__, measure, width=70, views=Flag(4, "views per batched update"), size=Flag(64, "scene side"),
            rounds=Flag(3, "timed rounds"), train_steps=Flag(20, "training steps per variant (a multiple of 5)"), threads=2)


if __name__ == "__main__":
    main()
