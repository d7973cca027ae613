"""The visitor figures' pure rules: local day bounds, occupancy integrals, peaks, changes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from crowdwatch.contracts.reports import DEFAULT_LEVELS
from crowdwatch.reports.visitors import STEP, change_pct, local_day_bounds, occupancy_figures
from crowdwatch.storage.queries import SeriesPoint


@pytest.mark.parametrize(
    ("day", "tz", "start", "hours"),
    [
        # Shanghai: a local day runs from 16:00 UTC the day before
        (date(2025, 10, 3), "Asia/Shanghai", datetime(2025, 10, 2, 16, tzinfo=UTC), 24),
        # a day crossing into a new month and year the same way
        (date(2025, 1, 1), "Asia/Shanghai", datetime(2024, 12, 31, 16, tzinfo=UTC), 24),
        # daylight saving: 23 and 25 hour days
        (date(2025, 3, 30), "Europe/Berlin", datetime(2025, 3, 29, 23, tzinfo=UTC), 23),
        (date(2025, 10, 26), "Europe/Berlin", datetime(2025, 10, 25, 22, tzinfo=UTC), 25),
        # a quarter-hour offset
        (date(2025, 10, 3), "Asia/Kathmandu", datetime(2025, 10, 2, 18, 15, tzinfo=UTC), 24),
    ],
)
def test_local_day_bounds(day: date, tz: str, start: datetime, hours: int) -> None:
    found_start, found_end = local_day_bounds(day, tz)
    assert found_start == start
    assert found_end - found_start == timedelta(hours=hours)


def _point(ts: datetime, mean: float, peak: int) -> SeriesPoint:
    return SeriesPoint(ts, round(mean), mean, peak, 1)


def test_person_hours_levels_and_the_earliest_peak() -> None:
    t = datetime(2025, 10, 3, 2, tzinfo=UTC)
    quarters = [_point(t + STEP * i, mean, 0) for i, mean in enumerate([79.9, 80, 90, 100, 20])]
    minutes = [_point(t, 0, 95), _point(t + STEP, 0, 120), _point(t + 2 * STEP, 0, 120)]
    person_hours, peak, peak_at, above = occupancy_figures(
        quarters, minutes, 100, list(DEFAULT_LEVELS)
    )
    assert person_hours == pytest.approx((79.9 + 80 + 90 + 100 + 20) / 4)
    # 80 % exactly counts; 79.9 does not
    assert above == {"yellow": 45, "orange": 30, "red": 15}
    # two minutes share the peak: the earlier one is when it happened
    assert (peak, peak_at) == (120, t + STEP)


def test_no_data_is_no_peak() -> None:
    assert occupancy_figures([], [], 100, list(DEFAULT_LEVELS)) == (
        0,
        None,
        None,
        {"yellow": 0, "orange": 0, "red": 0},
    )


@pytest.mark.parametrize(
    ("now", "before", "expected"),
    [
        (41, 15, 173.3),
        (35, 70, -50.0),
        (10, 10, 0.0),
        (5, 0, None),
        (None, 3, None),
        (3, None, None),
    ],
)
def test_change_pct(now: int | None, before: int | None, expected: float | None) -> None:
    assert change_pct(now, before) == expected
