"""Frames of a clip and box overlap, for the detector tests (they need OpenCV: the edge extra)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def read_frames(video: Path, numbers: range) -> dict[int, np.ndarray]:
    capture = cv2.VideoCapture(str(video))
    frames = {}
    try:
        for number in range(max(numbers) + 1):
            ok, image = capture.read()
            assert ok, f"{video} ended before frame {number}"
            if number in numbers:
                frames[number] = image
    finally:
        capture.release()
    return frames


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0
