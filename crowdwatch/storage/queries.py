"""Read-side queries for the wall and the alert engine, as typed rows.

The newest counts, camera health and alerts; count series per zone or site at a resolution
chosen from the time range; a comparison with the same local time on a reference day (the
last holiday); daily totals in the district's local time.

Each function takes an open psycopg connection, runs one parameterised statement and returns
frozen dataclasses, so the alert engine and the web page never see tuples or column order.
psycopg errors leave as :class:`StorageError`.  The functions do not commit: reads run in
whatever transaction the caller has open (an autocommit connection is the usual choice).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from dataclasses import fields as dataclass_fields
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal, TypeVar, cast

import psycopg
from psycopg.rows import RowFactory, RowMaker, class_row, kwargs_row

from crowdwatch.contracts.db_schema import ROLLUP_ORIGIN, ROLLUP_RESOLUTIONS
from crowdwatch.contracts.errors import StorageError
from crowdwatch.contracts.messages import CountMessage, CountMethod, ZoneCount
from crowdwatch.contracts.metrics import HELD_COUNT_COLUMNS, ZONE_METRICS, zone_metric_columns
from crowdwatch.contracts.rollup_sql import (
    raw_series_select,
    series_names,
    site_series_select,
    zone_series_select,
)

_T = TypeVar("_T")

AlertState = Literal["firing", "resolved"]
Severity = Literal["info", "warning", "critical"]


@dataclass(frozen=True, slots=True)
class ZoneLatest:
    """The newest count of one zone (a row of ``zone_latest``).

    Besides its key, time and method, one field per metric of
    :mod:`crowdwatch.contracts.metrics`, named as its column (``tests/test_metrics.py``).
    """

    site_id: str
    zone_id: str
    camera_id: str
    ts: datetime
    count: int
    count_max: int
    count_mean: float
    longest_wait_s: float | None = None
    median_wait_s: float | None = None
    density_per_m2: float | None = None
    method: CountMethod | None = None
    """what produced ``count``; None where it was not recorded (edges and rows before it)"""
    peak_density_per_m2: float | None = None
    count_flag: str | None = None
    """why the edge held ``count`` back at its last usable value (a short English sentence);
    None: nothing flagged, or a row from before migration 10"""
    flagged_count: int | None = None
    """the reading the edge refused (None for a frame it could not count in)"""
    vehicles: int | None = None
    mean_speed_kmh: float | None = None
    vehicle_density: float | None = None
    queue_length_m: float | None = None

    @classmethod
    def of(cls, message: CountMessage, zone: ZoneCount) -> ZoneLatest:
        """The row ingest writes for one zone of a message (the alert engine's fast path)."""
        metrics: dict[str, Any] = {m.column: getattr(zone, m.column) for m in ZONE_METRICS}
        return cls(
            site_id=message.site_id,
            zone_id=zone.zone_id,
            camera_id=message.camera_id,
            ts=message.ts,
            method=zone.method,
            count_flag=zone.count_flag,
            flagged_count=zone.flagged_count,
            **metrics,
        )


@dataclass(frozen=True, slots=True)
class CameraStatusRow:
    """The newest health report of one camera (a row of ``camera_latest_status``)."""

    site_id: str
    camera_id: str
    ts: datetime
    state: str
    fps: float
    inference_ms: float
    dropped_frames: int
    detail: str


@dataclass(frozen=True, slots=True)
class AlertRow:
    """One alert (a row of ``alerts``)."""

    id: int
    alert_key: str
    site_id: str
    zone_id: str | None
    rule_id: str
    severity: Severity
    state: AlertState
    value: float
    threshold: float
    started_at: datetime
    resolved_at: datetime | None
    summary_zh: str
    summary_en: str
    # Migration 4: who acted on it, and the engine's own bookkeeping.
    camera_id: str | None = None
    department: str | None = None
    group_key: str | None = None
    """what notifications group it by: a bus route or the beach (site)"""
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    ack_note: str | None = None
    escalation_level: int = 0
    """0: first contacts only; each escalation (timed or by hand) adds one"""
    escalated_at: datetime | None = None


ALERT_COLUMNS = (
    "id, alert_key, site_id, zone_id, rule_id, severity, state, value, threshold, "
    "started_at, resolved_at, summary_zh, summary_en, camera_id, department, group_key, "
    "acknowledged_at, acknowledged_by, ack_note, escalation_level, escalated_at"
)
"""The ``alerts`` columns in the order :func:`alert_from_row` expects."""


def _fetch_all(
    conn: psycopg.Connection, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
) -> list[tuple[Any, ...]]:
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    except psycopg.Error as exc:
        raise StorageError(f"database query failed: {exc}") from exc


def fetch_rows(
    conn: psycopg.Connection,
    sql: str,
    row_factory: RowFactory[_T],
    params: Sequence[Any] | Mapping[str, Any] = (),
) -> list[_T]:
    """Rows built by name by a psycopg row factory (``class_row``, ``kwargs_row``)."""
    try:
        with conn.cursor(row_factory=row_factory) as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    except psycopg.Error as exc:
        raise StorageError(f"database query failed: {exc}") from exc


def alert_from_row(row: Sequence[Any]) -> AlertRow:
    """Build an :class:`AlertRow` from a row selected with the ``alerts`` columns in order."""
    return AlertRow(
        id=int(row[0]),
        alert_key=row[1],
        site_id=row[2],
        zone_id=row[3],
        rule_id=row[4],
        severity=cast(Severity, row[5]),
        state=cast(AlertState, row[6]),
        value=float(row[7]),
        threshold=float(row[8]),
        started_at=row[9],
        resolved_at=row[10],
        summary_zh=row[11],
        summary_en=row[12],
        camera_id=row[13] if len(row) > 13 else None,
        department=row[14] if len(row) > 14 else None,
        group_key=row[15] if len(row) > 15 else None,
        acknowledged_at=row[16] if len(row) > 16 else None,
        acknowledged_by=row[17] if len(row) > 17 else None,
        ack_note=row[18] if len(row) > 18 else None,
        escalation_level=int(row[19]) if len(row) > 19 else 0,
        escalated_at=row[20] if len(row) > 20 else None,
    )


def latest_zone_counts(conn: psycopg.Connection, site_id: str | None = None) -> list[ZoneLatest]:
    """The newest count of every zone that has ever reported.

    Args:
        conn: an open connection.
        site_id: only this site's zones (one site's page); every site's when None.

    Returns:
        One row per (site, zone), ordered by site and zone.

    Raises:
        StorageError: the query failed or the database is away.
    """
    if site_id is None:
        return fetch_rows(conn, LATEST_ZONE_COUNTS_SQL, zone_latest_row)
    return fetch_rows(
        conn,
        f"SELECT {ZONE_LATEST_COLUMNS} FROM zone_latest WHERE site_id = %s ORDER BY zone_id",
        zone_latest_row,
        (site_id,),
    )


ZONE_LATEST_COLUMNS = (
    f"site_id, zone_id, camera_id, ts, method, {', '.join(zone_metric_columns())}, "
    f"{', '.join(HELD_COUNT_COLUMNS)}"
)
"""The columns of ``zone_latest`` that make a :class:`ZoneLatest` (see :func:`zone_latest_row`)."""

LATEST_ZONE_COUNTS_SQL = f"SELECT {ZONE_LATEST_COLUMNS} FROM zone_latest ORDER BY site_id, zone_id"


def zone_latest_row(cursor: Any) -> RowMaker[ZoneLatest]:  # psycopg exports no cursor base
    """A psycopg row factory: rows of :data:`ZONE_LATEST_COLUMNS` into :class:`ZoneLatest`.

    The columns are matched to the fields by name once per statement; ``kwargs_row`` matches
    them again on every row (20,000 zones, the web's every read: 248 ms of CPU against 133).

    Raises:
        ValueError: the statement does not select a column for every field.
    """
    names = [column.name for column in cursor.description or ()]
    fields = [f.name for f in dataclass_fields(ZoneLatest)]
    at = [names.index(name) for name in fields]
    method = fields.index("method")

    def make(values: Sequence[Any]) -> ZoneLatest:
        args = [values[i] for i in at]
        if args[method] is not None:
            args[method] = CountMethod(args[method])
        return ZoneLatest(*args)

    return make


CAMERA_STATUS_COLUMNS = "site_id, camera_id, ts, state, fps, inference_ms, dropped_frames, detail"
"""The columns of ``camera_latest_status`` that make a :class:`CameraStatusRow`."""


def latest_camera_status(
    conn: psycopg.Connection, site_id: str | None = None
) -> list[CameraStatusRow]:
    """The newest health report of every camera that has ever reported.

    Args:
        conn: an open connection.
        site_id: only this site's cameras; every site's when None.

    Returns:
        One row per (site, camera), ordered by site and camera.

    Raises:
        StorageError: the query failed or the database is away.
    """
    where, params = ("", ()) if site_id is None else ("WHERE site_id = %s ", (site_id,))
    return fetch_rows(
        conn,
        f"SELECT {CAMERA_STATUS_COLUMNS} FROM camera_latest_status {where}"
        "ORDER BY site_id, camera_id",
        class_row(CameraStatusRow),
        params,
    )


def active_alerts(conn: psycopg.Connection) -> list[AlertRow]:
    """Every firing alert, newest first.

    Args:
        conn: an open connection.

    Returns:
        The firing alerts (at most one per alert key, enforced by a unique index).

    Raises:
        StorageError: the query failed or the database is away.
    """
    rows = _fetch_all(
        conn,
        f"SELECT {ALERT_COLUMNS} FROM alerts WHERE state = 'firing' "
        "ORDER BY started_at DESC, id DESC",
    )
    return [alert_from_row(r) for r in rows]


def firing_alert(conn: psycopg.Connection, key: str) -> AlertRow | None:
    """The firing alert of one deduplication key, if any.

    Args:
        conn: an open connection.
        key: the alert key (``site/zone/rule``).

    Returns:
        The firing alert, or ``None`` when the key is not firing.

    Raises:
        StorageError: the query failed or the database is away.
    """
    rows = _fetch_all(
        conn,
        f"SELECT {ALERT_COLUMNS} FROM alerts WHERE state = 'firing' AND alert_key = %s",
        (key,),
    )
    return alert_from_row(rows[0]) if rows else None


def recent_alerts(conn: psycopg.Connection, limit: int = 100) -> list[AlertRow]:
    """The newest alerts, firing or resolved.

    Args:
        conn: an open connection.
        limit: at most this many rows.

    Returns:
        Alerts ordered by start time, newest first.

    Raises:
        StorageError: the query failed or the database is away.
    """
    rows = _fetch_all(
        conn,
        f"SELECT {ALERT_COLUMNS} FROM alerts ORDER BY started_at DESC, id DESC LIMIT %s",
        (limit,),
    )
    return [alert_from_row(r) for r in rows]


# --- Series, reference day, daily totals ------------------------------------------------
#
# Every statement below is a constant with named parameters (``%(site_id)s``), chosen from
# a closed set by resolution: no SQL is ever built from a value.  Each reads the same on
# plain PostgreSQL (rollup tables) and TimescaleDB (continuous aggregates of the same names
# and columns), and stays usable as a Grafana panel query with the parameters replaced by
# Grafana macros (``$__timeFrom()``, ``$__timeTo()``, a ``$site`` variable).


class Resolution(StrEnum):
    """The step of a series: raw rows, or one of the rollups."""

    RAW = "raw"
    MINUTE = "1m"
    QUARTER_HOUR = "15m"
    HOUR = "1h"


RAW_UNDER = timedelta(hours=2)
MINUTE_UNDER = timedelta(days=1)
QUARTER_HOUR_UNDER = timedelta(days=14)


def choose_resolution(start: datetime, end: datetime) -> Resolution:
    """The resolution for a time range: raw under 2 h, 1 min under 1 day, 15 min under 2
    weeks, 1 h beyond; at most about 1,440 points per zone (raw: one per message).

    Args:
        start: first instant of the range.
        end: end of the range (excluded).

    Returns:
        The resolution; a site series never uses raw rows (see :func:`site_series`).
    """
    span = end - start
    if span < RAW_UNDER:
        return Resolution.RAW
    if span < MINUTE_UNDER:
        return Resolution.MINUTE
    if span < QUARTER_HOUR_UNDER:
        return Resolution.QUARTER_HOUR
    return Resolution.HOUR


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    """One step of a series: a raw row or a rollup bucket (``ts`` is the bucket start).

    Besides ``ts`` and ``samples``, one field per rollup of
    :mod:`crowdwatch.contracts.metrics`, named as the aggregate (``tests/test_metrics.py``).
    """

    ts: datetime
    count_last: int
    """The count of the bucket's newest message (a site: summed over its zones)."""
    count_mean: float
    count_max: int
    samples: int
    """Count messages behind the point (a site: over all its zones)."""
    wait_max: float | None = None
    wait_mean: float | None = None
    density_max: float | None = None
    density_mean: float | None = None
    peak_density_max: float | None = None
    vehicles_max: int | None = None
    speed_mean: float | None = None
    veh_density_mean: float | None = None
    queue_max: float | None = None


@dataclass(frozen=True, slots=True)
class Series:
    resolution: Resolution
    points: list[SeriesPoint]


_WIDTHS = dict(ROLLUP_RESOLUTIONS)
_ORIGIN = f"TIMESTAMPTZ '{ROLLUP_ORIGIN}'"

SERIES_COLUMNS = ", ".join(series_names())
"""The columns of every series statement, in order (a Grafana panel names them so)."""

ZONE_RAW_SERIES_SQL = f"""
SELECT {raw_series_select()}
FROM zone_counts
WHERE site_id = %(site_id)s AND zone_id = %(zone_id)s AND ts >= %(start)s AND ts < %(end)s
ORDER BY ts, message_id
"""
"""One point per raw row: each aggregate reads the row's own value."""

# The bucket containing ``start`` is included, so a range never starts with a gap.
_ZONE_ROLLUP_SERIES = f"""
SELECT {zone_series_select()}
FROM zone_counts_{{suffix}}
WHERE site_id = %(site_id)s AND zone_id = %(zone_id)s
  AND bucket >= date_bin(INTERVAL '{{width}}', %(start)s::timestamptz, {{origin}})
  AND bucket < %(end)s
ORDER BY bucket
"""

_SITE_ROLLUP_SERIES = f"""
SELECT {site_series_select()}
FROM site_counts_{{suffix}}
WHERE site_id = %(site_id)s
  AND bucket >= date_bin(INTERVAL '{{width}}', %(start)s::timestamptz, {{origin}})
  AND bucket < %(end)s
ORDER BY bucket
"""

ZONE_SERIES_SQL: dict[Resolution, str] = {Resolution.RAW: ZONE_RAW_SERIES_SQL} | {
    Resolution(suffix): _ZONE_ROLLUP_SERIES.format(suffix=suffix, width=width, origin=_ORIGIN)
    for suffix, width in ROLLUP_RESOLUTIONS
}
"""The statement of :func:`zone_series` per resolution (parameters site_id, zone_id,
start, end)."""

SITE_SERIES_SQL: dict[Resolution, str] = {
    Resolution(suffix): _SITE_ROLLUP_SERIES.format(suffix=suffix, width=width, origin=_ORIGIN)
    for suffix, width in ROLLUP_RESOLUTIONS
}
"""The statement of :func:`site_series` per resolution (parameters site_id, start, end)."""


def _point(*, bucket: datetime, **aggregates: Any) -> SeriesPoint:
    return SeriesPoint(ts=bucket, **aggregates)


def _points(conn: psycopg.Connection, sql: str, params: Mapping[str, Any]) -> list[SeriesPoint]:
    return fetch_rows(conn, sql, kwargs_row(_point), params)


def zone_series(
    conn: psycopg.Connection,
    site_id: str,
    zone_id: str,
    start: datetime,
    end: datetime,
    resolution: Resolution | None = None,
) -> Series:
    """The counts of one zone over ``[start, end)``.

    Buckets with no message are absent (never zeros: no data is not "nobody").  Rollups are
    as fresh as the last refresh (plain PostgreSQL, about 20 s) or real-time (TimescaleDB).

    Args:
        conn: an open connection.
        site_id: the site.
        zone_id: the zone.
        start: first instant (timezone-aware); the bucket containing it is included.
        end: end of the range, excluded.
        resolution: default :func:`choose_resolution`.

    Returns:
        The points in time order.

    Raises:
        StorageError: the query failed or the database is away.
    """
    resolution = resolution or choose_resolution(start, end)
    params = {"site_id": site_id, "zone_id": zone_id, "start": start, "end": end}
    return Series(resolution, _points(conn, ZONE_SERIES_SQL[resolution], params))


def site_series(
    conn: psycopg.Connection,
    site_id: str,
    start: datetime,
    end: datetime,
    resolution: Resolution | None = None,
) -> Series:
    """The counts of one site (summed over its zones) over ``[start, end)``.

    A site's cameras report at different instants, so its finest step is 1 minute: a range
    that would get raw rows gets 1-minute buckets.  Semantics of the sums: see the
    ``site_counts_*`` views in :mod:`crowdwatch.contracts.db_schema`.

    Args:
        conn: an open connection.
        site_id: the site.
        start: first instant (timezone-aware); the bucket containing it is included.
        end: end of the range, excluded.
        resolution: default :func:`choose_resolution` (raw becomes 1 minute).

    Returns:
        The points in time order.

    Raises:
        StorageError: the query failed or the database is away.
    """
    resolution = resolution or choose_resolution(start, end)
    if resolution is Resolution.RAW:
        resolution = Resolution.MINUTE
    params = {"site_id": site_id, "start": start, "end": end}
    return Series(resolution, _points(conn, SITE_SERIES_SQL[resolution], params))


def reference_instant(at: datetime, reference_day: date, tz: str) -> datetime:
    """The same local wall-clock time as ``at``, on ``reference_day`` (in zone ``tz``)."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tz)
    local = at.astimezone(zone)
    return datetime.combine(reference_day, local.time().replace(tzinfo=None), tzinfo=zone)


def reference_series(
    conn: psycopg.Connection,
    site_id: str,
    start: datetime,
    end: datetime,
    reference_day: date,
    tz: str,
    *,
    zone_id: str | None = None,
    resolution: Resolution | None = None,
) -> Series:
    """What the reference day (the last holiday) looked like at the same local times.

    The range is moved to start at ``start``'s local time on ``reference_day``; the points'
    ``ts`` are moved back onto ``[start, end)`` so the two series plot on one time axis.

    Args:
        conn: an open connection.
        site_id: the site.
        start: first instant of the range being compared.
        end: end of that range, excluded.
        reference_day: the local date to compare with.
        tz: the district's IANA time zone (``district.timezone``).
        zone_id: one zone; default the whole site.
        resolution: default :func:`choose_resolution` of the range.

    Returns:
        The reference day's points, on the compared range's time axis.

    Raises:
        StorageError: the query failed or the database is away.
    """
    shift = reference_instant(start, reference_day, tz) - start
    if zone_id is None:
        series = site_series(conn, site_id, start + shift, end + shift, resolution)
    else:
        series = zone_series(conn, site_id, zone_id, start + shift, end + shift, resolution)
    moved = [replace(p, ts=p.ts - shift) for p in series.points]
    return Series(series.resolution, moved)


@dataclass(frozen=True, slots=True)
class ReferenceComparison:
    """A zone now and at the same local time on the reference day (1-minute rollups)."""

    site_id: str
    zone_id: str
    now_mean: float | None
    """Mean count over the window ending now; None without data."""
    now_max: int | None
    reference_mean: float | None
    """Mean count over the same local window on the reference day; None without data."""
    reference_max: int | None


_REFERENCE_COMPARISON = """
WITH bounds AS (
    SELECT %(at)s::timestamptz - %(window)s::interval AS now_from,
           %(at)s::timestamptz AS now_to,
           ((%(reference_day)s::date + (%(at)s::timestamptz AT TIME ZONE %(tz)s)::time)
               AT TIME ZONE %(tz)s) AS ref_to
)
SELECT z.site_id, z.zone_id,
       sum(z.count_mean_sum) FILTER (WHERE z.bucket >= b.now_from AND z.bucket < b.now_to)
         / nullif(sum(z.samples) FILTER (WHERE z.bucket >= b.now_from AND z.bucket < b.now_to), 0)
         AS now_mean,
       max(z.count_max) FILTER (WHERE z.bucket >= b.now_from AND z.bucket < b.now_to) AS now_max,
       sum(z.count_mean_sum) FILTER (WHERE z.bucket < b.ref_to AND z.bucket >= b.ref_to - %(window)s::interval)
         / nullif(sum(z.samples) FILTER (WHERE z.bucket < b.ref_to AND z.bucket >= b.ref_to - %(window)s::interval), 0)
         AS reference_mean,
       max(z.count_max) FILTER (WHERE z.bucket < b.ref_to AND z.bucket >= b.ref_to - %(window)s::interval)
         AS reference_max
FROM zone_counts_1m z, bounds b
WHERE ((z.bucket >= b.now_from AND z.bucket < b.now_to)
    OR (z.bucket >= b.ref_to - %(window)s::interval AND z.bucket < b.ref_to))
  {site_filter}
GROUP BY z.site_id, z.zone_id
ORDER BY z.site_id, z.zone_id
"""

# Two constants rather than "site_id IS NULL OR ...": a prepared statement's generic plan
# could then not use the site index.
REFERENCE_COMPARISON_SQL = _REFERENCE_COMPARISON.format(site_filter="")
"""Every zone; parameters: at, window (interval), reference_day (date), tz."""
REFERENCE_COMPARISON_SITE_SQL = _REFERENCE_COMPARISON.format(
    site_filter="AND z.site_id = %(site_id)s"
)
"""One site's zones; parameters as :data:`REFERENCE_COMPARISON_SQL` plus site_id."""


def compare_with_reference_day(
    conn: psycopg.Connection,
    at: datetime,
    reference_day: date,
    tz: str,
    *,
    window: timedelta = timedelta(minutes=15),
    site_id: str | None = None,
) -> list[ReferenceComparison]:
    """Every zone's counts over ``[at - window, at)`` beside the same local window on
    ``reference_day`` (e.g. the last holiday), from the 1-minute rollups.

    A 1-minute bucket counts when it starts inside the window.

    Args:
        conn: an open connection.
        at: the end of the window (usually now).
        reference_day: the local date to compare with.
        tz: the district's IANA time zone (``district.timezone``).
        window: how far back from ``at``.
        site_id: one site; default every site.

    Returns:
        One row per zone with data in either window, ordered by site and zone.

    Raises:
        StorageError: the query failed or the database is away.
    """
    params = {
        "at": at,
        "window": window,
        "reference_day": reference_day,
        "tz": tz,
        "site_id": site_id,
    }
    statement = REFERENCE_COMPARISON_SQL if site_id is None else REFERENCE_COMPARISON_SITE_SQL
    return fetch_rows(conn, statement, class_row(ReferenceComparison), params)


@dataclass(frozen=True, slots=True)
class DailyTotal:
    """One site on one local day."""

    day: date
    site_id: str
    crossings_in: int
    """Line crossings in the 'in' direction, over every line of the site (but those left out,
    see :func:`daily_totals`)."""
    crossings_out: int
    peak_count: int | None
    """Largest site count_max of the day's buckets (hourly, or 15-minute in a time zone with
    a fractional-hour offset; the sum of the zones' maxima in the bucket); None when the site
    has lines but no zone data that day."""


_DAILY_TOTALS = """
WITH crossings AS (
    SELECT (bucket AT TIME ZONE %(tz)s)::date AS day, site_id,
           sum(in_sum)::bigint AS crossings_in, sum(out_sum)::bigint AS crossings_out
    FROM line_counts_{suffix}
    WHERE bucket >= (%(first_day)s::date::timestamp AT TIME ZONE %(tz)s)
      AND bucket < ((%(last_day)s::date + 1)::timestamp AT TIME ZONE %(tz)s)
      AND NOT (site_id || '/' || line_id) = ANY(%(left_out)s::text[])
      {site_filter}
    GROUP BY 1, 2
), peaks AS (
    SELECT (bucket AT TIME ZONE %(tz)s)::date AS day, site_id,
           max(count_max)::bigint AS peak_count
    FROM site_counts_{suffix}
    WHERE bucket >= (%(first_day)s::date::timestamp AT TIME ZONE %(tz)s)
      AND bucket < ((%(last_day)s::date + 1)::timestamp AT TIME ZONE %(tz)s)
      {site_filter}
    GROUP BY 1, 2
)
SELECT day, site_id, coalesce(c.crossings_in, 0) AS crossings_in,
       coalesce(c.crossings_out, 0) AS crossings_out, p.peak_count
FROM crossings c FULL JOIN peaks p USING (day, site_id)
ORDER BY day, site_id
"""

DAILY_TOTALS_SQL: dict[tuple[Resolution, bool], str] = {
    (Resolution(suffix), one_site): _DAILY_TOTALS.format(
        suffix=suffix, site_filter="AND site_id = %(site_id)s" if one_site else ""
    )
    for suffix in ("15m", "1h")
    for one_site in (False, True)
}
"""The statement of :func:`daily_totals` by (resolution, one site?); parameters first_day,
last_day (local dates, inclusive), tz, left_out (``site/line`` ids not summed) and site_id
for one site."""


def daily_resolution(tz: str, first_day: date, last_day: date) -> Resolution:
    """Hourly buckets when ``tz`` is a whole number of hours from UTC at both ends of the
    range (Asia/Shanghai always is), else 15-minute buckets (every zone in use today is a
    whole number of quarter hours from UTC), so a local day is always whole buckets.
    """
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tz)
    for day in (first_day, last_day + timedelta(days=1)):
        offset = datetime.combine(day, datetime.min.time(), tzinfo=zone).utcoffset()
        if offset is None or offset % timedelta(hours=1):
            return Resolution.QUARTER_HOUR
    return Resolution.HOUR


