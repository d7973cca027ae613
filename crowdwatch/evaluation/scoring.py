"""Count errors of the detector or the dense counter on a data set (``CountDataset``)."""

from __future__ import annotations

import math
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from crowdwatch.contracts.config import DenseAutoConfig, DetectorConfig
from crowdwatch.contracts.messages import CountMethod
from crowdwatch.edge.counting import DetectorView, detector_magnification
from crowdwatch.edge.dense import DensityCounter
from crowdwatch.edge.detections import Detections
from crowdwatch.edge.detector import Detector
from crowdwatch.evaluation.count_command import auto_count
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


def in_roi(detections: Detections, roi: NDArray[np.bool_] | None) -> NDArray[np.bool_]:
    """Which people have their head point (top centre of the box) in ``roi``.

    Args:
        detections: one frame's people.
        roi: ``(H, W)`` mask of the counted area, or ``None`` for the whole frame.

    Returns:
        ``(N,)`` bool mask over ``detections``.
    """
    if roi is None or len(detections) == 0:
        return np.ones(len(detections), dtype=np.bool_)
    xyxy = detections.xyxy
    height, width = roi.shape
    x = ((xyxy[:, 0] + xyxy[:, 2]) / 2).astype(np.int64).clip(0, width - 1)
    y = (xyxy[:, 1] + HEAD_FRACTION * (xyxy[:, 3] - xyxy[:, 1])).astype(np.int64)
    return np.asarray(roi[y.clip(0, height - 1), x], dtype=np.bool_)


def count_in_roi(detections: Detections, roi: NDArray[np.bool_] | None) -> int:
    """People whose head point (top centre of the box) lies in ``roi``.

    Args:
        detections: one frame's people.
        roi: ``(H, W)`` mask of the counted area, or ``None`` for the whole frame.

    Returns:
        How many people are counted.
    """
    return int(np.count_nonzero(in_roi(detections, roi)))


@dataclass(frozen=True, slots=True)
class DatasetRun:
    """Per-sample counts of one counter on one data set, with the time it took."""

    dataset: str
    indices: list[int]
    numbers: list[int]
    predicted: list[float]
    truth: list[int]
    sample_s: list[float]
    """seconds of each sample in ``detector.detect`` or ``DensityCounter.density`` (reading
    images excluded; an ``auto`` run: both)"""
    flagged: frozenset[int] = frozenset()
    """numbers of the samples the dense counter judged unusable (``DensityMap.quality``);
    they are scored like the others"""
    heights: list[NDArray[np.float32]] = field(default_factory=list)
    """detection runs: box heights (pixels) of the people counted in each sample"""
    confidences: list[NDArray[np.float32]] = field(default_factory=list)
    """detection runs: the detector's score of each of those people"""
    dense_picked: frozenset[int] = frozenset()
    """auto runs: numbers of the samples the edge's rule counted by density map"""
    views: list[DetectorView] = field(default_factory=list)
    """detection runs: how large people looked to the detector and the ROI's area, per sample"""

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
        sample_s: list[float],
        flagged: frozenset[int] = frozenset(),
        heights: list[NDArray[np.float32]] | None = None,
        views: list[DetectorView] | None = None,
        confidences: list[NDArray[np.float32]] | None = None,
    ) -> DatasetRun:
        """The run whose ``predicted`` counts are of the samples ``indices`` of ``dataset``."""
        return cls(
            dataset=dataset.name,
            indices=list(indices),
            numbers=[dataset.numbers[i] for i in indices],
            predicted=predicted,
            truth=[dataset.truths[i] for i in indices],
            flagged=flagged,
            sample_s=sample_s,
            heights=heights or [],
            views=views or [],
            confidences=confidences or [],
        )

    @property
    def count_s(self) -> float:
        """Counting seconds over all samples."""
        return sum(self.sample_s)

    @property
    def ms_per_frame(self) -> float:
        """Mean counting time per sample."""
        return 1000 * self.count_s / max(len(self.indices), 1)


