"""Fit one camera's density correction (:mod:`crowdwatch.edge.density_correction`) and measure it
by leave-one-out on the camera's labelled frames, for :mod:`crowdwatch.training.adapt`.

The grid and the shrinkage are chosen among :data:`VARIANTS` by leave-one-out error on the
labelled frames only. The error the adoption check sees is nested: for each frame kept out, the
variant is chosen again on the other frames alone, then fitted on them and applied to the frame
kept out, so the choice never saw the frame it is scored on. Everything is sums over regions, so
it costs milliseconds once the counter's maps are there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from crowdwatch.edge.dense import DensityMap
from crowdwatch.edge.density_correction import (
    DensityCorrection,
    fit_gains,
    point_sums,
    region_sums,
)
from crowdwatch.training.adapt_data import LabelledFrame


@dataclass(frozen=True, slots=True)
class Variant:
    """A grid of ``rows x cols`` regions, shrunk towards the whole frame's gain by
    ``strength`` people of evidence."""

    rows: int
    cols: int
    strength: float

    def __str__(self) -> str:
        return f"{self.rows}x{self.cols} regions, shrinkage {self.strength:g}"


VARIANTS = tuple(
    Variant(side, side, strength) for side in (1, 2, 3, 4, 6, 8) for strength in (32.0, 8.0, 2.0)
)
"""The candidates, coarse and strongly shrunk first (a tie keeps the simpler one). 1x1 is a
single gain for the whole frame."""
FALLBACK = Variant(1, 1, 8.0)
"""With fewer than two frames nothing can be chosen by leave-one-out: one gain for the frame."""


@dataclass(frozen=True, slots=True)
class RegionCounts:
    """Per grid shape, the counter's and the annotators' (mean) people per region of each frame."""

    counted: dict[tuple[int, int], NDArray[np.float64]]
    truth: dict[tuple[int, int], NDArray[np.float64]]
    totals: NDArray[np.float64]
    """The annotators' mean count of each frame."""

    def frames(self) -> int:
        return len(self.totals)


def region_counts(maps: Sequence[DensityMap], frames: Sequence[LabelledFrame]) -> RegionCounts:
    """The region sums of every grid in :data:`VARIANTS` for the counter's maps of ``frames``."""
    counted, truth = {}, {}
    for shape in {(v.rows, v.cols) for v in VARIANTS}:
        counted[shape] = np.stack(
            [region_sums(m.cells, m.frame_shape, m.cell_size, shape) for m in maps]
        )
        truth[shape] = np.stack(
            [
                np.mean(
                    [point_sums(p, m.frame_shape, shape) for p in f.points] or [np.zeros(shape)],
                    axis=0,
                )
                for m, f in zip(maps, frames, strict=True)
            ]
        )
    totals = np.array([f.count for f in frames], np.float64)
    return RegionCounts(counted, truth, totals)


def fit(data: RegionCounts, variant: Variant, using: Sequence[int]) -> NDArray[np.float32]:
    """The variant's gains fitted on the frames ``using``."""
    shape = (variant.rows, variant.cols)
    index = list(using)
    return fit_gains(
        data.counted[shape][index], data.truth[shape][index], strength=variant.strength
    )


def corrected_count(
    data: RegionCounts, variant: Variant, gains: NDArray[np.float32], i: int
) -> float:
    """Frame ``i``'s count with ``gains`` applied (exact: a gain is constant over its region)."""
    return float((data.counted[(variant.rows, variant.cols)][i] * gains).sum())


def loo_error(data: RegionCounts, variant: Variant, among: Sequence[int]) -> float:
    """Leave-one-out MAE of a variant over the frames ``among`` (each fitted on the others)."""
    errors = []
    for i in among:
        gains = fit(data, variant, [j for j in among if j != i])
        errors.append(abs(corrected_count(data, variant, gains, i) - data.totals[i]))
    return float(np.mean(errors))


def choose(data: RegionCounts, among: Sequence[int]) -> Variant:
    """The variant with the lowest leave-one-out MAE over ``among`` (:data:`FALLBACK` if < 2)."""
    if len(among) < 2:
        return FALLBACK
    errors = [loo_error(data, v, among) for v in VARIANTS]
    return VARIANTS[int(np.argmin(errors))]  # argmin keeps the first of equals


@dataclass(frozen=True, slots=True)
class CorrectionFit:
    """The correction fitted on every frame, and what leave-one-out says of the procedure."""

    variant: Variant
    correction: DensityCorrection
    held_out: dict[int, float]
    """Per frame kept out: its count by the procedure run on the other frames (nested)."""
    chosen_per_fold: dict[int, str]


def fit_correction(data: RegionCounts) -> CorrectionFit:
    """Choose, fit and measure the correction (see the module's docstring)."""
    everyone = list(range(data.frames()))
    held: dict[int, float] = {}
    chosen: dict[int, str] = {}
    if len(everyone) >= 2:
        for i in everyone:
            others = [j for j in everyone if j != i]
            variant = choose(data, others)
            held[i] = corrected_count(data, variant, fit(data, variant, others), i)
            chosen[i] = str(variant)
    variant = choose(data, everyone)
    return CorrectionFit(variant, DensityCorrection(fit(data, variant, everyone)), held, chosen)
