"""Vehicles among the detections: the COCO classes a road camera counts, one box per vehicle.

COCO splits motor vehicles into car, bus, truck and motorcycle, and a small detector is
unsure between them: one van may come out as a car box *and* a truck box, which class-wise
NMS keeps both of (it only suppresses within a class, so that a person never hides a
bicycle).  For a vehicle count that is a double count, so the vehicle classes are merged
before counting: overlapping boxes of *different* vehicle classes are one vehicle, the class
of the most confident box.  Other classes (people) are left alone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import cv2
import numpy as np
from numpy.typing import NDArray

from crowdwatch.contracts.config import Camera, TrackedClass
from crowdwatch.contracts.errors import ConfigError
from crowdwatch.edge.detections import Detections
from crowdwatch.edge.detector import COCO_CLASS_IDS, Detector

VEHICLES: tuple[TrackedClass, ...] = (
    TrackedClass.CAR,
    TrackedClass.BUS,
    TrackedClass.TRUCK,
    TrackedClass.MOTORCYCLE,
)
"""The motor vehicles a road camera counts (bicycles are no traffic in the congestion sense)."""

CLASS_GROUPS: dict[str, tuple[TrackedClass, ...]] = {"vehicle": VEHICLES}
"""Names that stand for several classes in ``--classes``."""

CLASS_NAMES: dict[int, str] = {index: name.value for name, index in COCO_CLASS_IDS.items()}
"""COCO index -> class name, for per-class counts."""

MERGE_IOU = 0.6
"""Boxes of two vehicle classes overlapping this much are one vehicle."""


def parse_classes(text: str) -> tuple[TrackedClass, ...]:
    """``--classes``: ``person``, ``vehicle`` or a comma list of classes and groups.

    Args:
        text: e.g. ``"vehicle"``, ``"person,vehicle"``, ``"car,bus"``.

    Returns:
        The classes, unique, in the order given.

    Raises:
        ConfigError: an unknown name (the message lists the known ones).

    Example:
        >>> [c.value for c in parse_classes("person,vehicle")]
        ['person', 'car', 'bus', 'truck', 'motorcycle']
    """
    known = [c.value for c in TrackedClass] + list(CLASS_GROUPS)
    chosen: list[TrackedClass] = []
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    if not names:
        raise ConfigError(f"--classes: expected one or more of {', '.join(known)}, got {text!r}")
    for name in names:
        if name in CLASS_GROUPS:
            members: Sequence[TrackedClass] = CLASS_GROUPS[name]
        elif name in known:
            members = (TrackedClass(name),)
        else:
            raise ConfigError(
                f"--classes: unknown class {name!r}, expected one of {', '.join(known)}"
            )
        chosen.extend(m for m in members if m not in chosen)
    return tuple(chosen)


def is_vehicle(class_id: NDArray[np.integer]) -> NDArray[np.bool_]:
    """Which COCO class indices are vehicles, ``(N,)``."""
    ids = [COCO_CLASS_IDS[c] for c in VEHICLES]
    return np.asarray(np.isin(class_id, ids), dtype=np.bool_)


def merge_vehicle_classes(detections: Detections, iou: float = MERGE_IOU) -> Detections:
    """One box per vehicle: NMS across the vehicle classes, other classes untouched.

    Args:
        detections: one frame's boxes (any classes).
        iou: boxes of vehicle classes overlapping more than this are the same vehicle.

    Returns:
        The kept boxes, each with the class of the most confident box of its vehicle.

    Example:
        >>> boxes = np.array([[0, 0, 40, 20], [1, 0, 41, 20], [100, 0, 140, 20]], np.float32)
        >>> found = Detections(boxes, np.array([0.8, 0.5, 0.6], np.float32), np.array([2, 7, 2]))
        >>> merge_vehicle_classes(found).class_id.tolist()
        [2, 2]
    """
    vehicle = is_vehicle(detections.class_id)
    if np.count_nonzero(vehicle) < 2:
        return detections
    index = np.flatnonzero(vehicle)
    xyxy = detections.xyxy[index]
    xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
    kept = cv2.dnn.NMSBoxes(
        xywh.tolist(), detections.confidence[index].tolist(), 0.0, iou, top_k=len(index)
    )
    keep = np.concatenate(
        [np.flatnonzero(~vehicle), index[np.asarray(kept, dtype=np.int64).reshape(-1)]]
    )
    keep.sort()
    return Detections(
        xyxy=detections.xyxy[keep],
        confidence=detections.confidence[keep],
        class_id=detections.class_id[keep],
    )


def counts_by_class(detections: Detections) -> dict[str, int]:
    """How many boxes of each class, by class name (``{"car": 30, "truck": 2}``)."""
    tally = Counter(CLASS_NAMES.get(int(c), str(int(c))) for c in detections.class_id)
    return dict(sorted(tally.items()))


class VehicleDetector:
    """A detector whose vehicle boxes are merged across classes (see the module doc).

    Args:
        detector: the model (tiled or not) detecting the vehicle classes.
        iou: see :func:`merge_vehicle_classes`.
    """

    def __init__(self, detector: Detector, iou: float = MERGE_IOU) -> None:
        self.detector = detector
        self.iou = iou

    def detect(self, frame: NDArray[np.uint8]) -> Detections:
        """The model's boxes, one per vehicle."""
        return merge_vehicle_classes(self.detector.detect(frame), self.iou)


def road_detector(detector: Detector, camera: Camera) -> Detector:
    """The detector a camera runs: vehicle boxes merged across classes where it counts
    vehicles (one van is one vehicle, not a car and a truck), as given otherwise."""
    if any(c in VEHICLES for c in camera.classes):
        return VehicleDetector(detector)
    return detector
