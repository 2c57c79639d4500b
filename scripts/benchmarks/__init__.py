"""Benchmarks: each module times one part side by side with its baseline in one run (`python -m
nerf_edit_scripts.benchmarks.<module>`; `run_all` runs every one and records the table in docs/benchmarks.md)."""
