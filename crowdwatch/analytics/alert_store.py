"""Alert rows in PostgreSQL: open a firing alert, resolve it, read what is firing.

The engine records each evaluation in one transaction (:func:`record_batch`: alerts, their
history, pending timers, keep-firing clocks, the notifications to send) and its follow-ups in
another (:func:`queue_followups`); :func:`hold_lease` lets one of several engines act.

The database itself deduplicates: a partial unique index allows one ``firing`` row per
alert key, so two engines (a primary and a standby) that both see a crowd insert one row,
and only the engine whose insert went through notifies.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from crowdwatch.analytics.actions import ENGINE, record_event
from crowdwatch.contracts.errors import StorageError
from crowdwatch.contracts.messages import AlertMessage
from crowdwatch.contracts.notification import AlertPublication, Notification, NotificationEvent
from crowdwatch.storage.db import transaction
from crowdwatch.storage.queries import ALERT_COLUMNS, AlertRow, alert_from_row

# --- The engine's durable state (migration 4) ------------------------------------------


@dataclass(frozen=True, slots=True)
class ActiveAlert:
    """A firing alert with the engine's bookkeeping."""

    row: AlertRow
    clearing_since: datetime | None
    notified_at: datetime | None
    """when people were first told (``None`` while silenced, muted or inhibited)"""
    escalation_notified: int
    """the escalation level whose contacts have been notified"""


@dataclass(frozen=True, slots=True)
class NewAlert:
    """What the engine records when an alert starts firing."""

    message: AlertMessage
    camera_id: str
    department: str
    group_key: str


@dataclass(frozen=True, slots=True)
class NotificationDraft:
    """A notification to write (state ``queued``) and then deliver."""

    channel_id: str
    channel_type: str
    event: NotificationEvent
    level: int
    group_key: str | None
    alert_keys: tuple[str, ...]
    """resolved to alert ids inside the transaction"""
    payload: Notification | AlertPublication
    """a notification for a configured channel; the alert message for MQTT"""


def active_alert_states(conn: psycopg.Connection) -> list[ActiveAlert]:
    """Every firing alert with its clearing start, notification and escalation state.

    Raises:
        StorageError: the database failed.
    """
    try:
        rows = conn.execute(
            f"SELECT {ALERT_COLUMNS}, clearing_since, notified_at, escalation_notified "
            "FROM alerts WHERE state = 'firing' ORDER BY started_at, id"
        ).fetchall()
    except psycopg.Error as exc:
        raise StorageError(f"cannot read firing alerts: {exc}") from exc
    n = len(ALERT_COLUMNS.split(","))
    return [ActiveAlert(alert_from_row(r[:n]), r[n], r[n + 1], int(r[n + 2])) for r in rows]


def pending_timers(conn: psycopg.Connection) -> dict[str, datetime]:
    """Keys in their pending period, with the instant each crossed ``fire_at``.

    Raises:
        StorageError: the database failed.
    """
    try:
        rows = conn.execute("SELECT alert_key, pending_since FROM alert_pending").fetchall()
    except psycopg.Error as exc:
        raise StorageError(f"cannot read pending alerts: {exc}") from exc
    return {r[0]: r[1] for r in rows}


