"""``crowdwatch bench edge``: the whole edge pipeline against Ultralytics' own solution.

Both sides count people on the same PETS 2009 S2L1 frames, with the same weights
(``yolo11n_coco_640.onnx`` is the ONNX export of ``yolo11n_coco.pt``), the same input size,
confidence and NMS IoU, and all cores:

- **ours**: the real edge path, a :class:`~crowdwatch.edge.worker.CameraWorker` on the video
  file: OpenCV decode -> ONNX Runtime detector -> tracker -> zone/line counting -> an encoded
  count message.  The message interval is one frame, so every frame's count comes back through
  the published messages (more encoding than the production 5 s interval: a pessimistic figure).
- **Ultralytics**: ``ultralytics.solutions.ObjectCounter`` with a whole-frame region, which
  runs ``model.track`` (ByteTrack) on every frame, as its documentation shows.

Each side runs ``--repeat`` times, alternating, and the medians are reported: frames/s,
ms/frame, the share of the frame time spent outside the model's forward pass (overhead), and
the per-frame count MAE against the annotated people.  The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from crowdwatch.contracts.config import (
    Camera,
    DetectorConfig,
    LocalizedName,
    Zone,
    default_shared_dir,
)
from crowdwatch.contracts.errors import CrowdwatchError
from crowdwatch.edge.detector import load_backend
from crowdwatch.edge.source import open_camera
from crowdwatch.edge.worker import CameraWorker
from crowdwatch.evaluation.datasets import pets_truth, pets_video
from crowdwatch.evaluation.scoring import count_errors

SUMMARY = "edge pipeline frames/s vs Ultralytics' ObjectCounter on PETS (same weights and size)"

PETS_SIZE = (768, 576)
TARGET_RATIO = 1.5
TARGET_OVERHEAD = 0.15


@dataclass(frozen=True, slots=True)
class PipelineRun:
    """One pass of one pipeline over the frames."""

    frames: int
    wall_s: float
    forward_s: float
    counts: dict[int, int]
    """people counted per frame number"""

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s else 0.0

    @property
    def overhead(self) -> float:
        """Share of the time outside the model's forward pass."""
        return 1 - self.forward_s / self.wall_s if self.wall_s else 0.0


@dataclass(frozen=True, slots=True)
class PipelineSummary:
    """Medians over the repeats, and the count error of the last run."""

    name: str
    fps: float
    ms_per_frame: float
    overhead: float
    mae: float
    runs: int


def _camera(video: Path) -> Camera:
    width, height = PETS_SIZE
    return Camera(
        id="pets",
        source=str(video),
        frame_size=PETS_SIZE,
        zones=[
            Zone(
                id="walkway",
                name=LocalizedName(zh="步行道", en="Walkway"),
                polygon=[(0, 0), (width, 0), (width, height), (0, height)],
            )
        ],
    )


def _first_frame(video: Path) -> NDArray[np.uint8]:
    capture = cv2.VideoCapture(str(video))
    try:
        ok, image = capture.read()
    finally:
        capture.release()
    if not ok:
        raise CrowdwatchError(f"{video}: cannot read its first frame")
    return np.asarray(image, dtype=np.uint8)


def run_ours(video: Path, config: DetectorConfig, frames: int) -> PipelineRun:
    """The edge worker on ``frames`` frames of ``video``; counts read back from its messages.

    Args:
        video: the PETS video.
        config: the detector section (ONNX Runtime path).
        frames: how many frames to read.

    Returns:
        Timing and per-frame counts.
    """
    detector = load_backend(config)
    detector.detect(_first_frame(video))  # warm-up: allocations outside the timed run
    detector.forward_s = 0.0
    camera = _camera(video)
    messages: list[dict[str, Any]] = []

    def publish(topic: str, payload: bytes, retain: bool) -> None:
        if topic.endswith("/counts"):
            messages.append(json.loads(payload))

    with open_camera(camera, max_frames=frames) as source:
        fps = source.fps or 10.0
        worker = CameraWorker(
            "bench", camera, source, detector, publish, topic_prefix="bench", interval_s=1 / fps
        )
        started = time.perf_counter()
        worker.run(threading.Event())
        wall_s = time.perf_counter() - started
    # Intervals hold consecutive frames: a message of exactly one frame gives that frame's count.
    counts: dict[int, int] = {}
    frame = 0
    for message in messages:
        if message["frames"] == 1:
            counts[frame] = int(message["zones"][0]["count"])
        frame += int(message["frames"])
    return PipelineRun(frame, wall_s, detector.forward_s, counts)


