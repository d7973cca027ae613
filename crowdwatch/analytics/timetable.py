"""Scheduled buses at a stop, from a route's headways by time of day (``transit.routes``).

A headway period ``{start: "16:00", end: "19:00", every_min: 6}`` puts a bus at the stop at
16:00, 16:06, ... up to (not including) 19:00, local time of ``district.timezone``.  Routes
timed by a GTFS feed instead come from :mod:`crowdwatch.analytics.gtfs_import`.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from crowdwatch.analytics.dispatch_plan import ScheduledBus
from crowdwatch.contracts.config import BusRoute, hhmm_minutes


def headway_buses(
    route: BusRoute, tz: ZoneInfo, start: datetime, end: datetime
) -> list[ScheduledBus]:
    """The route's scheduled buses at any of its stops between ``start`` and ``end``.

    Args:
        route: a route with ``headways`` (local times of ``tz``).
        tz: the district's time zone.
        start: first instant (inclusive), timezone-aware.
        end: last instant (inclusive), timezone-aware.

    Returns:
        Buses in time order, each with the route's ``bus_capacity``.

    Example:
        >>> from datetime import UTC
        >>> from crowdwatch.contracts.config import BusRoute, Headway
        >>> k1 = BusRoute(id="K1", bus_capacity=80, stops=["stop-a"],
        ...               headways=[Headway(start="17:00", end="18:00", every_min=20)])
        >>> [b.at.strftime("%H:%M") for b in headway_buses(
        ...     k1, ZoneInfo("UTC"), datetime(2026, 10, 1, 17, 0, tzinfo=UTC),
        ...     datetime(2026, 10, 1, 23, 0, tzinfo=UTC))]
        ['17:00', '17:20', '17:40']
    """
    buses: list[ScheduledBus] = []
    day: date = start.astimezone(tz).date() - timedelta(days=1)
    while datetime.combine(day, time(), tz) <= end:
        midnight = datetime.combine(day, time(), tz)
        for period in route.headways:
            minute = float(hhmm_minutes(period.start))
            while minute < hhmm_minutes(period.end):
                at = midnight + timedelta(minutes=minute)
                if start <= at <= end:
                    buses.append(ScheduledBus(route.id, at, route.bus_capacity))
                minute += period.every_min
        day += timedelta(days=1)
    return sorted(buses, key=lambda b: b.at)