def record_batch(
    conn: psycopg.Connection,
    fired: list[NewAlert],
    resolved: list[AlertMessage],
    notified: set[str],
    suppressed: dict[str, str],
    drafts: list[NotificationDraft],
    pending: dict[str, datetime | None],
    clearing: dict[str, datetime | None],
) -> tuple[list[AlertRow], list[AlertRow], list[tuple[int, NotificationDraft, tuple[int, ...]]]]:
    """Record one evaluation's changes in one transaction.

    Args:
        conn: an open connection.
        fired: alerts that start firing (inserted unless the key is already firing).
        resolved: resolve messages (the firing row of each key is closed).
        notified: keys of fired alerts whose people notification goes out now.
        suppressed: key -> reason, for fired alerts held back (silence, mute, inhibition).
        drafts: notifications to queue; each names its alerts by key.
        pending: key -> ``pending_since``, or ``None`` when the pending period ended.
        clearing: key -> ``clearing_since`` of a firing alert (keep-firing-for).

    Returns:
        (inserted rows, resolved rows, queued notifications as (id, draft, alert ids)).
        A fired key already firing in the database is left out of the first list, and
        its notifications are not queued (another engine announced it).

    Raises:
        StorageError: the database failed; nothing was recorded.
    """
    inserted: list[AlertRow] = []
    closed: list[AlertRow] = []
    queued: list[tuple[int, NotificationDraft, tuple[int, ...]]] = []
    ids: dict[str, int] = {}
    with transaction(conn) as cur:
        for new in fired:
            m = new.message
            cur.execute(
                "INSERT INTO alerts (alert_key, site_id, zone_id, rule_id, severity, state, "
                "value, threshold, started_at, summary_zh, summary_en, camera_id, department, "
                "group_key, notified_at) VALUES (%s, %s, %s, %s, %s, 'firing', %s, %s, %s, %s, "
                "%s, %s, %s, %s, %s) ON CONFLICT (alert_key) WHERE state = 'firing' DO NOTHING "
                f"RETURNING {ALERT_COLUMNS}",
                (
                    m.alert_key,
                    m.site_id,
                    m.zone_id,
                    m.rule_id,
                    m.severity,
                    m.value,
                    m.threshold,
                    m.ts,
                    m.summary_zh,
                    m.summary_en,
                    new.camera_id,
                    new.department,
                    new.group_key,
                    m.ts if m.alert_key in notified else None,
                ),
            )
            row = cur.fetchone()
            if row is None:
                continue
            alert = alert_from_row(row)
            inserted.append(alert)
            ids[alert.alert_key] = alert.id
            record_event(cur, alert.id, m.ts, "fired", ENGINE, m.summary_en)
            if m.alert_key in suppressed:
                record_event(cur, alert.id, m.ts, "suppressed", ENGINE, suppressed[m.alert_key])
            cur.execute("DELETE FROM alert_pending WHERE alert_key = %s", (m.alert_key,))
        for m in resolved:
            cur.execute(
                "UPDATE alerts SET state = 'resolved', resolved_at = %s, resolve_value = %s, "
                "clearing_since = NULL, updated_at = now() "
                f"WHERE alert_key = %s AND state = 'firing' RETURNING {ALERT_COLUMNS}",
                (m.ts, m.value, m.alert_key),
            )
            row = cur.fetchone()
            if row is None:
                continue
            alert = alert_from_row(row)
            closed.append(alert)
            ids[alert.alert_key] = alert.id
            record_event(cur, alert.id, m.ts, "resolved", ENGINE, m.summary_en)
        for key, since in pending.items():
            if since is None:
                cur.execute("DELETE FROM alert_pending WHERE alert_key = %s", (key,))
                continue
            site_id, zone_part, rule_id = key.split("/")
            cur.execute(
                "INSERT INTO alert_pending (alert_key, site_id, zone_id, rule_id, pending_since)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (alert_key) DO UPDATE"
                " SET pending_since = EXCLUDED.pending_since, updated_at = now()",
                (key, site_id, None if zone_part.startswith("cam:") else zone_part, rule_id, since),
            )
        for key, since in clearing.items():
            cur.execute(
                "UPDATE alerts SET clearing_since = %s WHERE alert_key = %s AND state = 'firing'",
                (since, key),
            )
        for draft in drafts:
            alert_ids = tuple(ids[k] for k in draft.alert_keys if k in ids)
            if not alert_ids:
                continue
            queued.append((insert_notification(cur, draft, alert_ids), draft, alert_ids))
    return inserted, closed, queued


