"""How a road flowed on a local day: minutes at each GB/T 33171-2016 congestion level.

Graded minute by minute from the 1-minute zone rollups of the road's vehicles' mean speed
(``speed_mean``) and vehicles (``vehicles_max``), read through
:func:`~crowdwatch.storage.queries.zone_series`:

* a road whose zones are its directions or sections is graded, each minute, by its
  **slowest** zone's speed, with the vehicles summed over its zones: what the wall shows
  (the police act on the worst direction; an average over an empty outbound lane would
  hide an inbound jam);
* the level is :func:`~crowdwatch.contracts.site_kinds.road_level`'s, with the road's own
  thresholds (its ``road:`` class or bounds), as the alert engine and the wall grade it: an
  empty road with no speed is smooth; a minute with no measured speed but a density (zones
  with ``lanes``) takes its densest zone's level by Greenshields' rule; vehicles with
  neither, or no message in the minute, are **no data**, neither a jam nor a clear road;
* the day's minutes run over its local bounds (23 or 25 h on a DST change); a minute bucket
  counts on the local day of its start, as a raw row counts on the day of its ``ts``.

Edges report every few seconds (``interval_s``, 5 s by default), so every minute with
traffic has a bucket; an edge set to report less often than once a minute leaves minutes
between its messages as no data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import psycopg

from crowdwatch.contracts.config import Site
from crowdwatch.contracts.congestion import CongestionLevel
from crowdwatch.contracts.site_kinds import road_level
from crowdwatch.reports.visitors import local_day_bounds
from crowdwatch.storage.queries import Resolution, SeriesPoint, zone_series

MINUTE = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class GradedMinute:
    """One minute of a road: its level, from its slowest zone's mean speed."""

    ts: datetime
    """Start of the 1-minute bucket (UTC)."""
    level: CongestionLevel
    speed_kmh: float | None
    """The slowest zone's mean speed; None for an empty road graded smooth."""


@dataclass(frozen=True, slots=True)
class RoadDay:
    """One road on one local day."""

    day: date
    site_id: str
    minutes_at: dict[CongestionLevel, int]
    """Minutes at each of the five levels (every level present, 0 where none)."""
    minutes_no_data: int
    """Minutes of the day with no grade: no message, or vehicles without a speed."""
    minutes_total: int
    """Minutes of the local day (1,440; 1,380 or 1,500 on a DST change)."""
    worst: CongestionLevel | None
    """The worst level of the day; None without a graded minute."""
    worst_at: datetime | None
    """First minute at the worst level (bucket start, UTC)."""
    slowest_kmh: float | None
    """The lowest per-minute speed of the slowest zone; None without a measured speed."""

    @property
    def moderate_or_worse(self) -> int:
        """Minutes at moderate (中度拥堵) or severe congestion: the alert rule's level."""
        return self.minutes_at[CongestionLevel.MODERATE] + self.minutes_at[CongestionLevel.SEVERE]

    @property
    def severe(self) -> int:
        return self.minutes_at[CongestionLevel.SEVERE]


def grade_minutes(site: Site, zones: Sequence[Sequence[SeriesPoint]]) -> list[GradedMinute]:
    """Each minute's level of a road, from its zones' 1-minute buckets; pure.

    Args:
        site: the road (its thresholds).
        zones: each zone's 1-minute buckets.

    Returns:
        The graded minutes in time order; minutes with no data are left out.
    """
    speeds: dict[datetime, list[float]] = {}
    vehicles: dict[datetime, list[int]] = {}
    densities: dict[datetime, list[float]] = {}
    for points in zones:
        for point in points:
            speeds.setdefault(point.ts, [])
            vehicles.setdefault(point.ts, [])
            densities.setdefault(point.ts, [])
            if point.speed_mean is not None:
                speeds[point.ts].append(point.speed_mean)
            if point.vehicles_max is not None:
                vehicles[point.ts].append(point.vehicles_max)
            if point.veh_density_mean is not None:
                densities[point.ts].append(point.veh_density_mean)
    graded = []
    for ts in sorted(speeds):
        slowest = min(speeds[ts]) if speeds[ts] else None
        counted = sum(vehicles[ts]) if vehicles[ts] else None
        # Without a speed, the densest zone by Greenshields' rule (as the wall grades it).
        densest = max(densities[ts]) if densities[ts] else None
        level = road_level(site, slowest, counted, densest)
        if level is not None:
            graded.append(GradedMinute(ts, level, slowest))
    return graded


