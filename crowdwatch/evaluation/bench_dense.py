"""``crowdwatch bench dense``: seconds per 1080p frame of the dense counter, beside detection.

Both sides count people on the same 1920x1080 frames (the ``beach_webcam_a`` images when the
shared data is there, else one synthetic frame), with all cores:

- **dense**: :class:`~crowdwatch.edge.dense.DensityCounter` (the density model on ONNX
  Runtime) at its full 1920 px, the whole ``density()`` call timed (colour conversion,
  quality check, padding, forward pass, cropping);
- **detect, 320 px tiles**: the edge's detector with the project's best setting for crowds
  (``crowdwatch.evaluation.settings.wide_detector``: ``yolo11n_coco_640.onnx``, 320 px tiles
  with 20 % overlap, each fitted to the 640 input), ``detect()`` timed.

Each frame is counted ``--repeat`` times by the dense counter (the baseline, which is many
times slower, ``--baseline-repeat`` times); the median and 90th percentile of the per-frame
seconds are reported, their ratio, the count error against the beach labels (when used),
and the process's peak resident memory after the dense side alone and after both.  The
target of the edge box is at most 1.5 s per 1080p frame.  The last stdout line is one JSON
object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from crowdwatch.contracts.config import default_crowd_counter_path, default_shared_dir
from crowdwatch.contracts.errors import CrowdwatchError
from crowdwatch.edge.dense import DensityCounter
from crowdwatch.edge.detector import load_detector
from crowdwatch.evaluation.datasets import DatasetMissing, load_beach
from crowdwatch.evaluation.scoring import count_errors
from crowdwatch.evaluation.settings import describe, wide_detector

FRAME_SIZE = (1920, 1080)
TARGET_S = 1.5
"""Seconds per 1080p frame the dense counter must stay under on the edge box (median)."""


@dataclass(frozen=True, slots=True)
class Frames:
    """The frames both sides count, where they come from and their true counts if known."""

    images: list[NDArray[np.uint8]]
    source: str
    truths: list[int] | None


@dataclass(frozen=True, slots=True)
class SideResult:
    """Timing of one side over every frame and repeat."""

    name: str
    settings: str
    timings: int
    median_s: float
    p90_s: float
    mean_count: float
    mae: float | None
    """against the beach labels; ``None`` on the synthetic frame"""
    peak_rss_mib: float
    """the process's peak resident memory once this side has run (it includes earlier sides)"""


def bench_frames(shared_dir: Path, count: int, synthetic: bool) -> Frames:
    """Up to ``count`` beach images at 1920x1080, else one synthetic 1920x1080 frame.

    The synthetic frame (a seeded mix of gradients and noise) only measures speed: the dense
    model's time depends on the frame's size, not on what it shows.
    """
    if not synthetic:
        try:
            beach = load_beach(shared_dir)
        except DatasetMissing:
            beach = None
        if beach is not None:
            indices = beach.select("all", count)
            images = [_at_1080p(image) for image in beach.read(indices)]
            return Frames(images, "beach_webcam_a", [beach.truths[i] for i in indices])
    width, height = FRAME_SIZE
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 200, width, dtype=np.float32)[None, :, None]
    noise = rng.normal(0, 25, (height, width, 3)).astype(np.float32)
    image = np.clip(ramp + noise + 30, 0, 255).astype(np.uint8)
    return Frames([image], "synthetic", None)


def _at_1080p(image: NDArray[np.uint8]) -> NDArray[np.uint8]:
    if (image.shape[1], image.shape[0]) == FRAME_SIZE:
        return image
    return np.asarray(cv2.resize(image, FRAME_SIZE, interpolation=cv2.INTER_AREA), dtype=np.uint8)


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def time_side(
    name: str,
    settings: str,
    count: Callable[[NDArray[np.uint8]], float],
    frames: Frames,
    repeat: int,
    warm_up: NDArray[np.uint8] | None = None,
) -> SideResult:
    """Count every frame ``repeat`` times after one untimed warm-up call.

    Args:
        name: label of the side.
        settings: its settings, for the report.
        count: people in one frame (the timed call).
        frames: what to count.
        repeat: passes over the frames.
        warm_up: the image of the warm-up call (default: the first frame).

    Returns:
        Median and 90th percentile of the seconds per frame, the counts' error.
    """
    # Warm-up: ONNX Runtime allocates its buffers on the first run of an input shape.
    count(frames.images[0] if warm_up is None else warm_up)
    seconds: list[float] = []
    counts: list[float] = []
    for _ in range(repeat):
        for image in frames.images:
            started = time.perf_counter()
            people = count(image)
            seconds.append(time.perf_counter() - started)
            counts.append(people)
    last = counts[-len(frames.images) :]
    mae = count_errors(last, frames.truths).mae if frames.truths is not None else None
    return SideResult(
        name=name,
        settings=settings,
        timings=len(seconds),
        median_s=round(statistics.median(seconds), 3),
        p90_s=round(float(np.percentile(seconds, 90)), 3),
        mean_count=round(float(np.mean(last)), 1),
        mae=round(mae, 2) if mae is not None else None,
        peak_rss_mib=round(peak_rss_mib(), 1),
    )


