"""3D benchmark: `wys` iteration time ÷ `nerfacto` iteration time at the same light CPU config, `wys-splat` (CPU
renderer, 3000 seed Gaussians) ÷ `wys`, and the time of one dataset update (render a training view + edit it +
refresh its relevance) of each, and wys-splat's traced relevance pass per view, measured in one run.

    python scripts/benchmarks/bench_3d.py [--iterations 40] [--size 64]

Both methods train on the same synthetic scene; iterations alternate in blocks so machine load hits both alike.
The dataset update uses the tiny random-weight IP2P (the real model's cost is in the 2D/GPU benchmarks).
"""

from __future__ import annotations

import copy
import statistics
import tempfile
from pathlib import Path

import torch

from nerf_edit_scripts.benchmarks.bench_common import Flag, run_cli, timed

WYS_ONLY_FLAG = "--pipeline.model.use-lpips"


def build_trainer(config, output_dir: Path):
    config.output_dir = output_dir
    config.set_timestamp()
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    return trainer


def nerfacto_config(args):
    import tyro
    from nerfstudio.configs.method_configs import method_configs
    from nerfstudio.engine.trainer import TrainerConfig

    from nerf_edit_methods.configs import LIGHT_CPU_ARGS

    # LIGHT_CPU_ARGS switches off wys's LPIPS loss; stock nerfacto has no such flag (and no LPIPS loss to switch off).
    light = [arg for i, arg in enumerate(LIGHT_CPU_ARGS)
             if arg != WYS_ONLY_FLAG and (i == 0 or LIGHT_CPU_ARGS[i - 1] != WYS_ONLY_FLAG)]
    config = tyro.cli(TrainerConfig, default=copy.deepcopy(method_configs["nerfacto"]), args=light + args)
    config.pipeline.datamanager.data = config.data
    return config