def road_figures(
    day: date, site_id: str, graded: Sequence[GradedMinute], start: datetime, end: datetime
) -> RoadDay:
    """The day's figures of a road's graded minutes inside ``[start, end)``; pure.

    Example:
        >>> from datetime import UTC
        >>> start = datetime(2025, 10, 2, 16, tzinfo=UTC)  # Oct 3 00:00 in Shanghai
        >>> jam = GradedMinute(start + 8 * timedelta(hours=1), CongestionLevel.SEVERE, 8.0)
        >>> day = road_figures(date(2025, 10, 3), "r", [jam], start, start + timedelta(days=1))
        >>> day.severe, day.moderate_or_worse, day.minutes_no_data, day.worst_at.hour
        (1, 1, 1439, 0)
    """
    inside = [m for m in graded if start <= m.ts < end]
    minutes_at = {level: 0 for level in CongestionLevel}
    for minute in inside:
        minutes_at[minute.level] += 1
    worst = max((m.level for m in inside), default=None)
    worst_at = next((m.ts for m in inside if m.level == worst), None)
    total = int((end - start) / MINUTE)
    return RoadDay(
        day=day,
        site_id=site_id,
        minutes_at=minutes_at,
        minutes_no_data=total - len(inside),
        minutes_total=total,
        worst=worst,
        worst_at=worst_at,
        slowest_kmh=min((m.speed_kmh for m in inside if m.speed_kmh is not None), default=None),
    )


def zone_ids(site: Site) -> list[str]:
    """The road's zones over all its cameras, each once."""
    return list(dict.fromkeys(z.id for c in site.cameras for z in c.zones))


def road_day(conn: psycopg.Connection, site: Site, day: date, tz: str) -> RoadDay:
    """How ``site`` flowed on the local ``day``.

    Raises:
        StorageError: a query failed or the database is away.
    """
    start, end = local_day_bounds(day, tz)
    zones = [
        zone_series(conn, site.id, zone, start, end, Resolution.MINUTE).points
        for zone in zone_ids(site)
    ]
    return road_figures(day, site.id, grade_minutes(site, zones), start, end)


def level_key(level: CongestionLevel) -> str:
    """The level's key in the JSON and the table (``moderate``)."""
    return level.name.lower()


def road_json(road: RoadDay, tz: str) -> dict[str, object]:
    """The ``congestion`` object of a road in the report's JSON."""
    from zoneinfo import ZoneInfo

    worst_local = None if road.worst_at is None else road.worst_at.astimezone(ZoneInfo(tz))
    minutes: Mapping[str, int] = {level_key(lv): n for lv, n in road.minutes_at.items()}
    return {
        "minutes_at": dict(minutes),
        "minutes_moderate_or_worse": road.moderate_or_worse,
        "minutes_severe": road.severe,
        "minutes_no_data": road.minutes_no_data,
        "minutes_total": road.minutes_total,
        "worst": None if road.worst is None else level_key(road.worst),
        "worst_level": None if road.worst is None else int(road.worst),
        "worst_name": None if road.worst is None else {"zh": road.worst.zh, "en": road.worst.en},
        "worst_at": None
        if road.worst_at is None
        else road.worst_at.isoformat().replace("+00:00", "Z"),
        "worst_local": None if worst_local is None else worst_local.strftime("%H:%M"),
        "slowest_kmh": None if road.slowest_kmh is None else round(road.slowest_kmh, 1),
    }
