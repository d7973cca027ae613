"""Backtest of the alert engine's occupancy forecast against two baselines, on stored history.

For every zone of every beach and scenic spot, on each holiday day asked for, every 15
minutes of the opening hours, the forecast H minutes ahead
(:func:`crowdwatch.analytics.forecast.forecast`: the trend of the last ``window_min`` blended
with the same holiday last year) is compared with what the rollups hold at that time, beside:

* **persistence** — the count now, unchanged;
* **same hour last holiday** — the count at that local time on the same holiday day last
  year (:meth:`~crowdwatch.reports.holidays.HolidayCalendar.same_day_last_year`).

Counts are the 15-minute means of the zone rollups (the finest step a year of history keeps);
the trend therefore needs a window of at least 45 minutes (3 points).  Errors are mean
absolute errors in people and as a share of the zone's capacity.  On the simulated history
(``crowdwatch simulate --history``) the figures say how the methods behave on curves the
simulator drew, not how they do on a real beach.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import psycopg

from crowdwatch.analytics.forecast import ReferenceTrend, forecast
from crowdwatch.contracts.config import CrowdwatchConfig
from crowdwatch.reports.daily import VISITOR_KINDS
from crowdwatch.reports.holidays import HolidayCalendar
from crowdwatch.storage.queries import Resolution, zone_series

STEP = timedelta(minutes=15)
METHODS = ("forecast", "persistence", "last_holiday")


@dataclass(frozen=True, slots=True)
class Score:
    horizon_min: int
    method: str
    cases: int
    mae: float
    """people"""
    mae_share: float
    """share of the zone's capacity"""


def score_day(
    today: dict[datetime, float],
    reference: dict[datetime, float],
    shift: timedelta,
    capacity: int,
    horizon_min: int,
    window_min: int,
    starts: Iterable[datetime],
) -> dict[str, list[float]]:
    """Absolute errors of each method at each start, for one zone on one day.

    Args:
        today: 15-minute bucket start -> mean count, the day forecast.
        reference: the same for the reference day.
        shift: reference time = today's time + ``shift`` (the same local time).
        capacity: the zone's capacity.
        horizon_min: minutes ahead (a multiple of 15).
        window_min: the trend window.
        starts: bucket starts to forecast from.

    Returns:
        Method -> absolute errors, for the starts where every method had its inputs.

    Example:
        >>> t = datetime(2025, 10, 3, 2)
        >>> series = {t + STEP * i: 10.0 * i for i in range(9)}  # +10 people every 15 min
        >>> ref = {t + STEP * i: 8.0 * i for i in range(9)}
        >>> errs = score_day(series, ref, timedelta(0), 100, 60, 45, [t + STEP * 4])
        >>> errs["persistence"], errs["last_holiday"], [round(e, 6) for e in errs["forecast"]]
        ([40.0], [16.0], [0.0])
    """
    horizon = timedelta(minutes=horizon_min)
    errors: dict[str, list[float]] = {m: [] for m in METHODS}
    for start in starts:
        truth = today.get(start + horizon)
        ref_now = reference.get(start + shift)
        ref_then = reference.get(start + horizon + shift)
        window = [
            (ts, round(value))
            for ts, value in sorted(today.items())
            if start - timedelta(minutes=window_min) <= ts <= start
        ]
        if truth is None or ref_now is None or ref_then is None or start not in today:
            continue
        now = today[start]
        made = forecast(
            window,
            round(now),
            capacity,
            horizon_min,
            window_min * 60,
            ReferenceTrend(ref_now, ref_then),
        )
        if made is None:
            continue
        errors["forecast"].append(abs(made.expected - truth))
        errors["persistence"].append(abs(now - truth))
        errors["last_holiday"].append(abs(ref_then - truth))
    return errors


def _means(
    conn: psycopg.Connection, site: str, zone: str, day: date, tz: str
) -> dict[datetime, float]:
    zone_tz = ZoneInfo(tz)
    start = datetime.combine(day, time(0), tzinfo=zone_tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone_tz)
    series = zone_series(conn, site, zone, start, end, Resolution.QUARTER_HOUR)
    return {p.ts: p.count_mean for p in series.points}


def backtest(
    conn: psycopg.Connection,
    config: CrowdwatchConfig,
    days: Sequence[date],
    *,
    horizons_min: Sequence[int] = (60, 120, 180),
    window_min: int = 45,
    calendar: HolidayCalendar | None = None,
) -> list[Score]:
    """MAE of the forecast and both baselines per horizon, over ``days`` (see the module doc).

    Raises:
        StorageError: a query failed.
        ValueError: a horizon or window that is not a positive multiple of 15 minutes.
    """
    for minutes in (*horizons_min, window_min):
        if minutes <= 0 or minutes % 15:
            raise ValueError(f"expected a positive multiple of 15 minutes, got {minutes}")
    calendar = calendar or HolidayCalendar(config.reports.holidays)
    tz = config.district.timezone
    zone_tz = ZoneInfo(tz)
    errors: dict[tuple[int, str], list[float]] = defaultdict(list)
    shares: dict[tuple[int, str], list[float]] = defaultdict(list)
    for day in days:
        reference_day = calendar.same_day_last_year(day)
        if reference_day is None:
            continue
        opening = config.reports.opening
        first = datetime.combine(day, time.fromisoformat(opening.start), tzinfo=zone_tz)
        last = datetime.combine(day, time.fromisoformat(opening.end), tzinfo=zone_tz)
        starts = [first + STEP * i for i in range(int((last - first) / STEP))]
        shift = datetime.combine(reference_day, time(0), tzinfo=zone_tz) - datetime.combine(
            day, time(0), tzinfo=zone_tz
        )
        for site in config.sites:
            if site.kind not in VISITOR_KINDS:
                continue
            for camera in site.cameras:
                for zone in camera.zones:
                    capacity = zone.capacity or site.capacity
                    today = _means(conn, site.id, zone.id, day, tz)
                    reference = _means(conn, site.id, zone.id, reference_day, tz)
                    for horizon in horizons_min:
                        found = score_day(
                            today, reference, shift, capacity, horizon, window_min, starts
                        )
                        for method, values in found.items():
                            errors[(horizon, method)] += values
                            shares[(horizon, method)] += [v / capacity for v in values]
    return [
        Score(
            horizon,
            method,
            len(errors[(horizon, method)]),
            sum(errors[(horizon, method)]) / len(errors[(horizon, method)]),
            sum(shares[(horizon, method)]) / len(shares[(horizon, method)]),
        )
        for horizon in horizons_min
        for method in METHODS
        if errors[(horizon, method)]
    ]
