"""Dispatch advice per bus-stop alert, what the dispatcher did, and whether it worked.

The engine keeps each firing bus-stop alert's advice up to date in ``dispatch_advice``
(:func:`store_advice`).  The dispatcher page records a decision (:func:`decide`): "dispatched
N buses on route R" or "declined, because ...", with the advice shown at that moment, in one
transaction that also appends the event to ``alert_events`` (the audit trail) and
acknowledges the alert if nobody had (someone is on it: timed escalation stops).

The outcome is the alert's own resolve: when the stop fell back under its clear threshold.
:func:`dispatch_records` reads it by a join, so time to clear = ``resolved_at`` minus the
decision's ``at``.

Example:
    >>> decide(conn, 42, "Li Wei", Decision.DISPATCHED, route="K1", buses=2,
    ...        routes=("K1", "K3"))  # doctest: +SKIP
    >>> dispatch_records(conn, [42])[42].decisions[0].time_to_clear_s  # doctest: +SKIP
    720.0
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, assert_never

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from crowdwatch.analytics.actions import record_event
from crowdwatch.contracts.errors import AlertNotActive, AlertNotFound, StorageError
from crowdwatch.contracts.notification import DispatchAdvice
from crowdwatch.storage.db import transaction

MAX_BUSES = 20
"""The most buses one decision may send (the plan's own cap)."""


_ASCII_SPACE = " \t\n\r\f\v"
"""What a reason may not consist of only (the API's schema says the same)."""


class RouteNotAtStop(ValueError):  # noqa: N818 (a ValueError: the request names a wrong route)
    """The route named does not serve the alert's stop."""


class Decision(StrEnum):
    DISPATCHED = "dispatched"
    """buses were sent: ``route`` and ``buses`` say which and how many"""
    DECLINED = "declined"
    """nothing sent: ``reason`` says why (no bus free, the queue is leaving on foot, ...)"""


@dataclass(frozen=True, slots=True)
class DispatchDecision:
    """One row of ``dispatch_decisions`` with its outcome."""

    id: int
    alert_id: int
    at: datetime
    who: str
    action: Decision
    route: str | None
    buses: int | None
    reason: str
    recommended: DispatchAdvice | None
    """the advice on the dispatcher's page when they acted"""
    cleared_at: datetime | None
    """when the alert resolved (the stop fell back under its threshold); ``None``: not yet"""

    @property
    def time_to_clear_s(self) -> float | None:
        """Seconds from the decision to the stop clearing; ``None`` until it clears."""
        if self.cleared_at is None:
            return None
        return max(0.0, (self.cleared_at - self.at).total_seconds())


@dataclass(frozen=True, slots=True)
class DispatchRecord:
    """Everything dispatch-related of one alert."""

    alert_id: int
    advice: DispatchAdvice | None
    """the newest advice (``None``: not a bus stop with routes, or no usable count)"""
    advice_at: datetime | None
    decisions: tuple[DispatchDecision, ...]


def store_advice(
    conn: psycopg.Connection,
    advice: Sequence[tuple[int, DispatchAdvice | None]],
    at: datetime,
) -> None:
    """Record the newest advice of firing alerts (one row per alert, replaced).

    Args:
        conn: an open connection.
        advice: ``(alert_id, advice)``; ``None`` withdraws the alert's advice (its camera
            went stale or offline: the page must not show an old plan as the current one).
        at: when it was computed.

    Raises:
        StorageError: the database failed.
    """
    rows = [(i, Jsonb(a.model_dump(mode="json")), at) for i, a in advice if a is not None]
    withdrawn = [i for i, a in advice if a is None]
    if not rows and not withdrawn:
        return
    with transaction(conn) as cur:
        if rows:
            cur.executemany(
                "INSERT INTO dispatch_advice (alert_id, advice, updated_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (alert_id) DO UPDATE SET advice = EXCLUDED.advice, "
                "updated_at = EXCLUDED.updated_at",
                rows,
            )
        if withdrawn:
            cur.execute("DELETE FROM dispatch_advice WHERE alert_id = ANY(%s)", (withdrawn,))


def _check(
    action: Decision, route: str | None, buses: int | None, reason: str, routes: Collection[str]
) -> tuple[str | None, int | None, str]:
    """The decision's fields as stored; a wrong one is a ValueError naming the fix."""
    reason = reason.strip(_ASCII_SPACE)
    match action:
        case Decision.DISPATCHED:
            if route is None or route not in routes:
                served = ", ".join(sorted(routes)) or "none configured"
                raise RouteNotAtStop(
                    f"route {route!r} does not serve this stop; expected one of: {served}"
                )
            if buses is None or not 1 <= buses <= MAX_BUSES:
                raise ValueError(f"buses must be 1 to {MAX_BUSES}, got {buses}")
            return route, buses, reason
        case Decision.DECLINED:
            if not reason:
                raise ValueError("a declined recommendation needs a reason (say why no bus)")
            return None, None, reason
        case _:
            assert_never(action)


def decide(
    conn: psycopg.Connection,
    alert_id: int,
    who: str,
    action: Decision,
    *,
    routes: Collection[str],
    route: str | None = None,
    buses: int | None = None,
    reason: str = "",
    at: datetime | None = None,
) -> DispatchDecision:
    """Record what the dispatcher did about a firing alert's recommendation.

    Args:
        conn: an open connection.
        alert_id: ``alerts.id`` (firing).
        who: the dispatcher (non-empty).
        action: dispatched or declined.
        routes: the routes serving the alert's stop (a dispatch names one of them).
        route: the route buses were sent on (dispatched).
        buses: how many (dispatched, 1 to :data:`MAX_BUSES`).
        reason: why (declined: required; dispatched: an optional note).
        at: when (UTC-aware); default now.

    Returns:
        The recorded decision (not cleared yet).

    Raises:
        RouteNotAtStop: ``route`` is not one of ``routes``.
        ValueError: another wrong field (the message says which and the fix).
        AlertNotFound: no alert has this id.
        AlertNotActive: the alert is resolved.
        StorageError: the database failed.
    """
    who = who.strip()
    if not who:
        raise ValueError("who must name the person acting, got an empty string")
    route, buses, reason = _check(action, route, buses, reason, routes)
    at = at or datetime.now(UTC)
    with transaction(conn) as cur:
        cur.execute(
            "SELECT state, acknowledged_at FROM alerts WHERE id = %s FOR UPDATE", (alert_id,)
        )
        found = cur.fetchone()
        if found is None:
            raise AlertNotFound(f"no alert with id {alert_id}")
        if found[0] != "firing":
            raise AlertNotActive(f"alert {alert_id} is {found[0]}, not firing")
        cur.execute("SELECT advice FROM dispatch_advice WHERE alert_id = %s", (alert_id,))
        shown = cur.fetchone()
        cur.execute(
            "INSERT INTO dispatch_decisions (alert_id, at, who, action, route, buses, reason, "
            "recommended) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (
                alert_id,
                at,
                who,
                action.value,
                route,
                buses,
                reason,
                Jsonb(shown[0]) if shown else None,
            ),
        )
        inserted = cur.fetchone()
        assert inserted is not None and isinstance(inserted[0], int)
        note = f"{buses} × {route}" if action is Decision.DISPATCHED else ""
        note = f"{note}: {reason}" if note and reason else note or reason
        record_event(cur, alert_id, at, action.value, who, note)
        if found[1] is None:
            cur.execute(
                "UPDATE alerts SET acknowledged_at = %s, acknowledged_by = %s, ack_note = %s, "
                "updated_at = now() WHERE id = %s",
                (at, who, note, alert_id),
            )
            record_event(cur, alert_id, at, "acknowledged", who, note)
    recommended = DispatchAdvice.model_validate(shown[0]) if shown else None
    return DispatchDecision(
        inserted[0], alert_id, at, who, action, route, buses, reason, recommended, None
    )


