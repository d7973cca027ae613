"""Count errors of a detector on a :class:`~crowdwatch.evaluation.datasets.CountDataset`."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from crowdwatch.edge.detections import Detections
from crowdwatch.edge.detector import Detector
from crowdwatch.evaluation.datasets import CountDataset

HEAD_FRACTION = 0.1
"""Where the head of a person sits in a box, from the top: ROI ground truth are head points."""


@dataclass(frozen=True, slots=True)
class CountErrors:
    """How far predicted counts are from the truth over a set of samples."""

    samples: int
    mean_truth: float
    mae: float
    rmse: float
    bias: float
    """mean of (predicted - truth): negative means the counter misses people"""


def count_errors(predicted: Sequence[int], truth: Sequence[int]) -> CountErrors:
    """MAE, RMSE and bias of per-sample counts.

    Args:
        predicted: counted people per sample.
        truth: true people per sample, same length.

    Returns:
        The errors (all zero for no samples).

    Raises:
        ValueError: the two lengths differ.

    Example:
        >>> count_errors([3, 5], [4, 5]).mae
        0.5
    """
    if len(predicted) != len(truth):
        raise ValueError(
            f"expected as many predictions as truths, got {len(predicted)} and {len(truth)}"
        )
    if not truth:
        return CountErrors(0, 0.0, 0.0, 0.0, 0.0)
    diff = np.asarray(predicted, dtype=np.float64) - np.asarray(truth, dtype=np.float64)
    return CountErrors(
        samples=len(truth),
        mean_truth=float(np.mean(truth)),
        mae=float(np.abs(diff).mean()),
        rmse=math.sqrt(float((diff**2).mean())),
        bias=float(diff.mean()),
    )


def count_in_roi(detections: Detections, roi: NDArray[np.bool_] | None) -> int:
    """People whose head point (top centre of the box) lies in ``roi``.

    Args:
        detections: one frame's people.
        roi: ``(H, W)`` mask of the counted area, or ``None`` for the whole frame.

    Returns:
        How many people are counted.
    """
    if roi is None or len(detections) == 0:
        return len(detections)
    xyxy = detections.xyxy
    height, width = roi.shape
    x = ((xyxy[:, 0] + xyxy[:, 2]) / 2).astype(np.int64).clip(0, width - 1)
    y = (xyxy[:, 1] + HEAD_FRACTION * (xyxy[:, 3] - xyxy[:, 1])).astype(np.int64)
    return int(np.count_nonzero(roi[y.clip(0, height - 1), x]))


@dataclass(frozen=True, slots=True)
class DatasetRun:
    """Per-sample counts of one detector on one data set, with the time it took."""

    dataset: str
    indices: list[int]
    numbers: list[int]
    predicted: list[int]
    truth: list[int]
    detect_s: float
    """seconds in ``detector.detect`` (decoding and reading images excluded)"""

    def errors(self, subset: str = "all") -> CountErrors:
        """Errors over all samples, or those whose number is ``even``/``odd``."""
        keep = [
            i
            for i, n in enumerate(self.numbers)
            if subset == "all" or (n % 2 == 0) == (subset == "even")
        ]
        return count_errors([self.predicted[i] for i in keep], [self.truth[i] for i in keep])

    @property
    def ms_per_frame(self) -> float:
        """Mean detection time per sample."""
        return 1000 * self.detect_s / max(len(self.indices), 1)


def run_dataset(dataset: CountDataset, detector: Detector, indices: Sequence[int]) -> DatasetRun:
    """Count people on the chosen samples of ``dataset``.

    Args:
        dataset: images and truths.
        detector: the edge's detector (tiled or not).
        indices: which samples (see :meth:`CountDataset.select`).

    Returns:
        Counts, truths and detection time.
    """
    predicted: list[int] = []
    detect_s = 0.0
    for image in dataset.read(indices):
        started = time.perf_counter()
        detections = detector.detect(image)
        detect_s += time.perf_counter() - started
        predicted.append(count_in_roi(detections, dataset.roi))
    return DatasetRun(
        dataset=dataset.name,
        indices=list(indices),
        numbers=[dataset.numbers[i] for i in indices],
        predicted=predicted,
        truth=[dataset.truths[i] for i in indices],
        detect_s=detect_s,
    )
