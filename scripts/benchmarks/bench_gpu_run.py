"""GPU benchmark of whole runs: peak GPU memory of `wys`, `wys-small` and `wys-tiny`, and the wall time of a default
`wys` run, on a 512², 60-view synthetic scene with the full-size IP2P architecture (random weights, saved to a
local folder: the same FLOPs and memory as `timbrooks/instruct-pix2pix`, no download).

    python scripts/benchmarks/bench_gpu_run.py [--memory_iterations 200] [--iterations 4000]

nerfacto runs on tiny-cuda-nn when it is installed, else on torch (the row says which). Without a CUDA GPU every
row says "not measured: no GPU".
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from nerf_edit_scripts.benchmarks.bench_common import Flag, run_cli, timed

PRESETS = ("wys", "wys-small", "wys-tiny")


def implementation() -> str:
    try:
        import tinycudann  # noqa: F401

        return "tcnn"
    except ImportError:
        return "torch"


def run(method: str, scene: Path, model: Path, output: Path, iterations: int):
    from nerf_edit_methods.configs import method_config

    config = method_config(method, ["--data", str(scene), "--output-dir", str(output), "--vis", "tensorboard",
                                    "--max-num-iterations", str(iterations), "--pipeline.prompt", "turn the ball blue",
                                    "--pipeline.editing.model", str(model), "--pipeline.edit-start-step", "0",
                                    "--pipeline.model.implementation", implementation()])
    config.set_timestamp()
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    torch.cuda.reset_peak_memory_stats()
    seconds = timed(trainer.train, "cuda")
    return seconds, torch.cuda.max_memory_allocated() / 2**30


def measure(options) -> list[tuple[str, str]]:
    setting = f"{options.size}², {options.views} views"
    if not torch.cuda.is_available():
        return ([(f"GPU peak memory, {preset} ({setting})", "not measured: no GPU") for preset in PRESETS]
                + [(f"GPU wall time of a default wys run ({setting})", "not measured: no GPU")])
    from nerf_edit.eval.synthetic import make_scene
    from nerf_edit.models.full_size import build_full_size_ip2p_pipeline

    work = Path(tempfile.mkdtemp(prefix="bench-gpu-run-"))
    scene = make_scene(work / "scene", num_views=options.views, size=options.size, seed=0)
    model = work / "ip2p-full-size-random"
    build_full_size_ip2p_pipeline().save_pretrained(model)
    gpu, nerf = torch.cuda.get_device_name(), f"nerfacto on {implementation()}"
    rows = []
    for preset in PRESETS:
        _, peak = run(preset, scene, model, work / preset, options.memory_iterations)
        rows.append((f"GPU peak memory, {preset} ({setting}, {nerf}, {gpu})", f"{peak:.1f} GiB"))
    seconds, _ = run("wys", scene, model, work / "full", options.iterations)
    rows.append((f"GPU wall time of a default wys run ({options.iterations} iterations, {setting}, {nerf}, {gpu})",
                 f"{seconds / 60:.1f} min"))
    return rows


def main() -> None:
    run_cli(__doc__, measure, width=70, size=512, views=60,
            memory_iterations=Flag(200, "iterations per preset for peak memory (20 edits at the default rate)"),
            iterations=Flag(4000, "iterations of the timed default run"))


if __name__ == "__main__":
    main()
