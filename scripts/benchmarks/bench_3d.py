"""3D benchmark: `wys` iteration time ÷ `nerfacto` iteration time at the same light CPU config, `wys-splat` (CPU
renderer, 3000 seed Gaussians) ÷ `wys`, and the time of one dataset update (render a training view + edit it +
refresh its relevance) of each, measured in one run.

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
from bench_common import Flag, run_cli, timed

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


def measure(options) -> list[tuple[str, str]]:
    """(row name, value) pairs."""
    torch.set_num_threads(options.threads)

    from nerf_edit_methods.compat import offline_lpips
    from nerf_edit_methods.configs import LIGHT_CPU_ARGS, method_config
    from nerf_edit_scripts.make_scene import make_scene

    work = Path(tempfile.mkdtemp(prefix="bench3d-"))
    scene = make_scene(work / "scene", num_views=24, size=options.size, seed=0, points=3000)  # nerfacto ignores them
    common = ["--data", str(scene), "--max-num-iterations", "100000"]
    wys = method_config("wys", LIGHT_CPU_ARGS + common + ["--pipeline.prompt", "turn the ball blue",
                                                          "--pipeline.editing.model", "tiny", "--pipeline.edit-start-step", "1000000"])
    with offline_lpips():
        nerfacto = build_trainer(nerfacto_config(common), work / "out")
    wys_trainer = build_trainer(wys, work / "out")
    from nerf_edit_methods.splat.configs import LIGHT_CPU_SPLAT_ARGS

    splat = method_config("wys-splat", LIGHT_CPU_SPLAT_ARGS + common + [
        "--pipeline.prompt", "turn the ball blue", "--pipeline.editing.model", "tiny",
        "--pipeline.edit-start-step", "1000000"])
    splat_trainer = build_trainer(splat, work / "out")

    # wys as it trains between dataset updates: every pixel has a relevance target, so the relevance loss and its
    # backward pass are part of each iteration (targets' values don't change the cost).
    wys_trainer.pipeline.datamanager.image_batch["relevance_valid"][:] = True
    splat_trainer.pipeline.datamanager.image_batch["relevance_valid"][:] = True
    warmup = 5
    time_iterations(nerfacto, warmup, 0)
    time_iterations(wys_trainer, warmup, 0)
    time_iterations(splat_trainer, warmup, 0)
    nerfacto_times, wys_times, splat_times = [], [], []
    block = 10
    for start in range(warmup, warmup + options.iterations, block):
        nerfacto_times += time_iterations(nerfacto, block, start)
        wys_times += time_iterations(wys_trainer, block, start)
        splat_times += time_iterations(splat_trainer, block, start)
    nerfacto_s, wys_s = statistics.median(nerfacto_times), statistics.median(wys_times)
    splat_s = statistics.median(splat_times)

    def update_and_render(pipeline):
        updates = [timed(lambda: pipeline.edit_view(index)) for index in range(3)]
        renders = [timed(lambda: pipeline.render_train_view(index)) for index in range(3)]
        return statistics.median(updates), statistics.median(renders)

    update_s, render_s = update_and_render(wys_trainer.pipeline)
    splat_update_s, splat_render_s = update_and_render(splat_trainer.pipeline)
    pipeline = wys_trainer.pipeline
    edit_rate = pipeline.config.edit_rate
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
        ("3D wys-splat on a GPU (512², 60 views: wall time, peak memory)", "not measured: no GPU"),
    ]


if __name__ == "__main__":
    main()
