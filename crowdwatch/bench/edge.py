"""``crowdwatch bench edge``: the edge pipeline against Ultralytics' ObjectCounter on PETS.

The benchmark lives in :mod:`crowdwatch.evaluation.bench_edge` (it needs the data sets and,
for the baseline, ``crowdwatch[ultralytics]``); this module only registers it.
"""

from __future__ import annotations

import argparse

SUMMARY = "edge pipeline frames/s vs Ultralytics' ObjectCounter on PETS (same weights and size)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from crowdwatch.evaluation.bench_edge import add_arguments as add

    add(parser)


def run(args: argparse.Namespace) -> int:
    from crowdwatch.evaluation.bench_edge import run as run_bench

    return run_bench(args)
