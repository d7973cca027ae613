"""Training images with head points: ShanghaiTech A/B ``train_data`` and Mall frames.

Only training splits are read here. ShanghaiTech B ``test_data`` and ``beach_webcam_a`` are for
evaluation (``crowdwatch eval``) and are never touched by training.

Mall's ground truth marks only the people inside its region of interest, so a Mall sample carries
that ROI as a loss mask: outside it the model is neither rewarded nor punished.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from crowdwatch.evaluation.datasets import DatasetMissing

MAX_SIDE = 1024
"""Longer image side kept in memory; larger images are shrunk (points with them)."""


@dataclass(frozen=True, slots=True)
class PointImage:
    """One training image (BGR), its head points ``(N, 2)`` as x, y pixels, and an optional mask."""

    source: str
    key: str
    image: NDArray[np.uint8]
    points: NDArray[np.float32]
    mask: NDArray[np.bool_] | None = None


def _loadmat(path: Path) -> dict[str, Any]:
    import scipy.io

    if not path.is_file():
        raise DatasetMissing(f"{path} not found")
    result: dict[str, Any] = scipy.io.loadmat(str(path))
    return result


def _shrink(
    image: NDArray[np.uint8], points: NDArray[np.float32], mask: NDArray[np.bool_] | None
) -> tuple[NDArray[np.uint8], NDArray[np.float32], NDArray[np.bool_] | None]:
    scale = MAX_SIDE / max(image.shape[:2])
    if scale >= 1.0:
        return image, points, mask
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    image = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
    if mask is not None:
        resized = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
        mask = np.asarray(resized, dtype=bool)
    return image, (points * scale).astype(np.float32), mask


def _read(path: Path) -> NDArray[np.uint8]:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetMissing(f"{path}: not a readable image")
    return np.asarray(image, dtype=np.uint8)


def load_shanghaitech_train(shared_dir: Path, part: str) -> list[PointImage]:
    """ShanghaiTech part ``A`` or ``B`` ``train_data`` with head points."""
    root = shared_dir / "data" / f"shanghaitech_{part}" / "train_data"
    images = sorted(
        (root / "images").glob("IMG_*.jpg"), key=lambda p: int(re.sub(r"\D", "", p.stem))
    )
    if not images:
        raise DatasetMissing(f"no IMG_*.jpg under {root / 'images'}")
    samples = []
    for path in images:
        info = _loadmat(root / "ground-truth" / f"GT_{path.stem}.mat")["image_info"][0, 0]
        points = np.asarray(info["location"][0, 0], dtype=np.float32).reshape(-1, 2)
        image, points, _ = _shrink(_read(path), points, None)
        samples.append(PointImage(f"shanghaitech_{part.lower()}", path.name, image, points))
    return samples


def load_mall_train(shared_dir: Path, frames: Sequence[int]) -> list[PointImage]:
    """Mall frames (1-based numbers) with head points and the data set's ROI as mask."""
    root = shared_dir / "data" / "mall"
    truth = _loadmat(root / "mall_gt.mat")["frame"]
    roi = np.asarray(_loadmat(root / "perspective_roi.mat")["roi"]["mask"][0, 0], dtype=bool)
    samples = []
    for number in frames:
        path = root / "frames" / f"seq_{number:06d}.jpg"
        points = np.asarray(truth[0, number - 1]["loc"][0, 0], dtype=np.float32).reshape(-1, 2)
        samples.append(PointImage("mall", path.name, _read(path), points, roi))
    return samples


def points_in_grid(
    points: NDArray[np.float32], shape: tuple[int, int], stride: int
) -> NDArray[np.float32]:
    """Head points summed into cells of ``stride`` pixels: each person adds 1 to one cell."""
    rows, cols = shape[0] // stride, shape[1] // stride
    grid = np.zeros((rows, cols), dtype=np.float32)
    if len(points):
        col = np.floor(points[:, 0] / stride).astype(int)
        row = np.floor(points[:, 1] / stride).astype(int)
        keep = (col >= 0) & (col < cols) & (row >= 0) & (row < rows)
        np.add.at(grid, (row[keep], col[keep]), 1.0)
    return grid


def load_beach_train(shared_dir: Path, days: frozenset[str] | None = None) -> list[PointImage]:
    """The beach webcam's labelled frames of ``days`` at full size, one sample per annotator.

    A frame two people labelled gives two samples with the same image: drawn at random, the
    pixel loss is lowest for the annotators' mean density, the truth it is scored against.
    Frames stay 1920x1080 (no :data:`MAX_SIDE` shrink): the edge counts them at that size and
    their heads are only 5-10 px.

    Args:
        shared_dir: the shared folder.
        days: UTC days to use, default :data:`~crowdwatch.evaluation.beach_days.TRAIN_DAYS`.

    Raises:
        ValueError: ``days`` includes a held-out test day.
    """
    from crowdwatch.evaluation.beach_days import TEST_DAYS, TRAIN_DAYS, load_beach_frames

    chosen = TRAIN_DAYS if days is None else days
    if chosen & TEST_DAYS:
        raise ValueError(
            f"beach days {sorted(chosen & TEST_DAYS)} are held out for the final score; "
            f"train on {sorted(TRAIN_DAYS)}"
        )
    samples = []
    for frame in load_beach_frames(shared_dir):
        if frame.day not in chosen:
            continue
        image = _read(frame.path)
        for annotator, points in sorted(frame.points.items()):
            key = f"{frame.path.name}#{annotator}"
            samples.append(PointImage("beach_webcam", key, image, points))
    return samples
