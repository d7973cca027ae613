"""Count errors of the detector or the dense counter on a data set (``CountDataset``)."""

from __future__ import annotations

import math
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from crowdwatch.edge.dense import DensityCounter
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


def count_errors(predicted: Sequence[float], truth: Sequence[float]) -> CountErrors:
    """MAE, RMSE and bias of per-sample counts.

    Args:
        predicted: counted people per sample (a density counter's are fractional).
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
    """Per-sample counts of one counter on one data set, with the time it took."""

    dataset: str
    indices: list[int]
    numbers: list[int]
    predicted: list[float]
    truth: list[int]
    count_s: float
    """seconds in ``detector.detect`` or ``DensityCounter.density`` (reading images excluded)"""
    flagged: frozenset[int] = frozenset()
    """numbers of the samples the dense counter judged unusable (``DensityMap.quality``);
    they are scored like the others"""

    def errors(self, subset: str = "all", numbers: Collection[int] | None = None) -> CountErrors:
        """Errors over all samples, or those whose number is ``even``/``odd``.

        Args:
            subset: ``all``, ``even`` or ``odd`` sample numbers.
            numbers: only these sample numbers (``None``: every sample of the run).
        """
        keep = [
            i
            for i, n in enumerate(self.numbers)
            if (subset == "all" or (n % 2 == 0) == (subset == "even"))
            and (numbers is None or n in numbers)
        ]
        return count_errors([self.predicted[i] for i in keep], [self.truth[i] for i in keep])

    @classmethod
    def of(
        cls,
        dataset: CountDataset,
        indices: Sequence[int],
        predicted: list[float],
        count_s: float,
        flagged: frozenset[int] = frozenset(),
    ) -> DatasetRun:
        """The run whose ``predicted`` counts are of the samples ``indices`` of ``dataset``."""
        return cls(
            dataset=dataset.name,
            indices=list(indices),
            numbers=[dataset.numbers[i] for i in indices],
            predicted=predicted,
            truth=[dataset.truths[i] for i in indices],
            count_s=count_s,
            flagged=flagged,
        )

    @property
    def ms_per_frame(self) -> float:
        """Mean counting time per sample."""
        return 1000 * self.count_s / max(len(self.indices), 1)


def run_dataset(dataset: CountDataset, detector: Detector, indices: Sequence[int]) -> DatasetRun:
    """Count people on the chosen samples of ``dataset`` with the detector.

    Args:
        dataset: images and truths.
        detector: the edge's detector (tiled or not).
        indices: which samples (see :meth:`CountDataset.select`).

    Returns:
        Counts (people whose head point is in the ROI), truths and detection time.
    """
    predicted: list[float] = []
    detect_s = 0.0
    for image in dataset.read(indices):
        started = time.perf_counter()
        detections = detector.detect(image)
        detect_s += time.perf_counter() - started
        predicted.append(count_in_roi(detections, dataset.roi))
    return DatasetRun.of(dataset, indices, predicted, detect_s)


def run_dense(dataset: CountDataset, counter: DensityCounter, indices: Sequence[int]) -> DatasetRun:
    """Count people on the chosen samples of ``dataset`` with the density-map counter.

    Args:
        dataset: images and truths.
        counter: the edge's dense counter.
        indices: which samples (see :meth:`CountDataset.select`).

    Returns:
        Counts (the density summed over the ROI, not rounded), truths and density time.
    """
    predicted: list[float] = []
    density_s = 0.0
    flagged: set[int] = set()
    for index, image in zip(indices, dataset.read(indices), strict=True):
        started = time.perf_counter()
        density = counter.density(image)
        density_s += time.perf_counter() - started
        if not density.quality.ok:
            flagged.add(dataset.numbers[index])
        predicted.append(density.total() if dataset.roi is None else density.in_mask(dataset.roi))
    return DatasetRun.of(dataset, indices, predicted, density_s, frozenset(flagged))
