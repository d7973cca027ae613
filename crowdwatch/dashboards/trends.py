"""Which way each zone's crowd is heading: the live count against a few minutes ago.

"A few minutes ago" is the mean count of the 1-minute rollup buckets that started between
10 and 4 minutes ago: closed buckets (the plain-PostgreSQL refresher lags about 20 s), long
enough to smooth a single busy interval, recent enough that the arrow means "now".  One
statement reads every zone, so the live stream's cost does not grow with the number of
clients.  A change smaller than 2 people or 5 % of capacity is "steady": a beach of 2,000
should not flicker between up and down on a family walking past.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum

import psycopg

from crowdwatch.contracts.errors import StorageError

WINDOW_START = timedelta(minutes=10)
WINDOW_END = timedelta(minutes=4)
MIN_CHANGE_PEOPLE = 2.0
MIN_CHANGE_SHARE = 0.05


class Trend(StrEnum):
    UP = "up"
    DOWN = "down"
    STEADY = "steady"


EARLIER_MEANS_SQL = """
SELECT site_id, zone_id, sum(count_mean_sum) / nullif(sum(samples), 0)
FROM zone_counts_1m
WHERE bucket >= %(start)s AND bucket < %(end)s {site}
GROUP BY site_id, zone_id
"""
"""Mean count per zone over the buckets starting in ``[start, end)`` (plain rollup table or
TimescaleDB continuous aggregate: the same columns); ``{site}`` narrows it to one site."""


def earlier_means(
    conn: psycopg.Connection, now: datetime, site_id: str | None = None
) -> dict[tuple[str, str], float]:
    """Every zone's mean count between 10 and 4 minutes before ``now``.

    Args:
        conn: an open connection.
        now: the present instant (UTC-aware).
        site_id: only this site's zones; every site's when None.

    Returns:
        ``(site_id, zone_id) -> mean``; zones without buckets in the window are absent.

    Raises:
        StorageError: the query failed or the database is away.
    """
    params = {"start": now - WINDOW_START, "end": now - WINDOW_END, "site": site_id}
    sql = EARLIER_MEANS_SQL.format(site="" if site_id is None else "AND site_id = %(site)s")
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            rows = cur.fetchall()
    except psycopg.Error as exc:
        raise StorageError(f"database query failed: {exc}") from exc
    return {(r[0], r[1]): float(r[2]) for r in rows if r[2] is not None}


def trend(count: int | None, earlier: float | None, capacity: int) -> Trend | None:
    """The direction from ``earlier`` to ``count``.

    Args:
        count: the live count (None when the zone has no fresh count).
        earlier: the mean a few minutes ago (None without data then).
        capacity: the zone's or site's capacity.

    Returns:
        UP, DOWN or STEADY; None when either side is unknown.

    Example:
        >>> trend(60, 40.0, 100)
        <Trend.UP: 'up'>
    """
    if count is None or earlier is None:
        return None
    threshold = max(MIN_CHANGE_PEOPLE, MIN_CHANGE_SHARE * capacity)
    change = count - earlier
    if change >= threshold:
        return Trend.UP
    if change <= -threshold:
        return Trend.DOWN
    return Trend.STEADY


def site_earlier(
    zone_keys: list[tuple[str, str]], means: Mapping[tuple[str, str], float]
) -> float | None:
    """A site's earlier count: the sum of its zones' means, only when every zone has one
    (a zone missing then would make the site look like it grew)."""
    values = [means.get(key) for key in zone_keys]
    if not values or any(v is None for v in values):
        return None
    return sum(v for v in values if v is not None)
