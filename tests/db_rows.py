"""Rows put straight into the tables, as ingest and the alert engine would have written them.

Shared by the tests on the real PostgreSQL (queries, web, pages, actions); the engine itself
records alerts with :func:`crowdwatch.analytics.alert_store.record_batch`.
"""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg

from crowdwatch.contracts.messages import AlertMessage
from crowdwatch.storage.db import transaction
from crowdwatch.storage.queries import ALERT_COLUMNS, AlertRow, alert_from_row

T0 = datetime(2026, 10, 1, 6, 0, tzinfo=UTC)


def put_zone(
    conn: psycopg.Connection,
    site_id: str,
    zone_id: str,
    count: int,
    ts: datetime,
    camera_id: str = "cam1",
    method: str | None = None,
    count_flag: str | None = None,
    flagged_count: int | None = None,
) -> None:
    """Upsert a zone_latest row, as ingest does (``count_flag``: the edge held ``count``)."""
    conn.execute(
        "INSERT INTO zone_latest (site_id, zone_id, camera_id, ts, count, count_max, count_mean,"
        " method, count_flag, flagged_count) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (site_id, zone_id) DO UPDATE SET camera_id = EXCLUDED.camera_id,"
        " ts = EXCLUDED.ts, count = EXCLUDED.count, count_max = EXCLUDED.count_max,"
        " count_mean = EXCLUDED.count_mean, method = EXCLUDED.method,"
        " count_flag = EXCLUDED.count_flag, flagged_count = EXCLUDED.flagged_count",
        (
            site_id,
            zone_id,
            camera_id,
            ts,
            count,
            count + 2,
            count + 0.5,
            method,
            count_flag,
            flagged_count,
        ),
    )


def put_status(
    conn: psycopg.Connection, site_id: str, camera_id: str, state: str, ts: datetime
) -> None:
    """Upsert a camera_latest_status row, as ingest does."""
    conn.execute(
        "INSERT INTO camera_latest_status (site_id, camera_id, ts, state, fps, inference_ms,"
        " dropped_frames, detail) VALUES (%s, %s, %s, %s, 9.5, 40.0, 3, 'test')"
        " ON CONFLICT (site_id, camera_id) DO UPDATE SET ts = EXCLUDED.ts,"
        " state = EXCLUDED.state",
        (site_id, camera_id, ts, state),
    )


def alert_message(
    key: str = "stop-a/platform/crowded", state: str = "firing", ts: datetime = T0
) -> AlertMessage:
    return AlertMessage.model_validate(
        {
            "alert_key": key,
            "site_id": key.split("/")[0],
            "zone_id": key.split("/")[1],
            "rule_id": key.split("/")[2],
            "state": state,
            "severity": "warning",
            "value": 0.9,
            "threshold": 0.8,
            "ts": ts,
            "summary_zh": "甲站 候车区: 45 人",
            "summary_en": "Stop A platform: 45 people",
        }
    )


def insert_firing(conn: psycopg.Connection, message: AlertMessage) -> AlertRow | None:
    """Record a firing alert unless its key is already firing.

    The engine records alerts through ``record_batch``; tests that need a row in the table
    (pages, actions, queries) put one there with this.

    Returns:
        The new row, or ``None`` when a firing row with the same key exists already.

    Raises:
        StorageError: the statement failed or the database is away.
    """
    with transaction(conn) as cur:
        cur.execute(
            "INSERT INTO alerts (alert_key, site_id, zone_id, rule_id, severity, state, value, "
            "threshold, started_at, summary_zh, summary_en) "
            "VALUES (%s, %s, %s, %s, %s, 'firing', %s, %s, %s, %s, %s) "
            "ON CONFLICT (alert_key) WHERE state = 'firing' DO NOTHING "
            f"RETURNING {ALERT_COLUMNS}",
            (
                message.alert_key,
                message.site_id,
                message.zone_id,
                message.rule_id,
                message.severity,
                message.value,
                message.threshold,
                message.ts,
                message.summary_zh,
                message.summary_en,
            ),
        )
        row = cur.fetchone()
    return alert_from_row(row) if row is not None else None


def resolve_firing(conn: psycopg.Connection, message: AlertMessage) -> AlertRow | None:
    """Mark the firing alert of ``message.alert_key`` resolved at ``message.ts``.

    The row keeps the value and summary it fired with; the resolve message carries the
    value that cleared it.

    Args:
        conn: an open connection (its own transaction is used).
        message: the resolved :class:`AlertMessage`.

    Returns:
        The resolved row, or ``None`` when nothing was firing under that key (another engine
        resolved it first).

    Raises:
        StorageError: the statement failed or the database is away.
    """
    with transaction(conn) as cur:
        cur.execute(
            "UPDATE alerts SET state = 'resolved', resolved_at = %s, updated_at = now() "
            f"WHERE alert_key = %s AND state = 'firing' RETURNING {ALERT_COLUMNS}",
            (message.ts, message.alert_key),
        )
        row = cur.fetchone()
    return alert_from_row(row) if row is not None else None
