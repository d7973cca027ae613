"""Alert rows in PostgreSQL: open a firing alert, resolve it, read what is firing.

The database itself deduplicates: a partial unique index allows one ``firing`` row per
alert key, so two engines (a primary and a standby) that both see a crowd insert one row,
and only the engine whose insert went through notifies.
"""

from __future__ import annotations

import psycopg

from crowdwatch.contracts.messages import AlertMessage
from crowdwatch.storage.db import transaction
from crowdwatch.storage.queries import ALERT_COLUMNS, AlertRow, alert_from_row


def insert_firing(conn: psycopg.Connection, message: AlertMessage) -> AlertRow | None:
    """Record a firing alert unless its key is already firing.

    Args:
        conn: an open connection (its own transaction is used).
        message: the firing :class:`AlertMessage` (``ts`` becomes ``started_at``).

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
