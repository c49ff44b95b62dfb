"""Benchmarks: speed, memory and model quality, against the original script (bench/reference.py).

Run them with `make bench` (or `python -m bench --help`); results land in
bench/results/*.json and the tables in BENCHMARKS.md. They are never timed
tests: CI only runs the smoke mode, which checks the plumbing, not the numbers.
"""
