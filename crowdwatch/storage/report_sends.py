"""The days the daily report went out: what the report scheduler remembers across restarts.

One row per local day (table ``report_sends``, migration 11).  A scheduler *claims* a day
before it draws and sends the poster and marks it *sent* afterwards, so that:

* a restarted scheduler reads the newest sent day and neither sends it again nor skips the
  days between it and today (:func:`crowdwatch.reports.sender.due_days`);
* a second scheduler (a standby) does not send a day the first is sending: the claim is an
  ``INSERT ... ON CONFLICT`` that only succeeds on a free day, on the holder's own claim, or on
  a claim older than the lease (its holder died while sending; the day is sent again then —
  at least once, as the alert notifications are).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta

import psycopg
from psycopg.types.json import Jsonb

from crowdwatch.contracts.errors import StorageError

CLAIM_SQL = """
INSERT INTO report_sends (day, state, holder, claimed_at)
VALUES (%(day)s, 'sending', %(holder)s, %(now)s)
ON CONFLICT (day) DO UPDATE SET holder = EXCLUDED.holder, claimed_at = EXCLUDED.claimed_at
WHERE report_sends.state = 'sending'
  AND (report_sends.holder = EXCLUDED.holder OR report_sends.claimed_at < %(stale_before)s)
RETURNING day
"""


def last_sent_day(conn: psycopg.Connection) -> date | None:
    """The newest day whose report was sent, or None before the first.

    Raises:
        StorageError: the query failed or the database is away.
    """
    try:
        row = conn.execute("SELECT max(day) FROM report_sends WHERE state = 'sent'").fetchone()
    except psycopg.Error as exc:
        raise StorageError(f"cannot read the sent reports: {exc}") from exc
    return None if row is None else row[0]


def claim_day(
    conn: psycopg.Connection, day: date, holder: str, now: datetime, lease: timedelta
) -> bool:
    """Take ``day`` for sending; False when it was sent or another holder is sending it.

    Raises:
        StorageError: the statement failed or the database is away.
    """
    params = {"day": day, "holder": holder, "now": now, "stale_before": now - lease}
    try:
        return conn.execute(CLAIM_SQL, params).fetchone() is not None
    except psycopg.Error as exc:
        raise StorageError(f"cannot claim the report of {day}: {exc}") from exc


def mark_sent(
    conn: psycopg.Connection,
    day: date,
    holder: str,
    now: datetime,
    results: Mapping[str, str | None],
) -> None:
    """Record ``day`` as sent, with each channel's outcome (None: delivered, else the error).

    Raises:
        StorageError: the statement failed or the database is away.
    """
    try:
        conn.execute(
            "UPDATE report_sends SET state = 'sent', sent_at = %s, results = %s"
            " WHERE day = %s AND holder = %s",
            (now, Jsonb(dict(results)), day, holder),
        )
    except psycopg.Error as exc:
        raise StorageError(f"cannot record the report of {day} as sent: {exc}") from exc


def release_day(conn: psycopg.Connection, day: date, holder: str) -> None:
    """Give back an unsent claim (the poster could not be drawn), for a later try.

    Raises:
        StorageError: the statement failed or the database is away.
    """
    try:
        conn.execute(
            "DELETE FROM report_sends WHERE day = %s AND holder = %s AND state = 'sending'",
            (day, holder),
        )
    except psycopg.Error as exc:
        raise StorageError(f"cannot release the report of {day}: {exc}") from exc
