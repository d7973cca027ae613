"""``crowdwatch bench dense``: the dense counter's seconds per 1080p frame vs tiled detection.

The benchmark lives in :mod:`crowdwatch.evaluation.bench_dense` (it reads the beach images of
the shared data when present); this module registers it and its options, kept light so that
``crowdwatch --help`` loads no model runtime.
"""

from __future__ import annotations

import argparse

SUMMARY = "dense counter s per 1080p frame vs the detector with 320 px tiles (same frames)"
EXTRAS = ("edge",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``crowdwatch bench dense``."""
    parser.add_argument("--json", action="store_true", help="(the last line is always JSON)")
    parser.add_argument(
        "--dense-model",
        help="density model (.onnx) (default: models/crowd_counter.onnx of the checkout)",
    )
    parser.add_argument(
        "--frames", type=int, default=5, help="beach_webcam_a images to use, at most 10 (5)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="dense passes over the frames (3)")
    parser.add_argument(
        "--baseline-repeat", type=int, default=1, help="detector passes over the frames (1)"
    )
    parser.add_argument(
        "--synthetic", action="store_true", help="a synthetic frame even when the data is there"
    )


def run(args: argparse.Namespace) -> int:
    from crowdwatch.evaluation.bench_dense import run as run_bench

    return run_bench(args)