def _positive(value: int, flag: str) -> int:
    if value < 1:
        raise CrowdwatchError(f"{flag}: expected a positive number, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    """``crowdwatch bench dense``: prints both sides, the ratio, and the JSON line."""
    repeat = _positive(args.repeat, "--repeat")
    baseline_repeat = _positive(args.baseline_repeat, "--baseline-repeat")
    shared = default_shared_dir()
    model = Path(args.dense_model) if args.dense_model else default_crowd_counter_path()
    if not model.is_file():
        raise CrowdwatchError(f"--dense-model: no density model at {model}")
    detector_config = wide_detector(shared / "models")
    if not Path(detector_config.model).is_file():
        raise CrowdwatchError(
            f"bench dense needs the baseline detector {detector_config.model} "
            "(CROWDWATCH_SHARED_DIR)"
        )
    frames = bench_frames(shared, _positive(args.frames, "--frames"), args.synthetic)
    rss_start = peak_rss_mib()
    # The dense side runs first, alone in memory, so its peak RSS is its own.
    counter = DensityCounter(model)
    dense = time_side(
        "dense",
        f"{model.name} max side {counter.max_side}, {counter.threads} threads",
        lambda image: counter.density(image).total(),
        frames,
        repeat,
    )
    print(f"dense: median {dense.median_s:.3f} s, p90 {dense.p90_s:.3f} s per frame", flush=True)
    detector = load_detector(detector_config)
    tile = detector_config.tiles.size if detector_config.tiles is not None else FRAME_SIZE[0]
    detect = time_side(
        "detect tiles 320",
        describe(detector_config),
        lambda image: float(len(detector.detect(image))),
        frames,
        baseline_repeat,
        # One tile is enough: every tile runs at the same model input size.
        warm_up=frames.images[0][:tile, :tile],
    )
    ratio = detect.median_s / dense.median_s if dense.median_s else 0.0
    met = dense.median_s <= TARGET_S
    print(
        f"\n{'side':<18}{'median s':>10}{'p90 s':>8}{'n':>4}{'mean count':>12}{'MAE':>8}"
        f"{'peak RSS MiB':>14}  settings"
    )
    for side in (dense, detect):
        mae = f"{side.mae:.2f}" if side.mae is not None else "-"
        print(
            f"{side.name:<18}{side.median_s:>10.3f}{side.p90_s:>8.3f}{side.timings:>4}"
            f"{side.mean_count:>12.1f}{mae:>8}{side.peak_rss_mib:>14.0f}  {side.settings}"
        )
    print(
        f"tiled detection takes {ratio:.1f}x the dense counter's time; target <= {TARGET_S} s per 1080p "
        f"frame: {'met' if met else 'NOT met'} ({dense.median_s:.3f} s median); "
        f"{len(frames.images)} {frames.source} frames {FRAME_SIZE[0]}x{FRAME_SIZE[1]}, "
        f"{os.cpu_count()} cores; RSS before the models {rss_start:.0f} MiB"
    )
    print(json.dumps(_report(frames, dense, detect, ratio, repeat, baseline_repeat, rss_start)))
    return 0


def _report(
    frames: Frames,
    dense: SideResult,
    detect: SideResult,
    ratio: float,
    repeat: int,
    baseline_repeat: int,
    rss_start: float,
) -> dict[str, object]:
    return {
        "benchmark": "dense",
        "source": frames.source,
        "frames": len(frames.images),
        "frame_size": list(FRAME_SIZE),
        "repeat": repeat,
        "baseline_repeat": baseline_repeat,
        "cores": os.cpu_count(),
        "dense": asdict(dense),
        "detect_tiles_320": asdict(detect),
        "ratio": round(ratio, 2),
        "target_s": TARGET_S,
        "target_met": dense.median_s <= TARGET_S,
        "rss_before_models_mib": round(rss_start, 1),
    }
