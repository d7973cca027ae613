"""``crowdwatch bench edge``: the edge pipeline against Ultralytics' ObjectCounter on PETS.

The benchmark lives in :mod:`crowdwatch.evaluation.bench_edge` (it needs the data sets and,
for the baseline, ``crowdwatch[ultralytics]``); this module registers it and its options, kept
light so that ``crowdwatch --help`` loads no OpenCV on a server that has none.
"""

from __future__ import annotations

import argparse

SUMMARY = "edge pipeline frames/s vs Ultralytics' ObjectCounter on PETS (same weights and size)"
EXTRAS = ("edge", "ultralytics")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``crowdwatch bench edge``."""
    parser.add_argument("--json", action="store_true", help="(the last line is always JSON)")
    parser.add_argument("--frames", type=int, default=300, help="frames of PETS per run (300)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side (3)")
    parser.add_argument("--input-size", type=int, default=640, help="model input side (640)")
    parser.add_argument("--confidence", type=float, default=0.25, help="minimum score (0.25)")
    parser.add_argument("--iou", type=float, default=0.5, help="NMS IoU of both sides (0.5)")
    parser.add_argument(
        "--baseline-model",
        default="pt",
        choices=["pt", "onnx"],
        help="weights Ultralytics runs: the .pt checkpoint (its usual path, default) or the "
        "same .onnx file our pipeline runs",
    )


def run(args: argparse.Namespace) -> int:
    from crowdwatch.evaluation.bench_edge import run as run_bench

    return run_bench(args)
