"""Silences: a person mutes the notifications of matching alerts for a while.

A silence matches on site, zone and rule (``None`` matches any), like an Alertmanager
silence with equality matchers.  A silenced alert is still evaluated and recorded (the
page shows it); only its notifications are held back.  When the silence ends and the alert
is still firing, the engine sends the notification then, so nothing is lost by silencing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from crowdwatch.contracts.errors import StorageError
from crowdwatch.storage.db import transaction

_COLUMNS = "id, site_id, zone_id, rule_id, starts_at, ends_at, created_by, comment"


@dataclass(frozen=True, slots=True)
class Silence:
    """One silence (a row of ``alert_silences``)."""

    id: int
    site_id: str | None
    zone_id: str | None
    rule_id: str | None
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str

    def matches(self, site_id: str, zone_id: str | None, rule_id: str, at: datetime) -> bool:
        """Whether this silence mutes the alert ``site/zone/rule`` at ``at``."""
        return (
            self.starts_at <= at < self.ends_at
            and self.site_id in (None, site_id)
            and self.zone_id in (None, zone_id)
            and self.rule_id in (None, rule_id)
        )


def _silence(row: Sequence[Any]) -> Silence:
    return Silence(int(row[0]), row[1], row[2], row[3], row[4], row[5], str(row[6]), str(row[7]))


def add_silence(
    conn: psycopg.Connection,
    who: str,
    ends_at: datetime,
    *,
    site_id: str | None = None,
    zone_id: str | None = None,
    rule_id: str | None = None,
    starts_at: datetime | None = None,
    comment: str = "",
) -> Silence:
    """Silence matching alerts from ``starts_at`` (default now) until ``ends_at``.

    Args:
        conn: an open connection.
        who: the person silencing (non-empty).
        ends_at: end of the silence (after ``starts_at``).
        site_id: only this site (default any).
        zone_id: only this zone (default any).
        rule_id: only this rule (default any).
        starts_at: start (default now).
        comment: why ("road works, stop closed").

    Returns:
        The new silence.

    Raises:
        ValueError: ``who`` is empty or the silence ends before it starts.
        StorageError: the database failed.
    """
    if not who.strip():
        raise ValueError("who must name the person silencing, got an empty string")
    starts_at = starts_at or datetime.now(UTC)
    if ends_at <= starts_at:
        raise ValueError(f"a silence must end after it starts ({starts_at} .. {ends_at})")
    with transaction(conn) as cur:
        cur.execute(
            "INSERT INTO alert_silences (site_id, zone_id, rule_id, starts_at, ends_at, "
            f"created_by, comment) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
            (site_id, zone_id, rule_id, starts_at, ends_at, who.strip(), comment),
        )
        row = cur.fetchone()
    assert row is not None
    return _silence(row)


def expire_silence(conn: psycopg.Connection, silence_id: int, at: datetime | None = None) -> bool:
    """End a silence now (or at ``at``).

    Returns:
        True when a running or future silence was ended.

    Raises:
        StorageError: the database failed.
    """
    at = at or datetime.now(UTC)
    with transaction(conn) as cur:
        cur.execute(
            "UPDATE alert_silences SET ends_at = greatest(starts_at + interval '1 microsecond', %s)"
            " WHERE id = %s AND ends_at > %s",
            (at, silence_id, at),
        )
        return cur.rowcount == 1


def active_silences(conn: psycopg.Connection, at: datetime) -> list[Silence]:
    """Silences running at ``at``.

    Raises:
        StorageError: the database failed.
    """
    try:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM alert_silences WHERE starts_at <= %s AND ends_at > %s "
            "ORDER BY id",
            (at, at),
        ).fetchall()
    except psycopg.Error as exc:
        raise StorageError(f"cannot read silences: {exc}") from exc
    return [_silence(r) for r in rows]