def iteration(trainer, step: int) -> None:
    """One training iteration with the callbacks ns-train runs around it (splatfacto's set its step and optimisers
    before, and densify after)."""
    from nerfstudio.engine.callbacks import TrainingCallbackLocation

    for callback in trainer.callbacks:
        callback.run_callback_at_location(step, TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
    trainer.train_iteration(step)
    for callback in trainer.callbacks:
        callback.run_callback_at_location(step, TrainingCallbackLocation.AFTER_TRAIN_ITERATION)


def time_iterations(trainer, steps, start: int) -> list[float]:
    return [timed(lambda: iteration(trainer, step)) for step in range(start, start + steps)]


def main() -> None:
    run_cli(__doc__, measure, iterations=Flag(40, "timed iterations per method"), size=Flag(64, "scene resolution"),
            threads=2)


def build_trainers(size: int, work: Path) -> dict:
    """nerfacto, wys and wys-splat trainers on one scene (tiny IP2P, edits never due), every pixel with a relevance
    target: wys as it trains between dataset updates, the relevance loss and its backward pass part of each
    iteration (the targets' values don't change the cost)."""
    from nerf_edit.eval.synthetic import make_scene
    from nerf_edit_methods.compat import offline_lpips
    from nerf_edit_methods.configs import LIGHT_CPU_ARGS, method_config
    from nerf_edit_methods.splat.configs import LIGHT_CPU_SPLAT_ARGS

    scene = make_scene(work / "scene", num_views=24, size=size, seed=0, points=3000)  # nerfacto ignores them
    common = ["--data", str(scene), "--max-num-iterations", "100000"]
    edits = ["--pipeline.prompt", "turn the ball blue", "--pipeline.editing.model", "tiny",
             "--pipeline.edit-start-step", "1000000"]
    with offline_lpips():
        nerfacto = build_trainer(nerfacto_config(common), work / "out")
    trainers = {"nerfacto": nerfacto,
                "wys": build_trainer(method_config("wys", LIGHT_CPU_ARGS + common + edits), work / "out"),
                "splat": build_trainer(method_config("wys-splat", LIGHT_CPU_SPLAT_ARGS + common + edits), work / "out")}
    for name in ("wys", "splat"):
        trainers[name].pipeline.datamanager.image_batch["relevance_valid"][:] = True
    return trainers


def median_iterations(trainers: dict, iterations: int, warmup: int = 5, block: int = 10) -> dict:
    """Seconds per training iteration of each trainer (median), timed in alternating blocks."""
    for trainer in trainers.values():
        time_iterations(trainer, warmup, 0)
    times = {name: [] for name in trainers}
    for start in range(warmup, warmup + iterations, block):
        for name, trainer in trainers.items():
            times[name] += time_iterations(trainer, block, start)
    return {name: statistics.median(values) for name, values in times.items()}


def update_and_render(pipeline) -> tuple[float, float]:
    """Seconds of a dataset update of one view and of rendering one view (medians of 3)."""
    updates = [timed(lambda: pipeline.edit_views([index])) for index in range(3)]
    renders = [timed(lambda: pipeline.render_train_view(index)) for index in range(3)]
    return statistics.median(updates), statistics.median(renders)


def trace_seconds(pipeline, views: int = 3) -> float:
    """Seconds per view of a traced relevance pass (the model's trace_relevance over `views` training views, random
    targets at their resolution: one forward and one backward of the renderer each)."""
    cameras = pipeline.datamanager.train_dataset.cameras[:views]
    targets = torch.rand(views, int(cameras.height[0]), int(cameras.width[0]))
    return timed(lambda: pipeline.model.trace_relevance(cameras, targets, camera_indices=range(views))) / views


def measure(options) -> list[tuple[str, str]]:
    """(row name, value) pairs."""
    torch.set_num_threads(options.threads)
    trainers = build_trainers(options.size, Path(tempfile.mkdtemp(prefix="bench3d-")))
    seconds = median_iterations(trainers, options.iterations)
    nerfacto_s, wys_s, splat_s = seconds["nerfacto"], seconds["wys"], seconds["splat"]
    update_s, render_s = update_and_render(trainers["wys"].pipeline)
    splat_update_s, splat_render_s = update_and_render(trainers["splat"].pipeline)
    trace_s = trace_seconds(trainers["splat"].pipeline)
    edit_rate = trainers["wys"].pipeline.config.edit_rate
    setting = f"light CPU config, {options.size}² scene, {options.threads} threads"
    return [
        (f"3D nerfacto iteration ({setting})", f"{nerfacto_s * 1000:.1f} ms"),
        ("3D wys iteration (relevance loss on)", f"{wys_s * 1000:.1f} ms"),
        ("3D wys ÷ nerfacto iteration (goal <= 1.20)", f"{wys_s / nerfacto_s:.3f}"),
        ("3D dataset update, one view (tiny IP2P)", f"{update_s * 1000:.1f} ms (render {render_s * 1000:.1f} ms)"),
        (f"3D wys iteration incl. an update every {edit_rate}", f"{(wys_s + update_s / edit_rate) * 1000:.1f} ms"),
        ("3D wys-splat iteration (CPU renderer, 3000 Gaussians, relevance loss on)", f"{splat_s * 1000:.1f} ms"),
        ("3D wys-splat ÷ wys iteration", f"{splat_s / wys_s:.3f}"),
        ("3D wys-splat dataset update, one view (tiny IP2P)",
         f"{splat_update_s * 1000:.1f} ms (render {splat_render_s * 1000:.1f} ms)"),
        ("3D wys-splat ÷ wys dataset update", f"{splat_update_s / update_s:.3f}"),
        ("3D wys-splat traced relevance pass (seconds per view, CPU renderer, 3000 Gaussians)", f"{trace_s:.3f} s"),
        ("3D wys-splat on a GPU (512², 60 views: wall time, peak memory)", "not measured: no GPU"),
    ]


if __name__ == "__main__":
    main()
