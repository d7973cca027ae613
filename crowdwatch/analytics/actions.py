"""What a dispatcher does to an alert: acknowledge it, escalate it, read its history.

These are the functions behind the buttons of the dispatcher page.  Each runs in one
transaction: it locks the alert row, checks it is still firing, updates it and appends one
row to ``alert_events`` (who, when, what, note), so the history is complete whichever
process (web page, engine, a second engine) acted.

The engine reacts to what is written here on its next evaluation: an acknowledged alert is
no longer escalated by time; a hand escalation raises ``escalation_level`` and the engine
notifies that level's contacts (it compares ``escalation_level`` with what it has notified).

Example:
    >>> row = acknowledge(conn, alert_id=42, who="Li Wei", note="bus 3 sent")  # doctest: +SKIP
    >>> [e.kind for e in alert_history(conn, 42)]  # doctest: +SKIP
    ['fired', 'acknowledged']
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from crowdwatch.contracts.errors import AlertNotActive, AlertNotFound, StorageError
from crowdwatch.storage.db import transaction
from crowdwatch.storage.queries import ALERT_COLUMNS, AlertRow, alert_from_row

ENGINE = "engine"
"""``who`` of the events the engine itself records (fired, resolved, timed escalation)."""


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One step in an alert's life (a row of ``alert_events``)."""

    id: int
    alert_id: int
    at: datetime
    """when it happened"""
    kind: str
    """what: ``fired``, ``acknowledged``, ``escalated``, ``resolved``, ``suppressed``,
    ``notified``, ``delivery_failed``"""
    who: str
    """a person's name, or ``engine``"""
    note: str


def _check_who(who: str) -> str:
    who = who.strip()
    if not who:
        raise ValueError("who must name the person acting, got an empty string")
    return who


def _locked_firing(cur: psycopg.Cursor[Any], alert_id: int) -> None:
    cur.execute("SELECT state FROM alerts WHERE id = %s FOR UPDATE", (alert_id,))
    row = cur.fetchone()
    if row is None:
        raise AlertNotFound(f"no alert with id {alert_id}")
    if row[0] != "firing":
        raise AlertNotActive(f"alert {alert_id} is {row[0]}, not firing")


def record_event(
    cur: psycopg.Cursor[Any], alert_id: int, at: datetime, kind: str, who: str, note: str = ""
) -> None:
    """Append one event to an alert's history, inside the caller's transaction.

    Args:
        cur: a cursor of the open transaction.
        alert_id: the alert.
        at: when it happened.
        kind: what happened (see :class:`AlertEvent`).
        who: a person, or :data:`ENGINE`.
        note: free text.
    """
    cur.execute(
        "INSERT INTO alert_events (alert_id, at, kind, who, note) VALUES (%s, %s, %s, %s, %s)",
        (alert_id, at, kind, who, note),
    )


def acknowledge(
    conn: psycopg.Connection, alert_id: int, who: str, note: str, *, at: datetime | None = None
) -> AlertRow:
    """Acknowledge a firing alert: someone is on it ("bus 3 sent").

    Stops timed escalation of the alert.  Acknowledging again (another dispatcher, a new
    note) replaces who/when/note on the row and adds another event to the history.

    Args:
        conn: an open connection (its own transaction, or a savepoint in the caller's).
        alert_id: ``alerts.id``.
        who: the person acknowledging (non-empty).
        note: what they did; may be empty.
        at: when (UTC-aware); default now.

    Returns:
        The updated alert.

    Raises:
        AlertNotFound: no alert has this id.
        AlertNotActive: the alert is resolved.
        ValueError: ``who`` is empty.
        StorageError: the database failed.
    """
    who = _check_who(who)
    at = at or datetime.now(UTC)
    with transaction(conn) as cur:
        _locked_firing(cur, alert_id)
        cur.execute(
            "UPDATE alerts SET acknowledged_at = %s, acknowledged_by = %s, ack_note = %s, "
            f"updated_at = now() WHERE id = %s RETURNING {ALERT_COLUMNS}",
            (at, who, note, alert_id),
        )
        row = cur.fetchone()
        record_event(cur, alert_id, at, "acknowledged", who, note)
    assert row is not None
    return alert_from_row(row)


def escalate(
    conn: psycopg.Connection,
    alert_id: int,
    who: str,
    note: str = "",
    *,
    at: datetime | None = None,
) -> AlertRow:
    """Escalate a firing alert by hand: the next contact (or the duty officer) is notified.

    Raises ``escalation_level`` by one; the engine sends that level's notifications on its
    next evaluation.  Works on an acknowledged alert too (the dispatcher needs help).

    Args:
        conn: an open connection.
        alert_id: ``alerts.id``.
        who: the person escalating (non-empty).
        note: why; may be empty.
        at: when (UTC-aware); default now.

    Returns:
        The updated alert.

    Raises:
        AlertNotFound: no alert has this id.
        AlertNotActive: the alert is resolved.
        ValueError: ``who`` is empty.
        StorageError: the database failed.
    """
    who = _check_who(who)
    at = at or datetime.now(UTC)
    with transaction(conn) as cur:
        _locked_firing(cur, alert_id)
        row = escalate_locked(cur, alert_id, at, who, note)
    return row


def escalate_locked(
    cur: psycopg.Cursor[Any], alert_id: int, at: datetime, who: str, note: str
) -> AlertRow:
    """Raise the escalation level of an alert the caller has locked; record the event."""
    cur.execute(
        "UPDATE alerts SET escalation_level = escalation_level + 1, escalated_at = %s, "
        f"updated_at = now() WHERE id = %s RETURNING {ALERT_COLUMNS}",
        (at, alert_id),
    )
    row = cur.fetchone()
    assert row is not None
    alert = alert_from_row(row)
    record_event(cur, alert_id, at, "escalated", who, note or f"level {alert.escalation_level}")
    return alert


def alert_history(conn: psycopg.Connection, alert_id: int) -> list[AlertEvent]:
    """Every event of one alert, oldest first.

    Args:
        conn: an open connection.
        alert_id: ``alerts.id``.

    Returns:
        The events (fired, acknowledged, escalated, resolved, ...), by time.

    Raises:
        AlertNotFound: no alert has this id.
        StorageError: the database failed.
    """
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM alerts WHERE id = %s", (alert_id,))
            if cur.fetchone() is None:
                raise AlertNotFound(f"no alert with id {alert_id}")
            cur.execute(
                "SELECT id, alert_id, at, kind, who, note FROM alert_events "
                "WHERE alert_id = %s ORDER BY at, id",
                (alert_id,),
            )
            rows = cur.fetchall()
    except psycopg.Error as exc:
        raise StorageError(f"cannot read the history of alert {alert_id}: {exc}") from exc
    return [AlertEvent(int(r[0]), int(r[1]), r[2], r[3], r[4], r[5]) for r in rows]


def get_alert(conn: psycopg.Connection, alert_id: int) -> AlertRow:
    """One alert by id.

    Raises:
        AlertNotFound: no alert has this id.
        StorageError: the database failed.
    """
    try:
        row = conn.execute(f"SELECT {ALERT_COLUMNS} FROM alerts WHERE id = %s", (alert_id,))
        found = row.fetchone()
    except psycopg.Error as exc:
        raise StorageError(f"cannot read alert {alert_id}: {exc}") from exc
    if found is None:
        raise AlertNotFound(f"no alert with id {alert_id}")
    return alert_from_row(found)