def daily_totals(
    conn: psycopg.Connection,
    first_day: date,
    last_day: date,
    tz: str,
    *,
    site_id: str | None = None,
    resolution: Resolution | None = None,
    left_out: Sequence[tuple[str, str]] = (),
) -> list[DailyTotal]:
    """Per local day and site: line crossings in and out, and the peak occupancy.

    A raw row counts on the local day of its ``ts`` (the end of its interval); in
    Asia/Shanghai (UTC+8) a day runs from 16:00 UTC the day before.

    Args:
        conn: an open connection.
        first_day: first local date.
        last_day: last local date (included).
        tz: the district's IANA time zone (``district.timezone``).
        site_id: one site; default every site.
        resolution: the rollup read, 15m or 1h; default :func:`daily_resolution`.
        left_out: ``(site_id, line_id)`` of lines not to sum: lines by class, which count a
            part of another line's crossings (see :meth:`~crowdwatch.contracts.config.Site.lines_by_class`).

    Returns:
        One row per (day, site) with any data, ordered by day and site.

    Raises:
        StorageError: the query failed or the database is away.
    """
    resolution = resolution or daily_resolution(tz, first_day, last_day)
    if resolution not in (Resolution.QUARTER_HOUR, Resolution.HOUR):
        raise ValueError(f"expected a 15m or 1h resolution for daily totals, got {resolution}")
    params = {
        "first_day": first_day,
        "last_day": last_day,
        "tz": tz,
        "site_id": site_id,
        "left_out": [f"{site}/{line}" for site, line in left_out],
    }
    statement = DAILY_TOTALS_SQL[(resolution, site_id is not None)]
    return fetch_rows(conn, statement, class_row(DailyTotal), params)
