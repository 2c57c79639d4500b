"""The conformance tier's cost: each test of tests/nerf_edit/test_full_size*.py (a real architecture at full size,
random weights, once at a small input on the CPU, at 512² on a CUDA GPU when there is one) in its own process, its wall seconds and its peak resident
memory (the CPU stand-in for the GPU memory rows, in fp32). One torch thread, as tests/conftest.py sets for every
test process.

    python scripts/benchmarks/bench_conformance.py

A test that fails prints its row as "failed" (its output follows): the numbers are only for what passed.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from nerf_edit_scripts.benchmarks.bench_common import run_cli

ROOT = Path(__file__).resolve().parents[2]
TESTS = ["tests/nerf_edit/test_full_size.py", "tests/nerf_edit/test_full_size_training.py",
         "tests/nerf_edit/test_full_size_vimaedit.py"]
# Runs one test id in this interpreter and prints the process's peak resident set (Linux: KiB).
RUN_ONE = ("import resource, sys, pytest; code = pytest.main(['-q', '-p', 'no:cacheprovider', sys.argv[1]]); "
           "print('PEAK_RSS_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(code)")


def test_ids() -> list[str]:
    """The tier's tests that can run here: the `gpu` cases only with a CUDA GPU."""
    import torch

    marker = "conformance" if torch.cuda.is_available() else "conformance and not gpu"
    listing = subprocess.run([sys.executable, "-m", "pytest", "-q", "--collect-only", "-m", marker, *TESTS],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [line.strip() for line in listing.splitlines() if line.startswith(tuple(test + "::" for test in TESTS))]


def measure(options) -> list[tuple[str, str]]:
    rows = []
    tests = test_ids()
    for number, test in enumerate(tests, 1):
        print(f"[{number}/{len(tests)}] {test}", file=sys.stderr, flush=True)  # progress, also in a log
        begin = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", RUN_ONE, test], cwd=ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - begin
        name = f"conformance {test.split('::', 1)[1]}"
        if result.returncode != 0:
            rows.append((name, "failed"))
            print(result.stdout[-3000:], result.stderr[-2000:], file=sys.stderr)
            continue
        peak = next(int(line.split()[1]) for line in result.stdout.splitlines() if line.startswith("PEAK_RSS_KIB"))
        rows.append((name, f"{seconds:.1f} s, peak RSS {peak / 2**20:.1f} GiB"))
    return rows


def main() -> None:
    run_cli(__doc__, measure, width=90)


if __name__ == "__main__":
    main()