def _advice(data: Any) -> DispatchAdvice | None:
    return None if data is None else DispatchAdvice.model_validate(data)


def dispatch_records(
    conn: psycopg.Connection, alert_ids: Collection[int]
) -> dict[int, DispatchRecord]:
    """The advice and decisions (with outcome) of these alerts; alerts with neither are left out.

    Raises:
        StorageError: the database failed.
    """
    ids = list(alert_ids)
    if not ids:
        return {}
    try:
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                "SELECT alert_id, advice, updated_at FROM dispatch_advice WHERE alert_id = ANY(%s)",
                (ids,),
            )
            advice = {r["alert_id"]: r for r in cur.fetchall()}
            cur.execute(
                "SELECT d.id, d.alert_id, d.at, d.who, d.action, d.route, d.buses, d.reason, "
                "d.recommended, a.resolved_at FROM dispatch_decisions d "
                "JOIN alerts a ON a.id = d.alert_id WHERE d.alert_id = ANY(%s) "
                "ORDER BY d.alert_id, d.at, d.id",
                (ids,),
            )
            decided = cur.fetchall()
    except psycopg.Error as exc:
        raise StorageError(f"cannot read dispatch decisions: {exc}") from exc
    decisions: dict[int, list[DispatchDecision]] = {}
    for r in decided:
        decisions.setdefault(r["alert_id"], []).append(
            DispatchDecision(
                id=r["id"],
                alert_id=r["alert_id"],
                at=r["at"],
                who=r["who"],
                action=Decision(r["action"]),
                route=r["route"],
                buses=r["buses"],
                reason=r["reason"],
                recommended=_advice(r["recommended"]),
                cleared_at=r["resolved_at"],
            )
        )
    return {
        alert_id: DispatchRecord(
            alert_id,
            _advice(advice[alert_id]["advice"]) if alert_id in advice else None,
            advice[alert_id]["updated_at"] if alert_id in advice else None,
            tuple(decisions.get(alert_id, [])),
        )
        for alert_id in ids
        if alert_id in advice or alert_id in decisions
    }


def dispatched_since(
    conn: psycopg.Connection, since: datetime
) -> list[tuple[str, DispatchDecision]]:
    """Buses sent since ``since``, each with its alert's site (the GTFS-realtime added trips).

    Raises:
        StorageError: the database failed.
    """
    try:
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                "SELECT d.id, d.alert_id, d.at, d.who, d.route, d.buses, d.reason, "
                "d.recommended, a.resolved_at, a.site_id FROM dispatch_decisions d "
                "JOIN alerts a ON a.id = d.alert_id "
                "WHERE d.action = 'dispatched' AND d.at >= %s ORDER BY d.at, d.id",
                (since,),
            )
            rows = cur.fetchall()
    except psycopg.Error as exc:
        raise StorageError(f"cannot read dispatched buses: {exc}") from exc
    return [
        (
            r["site_id"],
            DispatchDecision(
                id=r["id"],
                alert_id=r["alert_id"],
                at=r["at"],
                who=r["who"],
                action=Decision.DISPATCHED,
                route=r["route"],
                buses=r["buses"],
                reason=r["reason"],
                recommended=_advice(r["recommended"]),
                cleared_at=r["resolved_at"],
            ),
        )
        for r in rows
    ]
