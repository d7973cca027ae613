"""Read-side queries: the newest counts, camera health and alerts, as typed rows.

Each function takes an open psycopg connection, runs one parameterised statement and returns
frozen dataclasses, so the alert engine and the web page never see tuples or column order.
psycopg errors leave as :class:`StorageError`.  The functions do not commit: reads run in
whatever transaction the caller has open (an autocommit connection is the usual choice).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

import psycopg

from crowdwatch.contracts.errors import StorageError

AlertState = Literal["firing", "resolved"]
Severity = Literal["info", "warning", "critical"]


@dataclass(frozen=True, slots=True)
class ZoneLatest:
    """The newest count of one zone (a row of ``zone_latest``)."""

    site_id: str
    zone_id: str
    camera_id: str
    ts: datetime
    count: int
    count_max: int
    count_mean: float


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


ALERT_COLUMNS = (
    "id, alert_key, site_id, zone_id, rule_id, severity, state, value, threshold, "
    "started_at, resolved_at, summary_zh, summary_en"
)
"""The ``alerts`` columns in the order :func:`alert_from_row` expects."""


def _fetch_all(
    conn: psycopg.Connection, sql: str, params: Sequence[Any] = ()
) -> list[tuple[Any, ...]]:
    try:
        with conn.cursor() as cur:
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
    )


def latest_zone_counts(conn: psycopg.Connection) -> list[ZoneLatest]:
    """The newest count of every zone that has ever reported.

    Args:
        conn: an open connection.

    Returns:
        One row per (site, zone), ordered by site and zone.

    Raises:
        StorageError: the query failed or the database is away.
    """
    rows = _fetch_all(
        conn,
        "SELECT site_id, zone_id, camera_id, ts, count, count_max, count_mean "
        "FROM zone_latest ORDER BY site_id, zone_id",
    )
    return [
        ZoneLatest(
            site_id=r[0],
            zone_id=r[1],
            camera_id=r[2],
            ts=r[3],
            count=int(r[4]),
            count_max=int(r[5]),
            count_mean=float(r[6]),
        )
        for r in rows
    ]


def latest_camera_status(conn: psycopg.Connection) -> list[CameraStatusRow]:
    """The newest health report of every camera that has ever reported.

    Args:
        conn: an open connection.

    Returns:
        One row per (site, camera), ordered by site and camera.

    Raises:
        StorageError: the query failed or the database is away.
    """
    rows = _fetch_all(
        conn,
        "SELECT site_id, camera_id, ts, state, fps, inference_ms, dropped_frames, detail "
        "FROM camera_latest_status ORDER BY site_id, camera_id",
    )
    return [
        CameraStatusRow(
            site_id=r[0],
            camera_id=r[1],
            ts=r[2],
            state=r[3],
            fps=float(r[4]),
            inference_ms=float(r[5]),
            dropped_frames=int(r[6]),
            detail=r[7],
        )
        for r in rows
    ]


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