def run_dataset(
    dataset: CountDataset,
    detector: Detector,
    indices: Sequence[int],
    settings: DetectorConfig | None = None,
) -> DatasetRun:
    """Count people on the chosen samples of ``dataset`` with the detector.

    Args:
        dataset: images and truths.
        detector: the edge's detector (tiled or not).
        indices: which samples (see :meth:`CountDataset.select`).
        settings: the detector's settings (for :func:`run_auto`'s view of each sample).

    Returns:
        Counts (people whose head point is in the ROI), truths, detection times and the box
        heights of the people counted (for :func:`run_auto`).
    """
    predicted: list[float] = []
    sample_s: list[float] = []
    heights: list[NDArray[np.float32]] = []
    confidences: list[NDArray[np.float32]] = []
    views: list[DetectorView] = []
    roi_area = None if dataset.roi is None else float(dataset.roi.sum())
    for image in dataset.read(indices):
        height, width = image.shape[:2]
        views.append(
            DetectorView(
                detector_magnification(settings, (width, height)),
                float(width * height) if roi_area is None else roi_area,
            )
        )
        started = time.perf_counter()
        detections = detector.detect(image)
        sample_s.append(time.perf_counter() - started)
        counted = in_roi(detections, dataset.roi)
        heights.append(detections.heights()[counted])
        confidences.append(detections.confidence[counted])
        predicted.append(len(heights[-1]))
    return DatasetRun.of(
        dataset,
        indices,
        predicted,
        sample_s,
        heights=heights,
        views=views,
        confidences=confidences,
    )


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
    sample_s: list[float] = []
    flagged: set[int] = set()
    for index, image in zip(indices, dataset.read(indices), strict=True):
        started = time.perf_counter()
        density = counter.density(image)
        sample_s.append(time.perf_counter() - started)
        if not density.quality.ok:
            flagged.add(dataset.numbers[index])
        predicted.append(density.total() if dataset.roi is None else density.in_mask(dataset.roi))
    return DatasetRun.of(dataset, indices, predicted, sample_s, frozenset(flagged))


def run_auto(detected: DatasetRun, dense: DatasetRun, rule: DenseAutoConfig) -> DatasetRun:
    """What a zone in ``mode: auto`` counts on the dense run's samples, from the two runs.

    Each sample is seen both ways: the people detected in the ROI (their box heights) and the
    density over the ROI, with the crowd counter's quality verdict; the edge's rule
    (:func:`~crowdwatch.evaluation.count_command.auto_count`) picks which count is used.

    Args:
        detected: :func:`run_dataset` on at least the samples of ``dense``.
        dense: :func:`run_dense` of the same data set.
        rule: ``edge.dense.auto``.

    Returns:
        The chosen counts on ``dense``'s samples; their time is detection plus density, and
        ``dense_picked`` names the samples counted by density map.

    Raises:
        ValueError: ``detected`` lacks a sample of ``dense``, or its box heights.
    """
    position = {index: i for i, index in enumerate(detected.indices)}
    missing = [index for index in dense.indices if index not in position]
    runs = (detected.heights, detected.confidences, detected.views)
    if missing or any(len(each) != len(detected.indices) for each in runs):
        raise ValueError(
            "expected a detection run with box heights, confidences and views on every dense "
            f"sample, missing "
            f"{len(missing)} of {len(dense.indices)} samples"
        )
    predicted: list[float] = []
    sample_s: list[float] = []
    picked: set[int] = set()
    for i, index in enumerate(dense.indices):
        at = position[index]
        number = dense.numbers[i]
        count, method = auto_count(
            rule,
            detected.heights[at],
            dense.predicted[i],
            number not in dense.flagged,
            detected.views[at],
            confidence=detected.confidences[at],
        )
        predicted.append(count)
        sample_s.append(detected.sample_s[at] + dense.sample_s[i])
        if method is CountMethod.DENSE:
            picked.add(number)
    return replace(
        dense,
        predicted=predicted,
        sample_s=sample_s,
        dense_picked=frozenset(picked),
    )
