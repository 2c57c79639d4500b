"""All benchmarks in one run, as one table (GPU rows say "not measured: no GPU" on a CPU machine).

    python -m nerf_edit_scripts.benchmarks.run_all [--record docs/benchmarks.md]

--record appends the table to the file with the date, the machine and this command.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
from pathlib import Path

import torch

from nerf_edit_scripts.benchmarks import (
    bench_2d,
    bench_3d,
    bench_action,
    bench_gpu,
    bench_gpu_run,
    bench_updates,
    bench_vimaedit,
    bench_zone,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", type=Path, default=None, help="append the table to this markdown file")
    options = parser.parse_args()
    rows = []
    rows += bench_2d.measure(argparse.Namespace(size=128, steps=20, repeats=5, threads=2))
    rows += bench_3d.measure(argparse.Namespace(iterations=40, size=64, threads=2))
    rows += bench_updates.measure(argparse.Namespace(views=4, size=64, rounds=3, train_steps=20, threads=2))
    rows += bench_gpu.measure(argparse.Namespace(size=512, steps=20, repeats=3))
    rows += bench_gpu_run.measure(argparse.Namespace(size=512, views=60, memory_iterations=200, iterations=4000))
    rows += bench_zone.measure(argparse.Namespace(device="cpu", size=256, steps=20, repeats=2, threads=2))
    rows += bench_zone.measure(argparse.Namespace(device="cuda", size=512, steps=20, repeats=3, threads=2))
    rows += bench_vimaedit.measure(argparse.Namespace(size=512, steps=50, repeats=1, threads=2))
    rows += bench_action.measure(argparse.Namespace(size=64, batch=8, repeats=10, threads=1))
    width = max(len(name) for name, _ in rows)
    table = [f"| {'benchmark':{width}s} | result |", f"|{'-' * (width + 2)}|--------|"]
    table += [f"| {name:{width}s} | {value} |" for name, value in rows]
    print("\n".join(table))
    if options.record is not None:
        machine = f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
        if torch.cuda.is_available():
            machine += f", {torch.cuda.get_device_name()}"
        header = (f"\n## {datetime.date.today().isoformat()} — {machine}\n\n"
                  f"`python -m nerf_edit_scripts.benchmarks.run_all --record {options.record}`\n\n")
        with open(options.record, "a") as f:
            f.write(header + "\n".join(table) + "\n")


if __name__ == "__main__":
    main()
