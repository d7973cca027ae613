"""Command-line options of ``crowdwatch count`` and ``eval``, kept light (no OpenCV, no models).

``crowdwatch --help`` builds every parser, so nothing heavy may be imported here.
"""

from __future__ import annotations

import argparse

DATASETS = ("pets", "mall", "shanghaitech_b", "beach", "beach_days")
"""The real data sets under the shared folder, evaluated by default."""
GENERATED = ("empty_ground",)
"""Generated frames, on request: they need no shared data and are no real scene."""
VEHICLE_SETS = {"ngsim": ("ngsim_seq1", "ngsim_seq2")}
"""Road data sets, on request (vehicles, not people): a name that stands for its sequences."""
METHODS = ("detect", "dense", "auto")
"""How people are counted: boxes of the detector, the density map of the dense counter, or
per frame the one the edge's ``mode: auto`` rule picks."""
DEFAULT_METHODS = ("detect", "dense")
"""The methods evaluated without ``--methods``: ``auto`` only on request."""
DENSE_MODEL_HELP = "density model (.onnx) of the dense counter (default: models/crowd_counter.onnx)"


def add_count_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``crowdwatch count``."""
    parser.add_argument("sources", nargs="+", metavar="SOURCE", help="image, image folder or video")
    parser.add_argument("--json", action="store_true", help="one JSON object per frame")
    parser.add_argument("--every", type=int, default=1, help="analyse every Nth video frame")
    parser.add_argument(
        "--zone", help="count only people standing in this polygon: x1,y1,x2,y2,x3,y3,..."
    )
    parser.add_argument(
        "--classes",
        default="person",
        help="what to count: person (default), vehicle (car, bus, truck, motorcycle, one box "
        "per vehicle), or a comma list of person, bicycle, car, motorcycle, bus, truck, vehicle; "
        "counts per class are printed too",
    )
    parser.add_argument(
        "--model",
        help="weights (.onnx, .pt, OpenVINO folder) (default: the config's detector.model, "
        "else $CROWDWATCH_SHARED_DIR/models/yolo11n_coco_640.onnx)",
    )
    parser.add_argument("--input-size", type=int, help="model input side (default 640)")
    parser.add_argument("--confidence", type=float, help="minimum score (default 0.25)")
    parser.add_argument(
        "--tiles", help="tiled inference for small people: SIZE[,OVERLAP], e.g. 320,0.2"
    )
    parser.add_argument(
        "--backend", choices=["auto", "onnxruntime", "ultralytics"], help="detector backend"
    )
    parser.add_argument(
        "--mode",
        choices=["detect", "dense", "auto"],
        default="detect",
        help="detect: people boxes (default); dense: the density-map counter; auto: the edge's "
        "per-frame choice between them",
    )
    parser.add_argument(
        "--dense-model",
        help="density model (.onnx) of --mode dense/auto (default: the config's "
        "edge.dense.model, else models/crowd_counter.onnx)",
    )


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``crowdwatch eval``."""
    parser.add_argument("--json", action="store_true", help="end with one JSON object")
    parser.add_argument(
        "--datasets",
        default=",".join(DATASETS),
        help=(
            f"comma-separated, from {', '.join(DATASETS + GENERATED + tuple(VEHICLE_SETS))} "
            f"(default: {', '.join(DATASETS)}); ngsim counts vehicles, per sequence"
        ),
    )
    parser.add_argument(
        "--limit", type=int, help="at most N samples per data set, spread over it (quick look)"
    )
    parser.add_argument(
        "--subset",
        choices=["all", "even", "odd"],
        default="all",
        help="evaluate only the even or odd samples (tune on one half, report the other); "
        "the dense counter never gets the frames it was trained on (Mall 1-640)",
    )
    parser.add_argument(
        "--methods",
        help=f"comma-separated, from {', '.join(METHODS)} (default: {','.join(DEFAULT_METHODS)} "
        "when the dense model exists, else detect); auto: per frame the count the edge's "
        "mode: auto rule picks from both",
    )
    parser.add_argument("--dense-model", help=DENSE_MODEL_HELP)
    parser.add_argument("--model", help="use this model instead of the recommended one")
    parser.add_argument("--confidence", type=float, help="override the recommended confidence")
    parser.add_argument("--no-lines", action="store_true", help="skip PETS line crossing")