def run_ultralytics(
    video: Path, model: Path, frames: int, input_size: int, confidence: float, iou: float
) -> PipelineRun:
    """``ultralytics.solutions.ObjectCounter`` (``model.track`` each frame) on the same frames.

    Args:
        video: the PETS video.
        model: ``.pt`` or ``.onnx`` weights.
        frames: how many frames to read.
        input_size: ``imgsz``.
        confidence: ``conf``.
        iou: NMS ``iou``.

    Returns:
        Timing (forward pass from Ultralytics' own ``speed``) and tracked people per frame.
    """
    from crowdwatch.edge.ultralytics_adapter import import_ultralytics, set_torch_threads

    import_ultralytics(str(model))  # offline settings, ModelError when missing
    solutions = importlib.import_module("ultralytics.solutions")
    width, height = PETS_SIZE
    counter: Any = solutions.ObjectCounter(
        model=str(model),
        region=[(0, 0), (width, 0), (width, height), (0, height)],
        classes=[0],
        conf=confidence,
        iou=iou,
        imgsz=input_size,
        show=False,
        verbose=False,
    )
    set_torch_threads(0)  # Ultralytics leaves one core idle; give it all, like ours
    counter(_first_frame(video))  # warm-up: Ultralytics builds its predictor on the first call
    capture = cv2.VideoCapture(str(video))
    counts: dict[int, int] = {}
    forward_s = 0.0
    try:
        started = time.perf_counter()
        for number in range(frames):
            ok, image = capture.read()
            if not ok:
                break
            counter(image)
            forward_s += float(counter.tracks.speed.get("inference") or 0.0) / 1000
            counts[number] = len(counter.track_ids)
        wall_s = time.perf_counter() - started
    finally:
        capture.release()
    return PipelineRun(len(counts), wall_s, forward_s, counts)


def summarise(name: str, runs: list[PipelineRun], truth: dict[int, int]) -> PipelineSummary:
    """Medians of the runs; MAE of the last run's counts on the annotated frames."""
    last = runs[-1]
    frames = [f for f in sorted(last.counts) if f in truth]
    errors = count_errors([last.counts[f] for f in frames], [truth[f] for f in frames])
    fps = statistics.median(r.fps for r in runs)
    return PipelineSummary(
        name=name,
        fps=round(fps, 2),
        ms_per_frame=round(1000 / fps, 1) if fps else 0.0,
        overhead=round(statistics.median(r.overhead for r in runs), 3),
        mae=round(errors.mae, 3),
        runs=len(runs),
    )


def run(args: argparse.Namespace) -> int:
    """``crowdwatch bench edge``: prints both sides, the ratio, and the JSON line."""
    shared = default_shared_dir()
    video = pets_video(shared)
    models = shared / "models"
    onnx = models / "yolo11n_coco_640.onnx"
    baseline = models / ("yolo11n_coco.pt" if args.baseline_model == "pt" else onnx.name)
    for path in (video, onnx, baseline):
        if not path.exists():
            raise CrowdwatchError(f"bench edge needs {path} (CROWDWATCH_SHARED_DIR)")
    truth = {f: len(b) for f, b in pets_truth(shared).items()}
    config = DetectorConfig(
        model=str(onnx), confidence=args.confidence, iou=args.iou, input_size=args.input_size
    )
    ours: list[PipelineRun] = []
    theirs: list[PipelineRun] = []
    for i in range(args.repeat):
        ours.append(run_ours(video, config, args.frames))
        theirs.append(
            run_ultralytics(
                video, baseline, args.frames, args.input_size, args.confidence, args.iou
            )
        )
        print(
            f"run {i + 1}/{args.repeat}: ours {ours[-1].fps:.1f} fps, "
            f"Ultralytics {theirs[-1].fps:.1f} fps",
            flush=True,
        )
    a, b = (
        summarise("crowdwatch edge", ours, truth),
        summarise("ultralytics ObjectCounter", theirs, truth),
    )
    ratio = a.fps / b.fps if b.fps else 0.0
    print(f"\n{'pipeline':<28}{'fps':>8}{'ms/frame':>10}{'overhead':>10}{'MAE':>8}")
    for s in (a, b):
        print(f"{s.name:<28}{s.fps:>8.1f}{s.ms_per_frame:>10.1f}{s.overhead:>9.0%}{s.mae:>8.3f}")
    print(
        f"ratio {ratio:.2f}x (target >= {TARGET_RATIO}x at equal or better MAE); overhead "
        f"{a.overhead:.0%} (target < {TARGET_OVERHEAD:.0%}); {args.frames} frames x "
        f"{args.repeat}, {os.cpu_count()} cores, baseline weights {baseline.name}"
    )
    print(
        json.dumps(
            {
                "benchmark": "edge",
                "frames": args.frames,
                "repeat": args.repeat,
                "input_size": args.input_size,
                "ours": asdict(a),
                "ultralytics": asdict(b),
                "ratio": round(ratio, 3),
                "baseline_weights": baseline.name,
            }
        )
    )
    return 0
