"""Fitting a camera's per-region gains (numpy only: what the edge box and the tests can run)."""

from __future__ import annotations

import numpy as np
import pytest

from crowdwatch.edge.density_correction import (
    MAX_GAIN,
    DensityCorrection,
    fit_gains,
    point_sums,
    region_sums,
)


def test_known_gains_are_recovered_from_frames_with_different_crowds() -> None:
    # 3 x 4 regions; the counter reads region r at 1/gain of the truth, on 6 different crowds.
    rng = np.random.default_rng(3)
    gains = rng.uniform(0.1, 2.0, (3, 4))
    truth = rng.uniform(0.0, 50.0, (6, 3, 4))
    counted = truth / gains
    assert fit_gains(counted, truth, strength=0.0) == pytest.approx(gains, rel=1e-5)


def test_false_readings_in_an_empty_region_get_gain_zero_and_a_miss_is_capped() -> None:
    truth = np.zeros((4, 1, 3))
    truth[:, 0, 1] = [10.0, 20.0, 30.0, 40.0]  # people only in the middle
    truth[:, 0, 2] = 100.0
    counted = truth.copy()
    counted[:, 0, 0] = 15.0  # sand ripples read as 15 people in every frame
    counted[:, 0, 2] = 1.0  # a region the counter all but misses
    fitted = fit_gains(counted, truth, strength=0.0)
    assert fitted[0].tolist() == pytest.approx([0.0, 1.0, MAX_GAIN])


def test_shrinkage_pulls_a_region_with_little_evidence_to_the_frames_gain() -> None:
    # Whole frame: 100 counted, 50 true (gain 0.5); a region of 1 counted, 1 true.
    counted = np.array([[[99.0, 1.0]]])
    truth = np.array([[[49.0, 1.0]]])
    loose, firm = fit_gains(counted, truth, strength=0.0), fit_gains(counted, truth, strength=1e6)
    assert loose[0, 1] == pytest.approx(1.0) and firm[0, 1] == pytest.approx(0.5, rel=1e-4)
    assert firm[0, 0] == pytest.approx(0.5, rel=1e-4)


def test_regions_split_maps_and_marks_the_same_way() -> None:
    # A 70 x 100 frame in 8 x 8 cells (9 x 13, the last ones reach past it), 2 x 2 regions.
    cells = np.ones((9, 13), np.float32)
    sums = region_sums(cells, (70, 100), (8.0, 8.0), (2, 2))
    # Cell centres 4, 12, ... : rows 0-3 above 35, 4-8 below; columns 0-5 left of 50.
    assert sums.tolist() == [[4 * 6, 4 * 7], [5 * 6, 5 * 7]]
    marks = np.array([[10.0, 10.0], [60.0, 10.0], [99.0, 69.0], [0.0, 40.0]], np.float32)
    assert point_sums(marks, (70, 100), (2, 2)).tolist() == [[1.0, 1.0], [1.0, 1.0]]
    # Applying gains is the same as scaling each region's sum.
    correction = DensityCorrection(np.array([[0.0, 1.0], [2.0, 0.5]], np.float32))
    corrected = correction.apply(cells, (70, 100), (8.0, 8.0))
    assert corrected.sum() == pytest.approx(0 + 28 + 2 * 30 + 0.5 * 35)


@pytest.mark.parametrize("gains", [[[-0.1]], [[float("nan")]], [1.0, 2.0], [[]]])
def test_a_correction_must_be_a_grid_of_gains(gains: object) -> None:
    with pytest.raises(ValueError, match="gains: expected a 2-D grid of finite gains >= 0"):
        DensityCorrection(np.array(gains, np.float32))