def insert_notification(
    cur: psycopg.Cursor[Any], draft: NotificationDraft, alert_ids: tuple[int, ...]
) -> int:
    """Write one ``queued`` notification row inside the caller's transaction; its id."""
    cur.execute(
        "INSERT INTO notifications (alert_id, alert_ids, event, level, channel_id, "
        "channel_type, group_key, payload) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (
            alert_ids[0],
            list(alert_ids),
            draft.event.value,
            draft.level,
            draft.channel_id,
            draft.channel_type,
            draft.group_key,
            Jsonb(draft.payload.to_json()),
        ),
    )
    row = cur.fetchone()
    assert row is not None
    return int(row[0])


def queue_followups(
    conn: psycopg.Connection,
    drafts: list[tuple[NotificationDraft, tuple[int, ...]]],
    notified: list[tuple[int, datetime]],
    escalated: list[int],
    escalation_notified: dict[int, int],
    at: datetime,
) -> list[tuple[int, NotificationDraft, tuple[int, ...]]]:
    """Record the engine's follow-ups of firing alerts in one transaction.

    Args:
        conn: an open connection.
        drafts: notifications with their alert ids.
        notified: (alert id, time) of held-back alerts now told to people.
        escalated: alerts the engine escalates now (not acknowledged in time).
        escalation_notified: alert id -> level whose contacts are now notified.
        at: the evaluation time.

    Returns:
        The queued notifications as (id, draft, alert ids).

    Raises:
        StorageError: the database failed; nothing was recorded.
    """
    from crowdwatch.analytics.actions import escalate_locked

    queued = []
    with transaction(conn) as cur:
        for alert_id, when in notified:
            cur.execute(
                "UPDATE alerts SET notified_at = %s WHERE id = %s AND notified_at IS NULL",
                (when, alert_id),
            )
            record_event(cur, alert_id, when, "notified", ENGINE, "no longer held back")
        for alert_id in escalated:
            cur.execute(
                "SELECT 1 FROM alerts WHERE id = %s AND state = 'firing' "
                "AND acknowledged_at IS NULL FOR UPDATE",
                (alert_id,),
            )
            if cur.fetchone() is not None:
                escalate_locked(cur, alert_id, at, ENGINE, "not acknowledged in time")
        for alert_id, level in escalation_notified.items():
            cur.execute(
                "UPDATE alerts SET escalation_notified = greatest(escalation_notified, %s) "
                "WHERE id = %s",
                (level, alert_id),
            )
        for draft, alert_ids in drafts:
            queued.append((insert_notification(cur, draft, alert_ids), draft, alert_ids))
    return queued


LEASE_NAME = "alerts"


def hold_lease(conn: psycopg.Connection, holder: str, lease_s: float) -> bool:
    """Take or renew the engines' lease (database time); True when ``holder`` has it.

    The lease is free when nobody has it or its holder let it expire (died, or stopped
    renewing): exactly one engine holds it at a time, and only the holder evaluates and
    notifies.

    Raises:
        StorageError: the database failed.
    """
    with transaction(conn) as cur:
        cur.execute(
            "INSERT INTO alert_engine_lease (name, holder, expires_at, renewed_at) "
            "VALUES (%(name)s, %(holder)s, now() + make_interval(secs => %(ttl)s), now()) "
            "ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, "
            "expires_at = EXCLUDED.expires_at, renewed_at = now() "
            "WHERE alert_engine_lease.holder = EXCLUDED.holder "
            "OR alert_engine_lease.expires_at < now() RETURNING holder",
            {"name": LEASE_NAME, "holder": holder, "ttl": lease_s},
        )
        return cur.fetchone() is not None


def release_lease(conn: psycopg.Connection, holder: str) -> None:
    """Let the lease go at once (a clean stop), so a standby takes over without waiting."""
    with transaction(conn) as cur:
        cur.execute(
            "UPDATE alert_engine_lease SET expires_at = now() WHERE name = %s AND holder = %s",
            (LEASE_NAME, holder),
        )
