"""The beach webcam's labelled days: head points per frame and annotator, and the split.

Two folders under ``CROWDWATCH_SHARED_DIR/data`` show the same fixed webcam (1920x1080, file
name = unix time of the hourly grab): ``beach_webcam_a`` (10 Aug 2022, one annotator,
``labels_points.csv`` rows ``Label,X,Y,Image,Width,Height``) and ``beach_webcam_days`` (9, 12,
14 and 18 Aug, ``points.csv`` rows ``image,annotator,x,y`` and ``counts.json`` naming every
annotator of a frame, also those who marked nobody).

The split was fixed before any figure of a model trained on these days was looked at
(``models/crowd_counter.md``): 18 Aug is never trained on, used for early stopping or any
choice, and is scored once at the end; the other days are training data and their figures
are "not a result".
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from crowdwatch.evaluation.datasets import DatasetMissing

TEST_DAYS = frozenset({"2022-08-18"})
"""Days never trained on: the held-out result."""
TRAIN_DAYS = frozenset({"2022-08-09", "2022-08-10", "2022-08-12", "2022-08-14"})
"""Days the shipped counter trains on (10 Aug is ``beach_webcam_a``)."""
BEACH_A_ANNOTATOR = "beach_webcam_a"
"""The one annotator of ``beach_webcam_a`` (the source names nobody)."""


@dataclass(frozen=True, slots=True)
class BeachFrame:
    """One labelled frame: its file, its UTC day and each annotator's head points.

    Args:
        path: the JPEG.
        day: ``YYYY-MM-DD`` (UTC) read from the file name (a unix time).
        points: annotator -> ``(N, 2)`` float32 x, y pixels; an empty array for an annotator
            who labelled the frame empty.
    """

    path: Path
    day: str
    points: dict[str, NDArray[np.float32]]

    @property
    def counts(self) -> dict[str, int]:
        """People per annotator."""
        return {name: len(marks) for name, marks in self.points.items()}

    @property
    def mean_count(self) -> float:
        """The annotators' mean count: the truth a count is scored against."""
        return float(np.mean(list(self.counts.values())))


def frame_day(path: Path) -> str:
    """``YYYY-MM-DD`` (UTC) of a webcam file named by its unix time, e.g. ``1660798800.jpg``.

    Raises:
        DatasetMissing: the name is not a unix time.
    """
    try:
        stamp = int(path.stem)
    except ValueError as exc:
        raise DatasetMissing(f"{path}: expected a file named by its unix time") from exc
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d")


def _points(rows: list[tuple[float, float]]) -> NDArray[np.float32]:
    return np.asarray(rows, dtype=np.float32).reshape(-1, 2)


def read_point_csv(path: Path) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """Marks of an ``image,annotator,x,y`` CSV: image -> annotator -> ``[(x, y), ...]``.

    Raises:
        DatasetMissing: the file is absent or a row is not ``image,annotator,x,y``.
    """
    if not path.is_file():
        raise DatasetMissing(f"point labels not found at {path}")
    marks: dict[str, dict[str, list[tuple[float, float]]]] = {}
    with path.open(newline="") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):
            try:
                xy = (float(row["x"]), float(row["y"]))
                marks.setdefault(row["image"], {}).setdefault(row["annotator"], []).append(xy)
            except (KeyError, TypeError, ValueError) as exc:
                raise DatasetMissing(
                    f"{path}:{number}: expected columns image,annotator,x,y with numbers, got {row}"
                ) from exc
    return marks


def load_beach_days_frames(shared_dir: Path) -> list[BeachFrame]:
    """The 40 frames of ``beach_webcam_days`` with every annotator's points, in time order."""
    root = shared_dir / "data" / "beach_webcam_days"
    counts_file = root / "counts.json"
    if not counts_file.is_file():
        raise DatasetMissing(f"beach_webcam_days counts not found at {counts_file}")
    annotators: dict[str, dict[str, int]] = json.loads(counts_file.read_text())
    marks = read_point_csv(root / "points.csv")
    frames = []
    for image in sorted(annotators):
        path = root / "images" / image
        if not path.is_file():
            raise DatasetMissing(f"{path}: listed in counts.json but absent")
        by_annotator = marks.get(image, {})
        points = {name: _points(by_annotator.get(name, [])) for name in annotators[image]}
        for name, expected in annotators[image].items():
            if len(points[name]) != expected:
                raise DatasetMissing(
                    f"{counts_file}: {image} {name} says {expected} people, "
                    f"points.csv has {len(points[name])}"
                )
        frames.append(BeachFrame(path, frame_day(path), points))
    return frames


def load_beach_a_frames(shared_dir: Path) -> list[BeachFrame]:
    """The 10 frames of ``beach_webcam_a`` (one annotator) with their points."""
    root = shared_dir / "data" / "beach_webcam_a"
    labels = root / "labels_points.csv"
    if not labels.is_file():
        raise DatasetMissing(f"beach_webcam_a labels not found at {labels}")
    marks: dict[str, list[tuple[float, float]]] = {}
    with labels.open(newline="") as handle:
        for row in csv.reader(handle):
            if len(row) >= 4 and row[1].replace(".", "", 1).isdigit():
                marks.setdefault(row[3], []).append((float(row[1]), float(row[2])))
    images = sorted((root / "images").glob("*.jpg"))
    if not images:
        raise DatasetMissing(f"no images under {root / 'images'}")
    return [
        BeachFrame(path, frame_day(path), {BEACH_A_ANNOTATOR: _points(marks.get(path.name, []))})
        for path in images
    ]


def load_beach_frames(shared_dir: Path) -> list[BeachFrame]:
    """Every labelled frame of the webcam (``beach_webcam_a`` and ``beach_webcam_days``)."""
    frames = load_beach_a_frames(shared_dir) + load_beach_days_frames(shared_dir)
    return sorted(frames, key=lambda frame: frame.path.name)
