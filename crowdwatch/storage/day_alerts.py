"""The alerts that started in a time range, with how fast they were acknowledged.

One plain table (``alerts``), the same on both storage paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.rows import class_row

from crowdwatch.contracts.errors import StorageError


@dataclass(frozen=True, slots=True)
class AlertOfDay:
    id: int
    site_id: str
    zone_id: str | None
    rule_id: str
    severity: str
    department: str | None
    """As recorded by the engine (None on rows older than migration 4)."""
    started_at: datetime
    acknowledged_at: datetime | None


ALERTS_STARTED_SQL = """
SELECT id, site_id, zone_id, rule_id, severity, department, started_at, acknowledged_at
FROM alerts
WHERE started_at >= %(start)s AND started_at < %(end)s
ORDER BY started_at, id
"""
"""Parameters start, end (timestamptz)."""


def alerts_started(conn: psycopg.Connection, start: datetime, end: datetime) -> list[AlertOfDay]:
    """Alerts whose ``started_at`` lies in ``[start, end)``, oldest first.

    Raises:
        StorageError: the query failed or the database is away.
    """
    try:
        with conn.cursor(row_factory=class_row(AlertOfDay)) as cur:
            cur.execute(ALERTS_STARTED_SQL, {"start": start, "end": end})
            return cur.fetchall()
    except psycopg.Error as exc:
        raise StorageError(f"cannot read alerts: {exc}") from exc
