"""Visitors of a site on a local day: entries and exits, estimated visits, peak, time above levels.

Read from the rollups through :mod:`crowdwatch.storage.queries`, which read the same on plain
PostgreSQL (rollup tables) and TimescaleDB (continuous aggregates of the same names):

* **entries / exits**: the site's counting lines, summed over the local day
  (:func:`~crowdwatch.storage.queries.daily_totals`), but lines with ``classes`` (buses
  beside all vehicles: counted twice otherwise).  Where a site has lines, its visitors
  *are* its entries.
* **estimated visits** (sites without lines, most beaches): by Little's law, visits = the
  person-hours spent on the site / the mean stay.  Person-hours are the site's mean occupancy
  in each 15-minute rollup step x 0.25 h, summed over the day; a step with no data adds
  nothing, and ``coverage`` says how many of the day's steps had data.  The figure is marked
  ``visits_estimated`` wherever it is shown.
* **peak**: the largest site count in the day's 1-minute rollups (the sum of each zone's
  largest count in that minute) and the minute it happened.
* **time above each warning level**: the 15-minute steps whose mean occupancy reached the
  level's share of the site's capacity, x 15 min.

A raw row counts on the local day of its ``ts`` (the end of its interval), as in
``daily_totals``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import psycopg

from crowdwatch.contracts.config import Site
from crowdwatch.contracts.reports import OpeningHours, WarningLevel
from crowdwatch.storage.queries import (
    Resolution,
    SeriesPoint,
    daily_totals,
    site_series,
)

STEP = timedelta(minutes=15)
"""The step of occupancy integrals and of time above a level."""


@dataclass(frozen=True, slots=True)
class SiteDay:
    """One site on one local day."""

    day: date
    site_id: str
    entries: int | None
    """Line crossings in, over the site's lines; None for a site without lines."""
    exits: int | None
    visits: int | None
    """Entries where the site has lines, else the estimate; None without data or mean stay."""
    visits_estimated: bool
    person_hours: float
    peak: int | None
    peak_at: datetime | None
    """Start of the peak's 1-minute bucket (UTC)."""
    minutes_above: dict[str, int]
    """Minutes at or above each warning level, by level id."""
    steps_with_data: int
    """15-minute steps of the opening hours with data."""
    steps_open: int
    """15-minute steps of the opening hours."""
    longest_wait_s: float | None = None
    """Longest waiting time any zone reported that day (queues: bus stops)."""

    @property
    def coverage(self) -> float:
        return self.steps_with_data / self.steps_open if self.steps_open else 0.0

    @property
    def has_data(self) -> bool:
        return self.person_hours > 0 or self.peak is not None or bool(self.entries or self.exits)


def local_day_bounds(day: date, tz: str) -> tuple[datetime, datetime]:
    """[start, end) of a local day in UTC (23 or 25 hours long on a DST change)."""
    zone = ZoneInfo(tz)
    start = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    return start, end


def occupancy_figures(
    quarters: Sequence[SeriesPoint],
    minutes: Sequence[SeriesPoint],
    capacity: int,
    levels: Sequence[WarningLevel],
) -> tuple[float, int | None, datetime | None, dict[str, int]]:
    """(person-hours, peak, peak minute, minutes above each level) of one day's buckets.

    Pure, so the rules are tested without a database.

    Args:
        quarters: the day's 15-minute site buckets.
        minutes: the day's 1-minute site buckets (for the peak).
        capacity: the site's capacity (people at 100 %).
        levels: the warning ladder.

    Example:
        >>> from crowdwatch.contracts.reports import DEFAULT_LEVELS
        >>> t = datetime(2025, 10, 1, 2, tzinfo=UTC)
        >>> q = [SeriesPoint(t, 90, 90.0, 95, 3), SeriesPoint(t + STEP, 40, 40.0, 50, 3)]
        >>> occupancy_figures(q, q, 100, DEFAULT_LEVELS)[0::3]
        (32.5, {'yellow': 15, 'orange': 15, 'red': 0})
    """
    hours = STEP.total_seconds() / 3600
    person_hours = sum(p.count_mean for p in quarters) * hours
    above = {level.id: 0 for level in levels}
    step_min = int(STEP.total_seconds() // 60)
    for point in quarters:
        for level in levels:
            if point.count_mean >= level.at * capacity:
                above[level.id] += step_min
    peak_point = max(minutes, key=lambda p: (p.count_max, -p.ts.timestamp()), default=None)
    peak = None if peak_point is None else peak_point.count_max
    peak_at = None if peak_point is None else peak_point.ts
    return person_hours, peak, peak_at, above


def site_day(
    conn: psycopg.Connection,
    site: Site,
    day: date,
    tz: str,
    levels: Sequence[WarningLevel],
    mean_stay_min: float | None,
    opening: OpeningHours | None = None,
) -> SiteDay:
    """The figures of ``site`` on the local ``day``.

    Args:
        conn: an open connection to a migrated database with fresh rollups.
        site: the site's config.
        day: the local date.
        tz: the district's IANA time zone.
        levels: ``reports.levels``.
        mean_stay_min: the site's mean stay (None: no estimate for a site without lines).
        opening: the hours whose steps ``coverage`` counts (default the whole day).

    Raises:
        StorageError: a query failed or the database is away.
    """
    start, end = local_day_bounds(day, tz)
    quarters = site_series(conn, site.id, start, end, Resolution.QUARTER_HOUR).points
    minutes = site_series(conn, site.id, start, end, Resolution.MINUTE).points
    person_hours, peak, peak_at, above = occupancy_figures(quarters, minutes, site.capacity, levels)
    open_from, open_to = start, end
    if opening is not None:
        zone = ZoneInfo(tz)
        open_from = datetime.combine(day, time.fromisoformat(opening.start), tzinfo=zone)
        open_to = datetime.combine(day, time.fromisoformat(opening.end), tzinfo=zone)
    steps_with_data = sum(1 for p in quarters if open_from <= p.ts < open_to)
    has_lines = any(c.lines for c in site.cameras)
    entries = exits = None
    if has_lines:
        totals = daily_totals(conn, day, day, tz, site_id=site.id, left_out=site.lines_by_class())
        entries = sum(t.crossings_in for t in totals)
        exits = sum(t.crossings_out for t in totals)
    if has_lines:
        visits: int | None = entries
        estimated = False
    elif mean_stay_min is not None and quarters:
        visits = round(person_hours / (mean_stay_min / 60))
        estimated = True
    else:
        visits, estimated = None, False
    return SiteDay(
        day=day,
        site_id=site.id,
        entries=entries,
        exits=exits,
        visits=visits,
        visits_estimated=estimated,
        person_hours=round(person_hours, 3),
        peak=peak,
        peak_at=peak_at,
        minutes_above=above,
        steps_with_data=steps_with_data,
        steps_open=int((open_to - open_from) / STEP),
        longest_wait_s=max((p.wait_max for p in minutes if p.wait_max is not None), default=None),
    )


def change_pct(now: int | None, before: int | None) -> float | None:
    """Percent change from ``before`` to ``now``, one decimal; None without both or from 0."""
    if now is None or before is None or before == 0:
        return None
    return round((now - before) / before * 100, 1)
