"""Recording what a dispatcher did about a recommendation, on the real database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from db_rows import alert_message, insert_firing

from crowdwatch.analytics.dispatch_actions import Decision, decide, dispatch_records
from crowdwatch.contracts.errors import AlertNotActive, AlertNotFound
from crowdwatch.storage.migrate import upgrade

T0 = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
ROUTES = ("K1", "K3")


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    upgrade(db_url)
    with psycopg.connect(db_url, autocommit=True) as c:
        yield c


def firing(conn: psycopg.Connection) -> int:
    row = insert_firing(conn, alert_message(ts=T0))
    assert row is not None
    return row.id


@pytest.mark.parametrize(
    ("action", "fields", "error"),
    [
        (Decision.DISPATCHED, {"route": "K1", "buses": 2}, None),
        (
            Decision.DISPATCHED,
            {"route": "K9", "buses": 2},
            "route 'K9' does not serve this stop; expected one of: K1, K3",
        ),
        (Decision.DISPATCHED, {"route": "K1", "buses": 0}, "buses must be 1 to 20, got 0"),
        (Decision.DISPATCHED, {"route": "K1", "buses": 21}, "buses must be 1 to 20, got 21"),
        (Decision.DISPATCHED, {"route": None, "buses": 1}, "route None does not serve"),
        (Decision.DECLINED, {"reason": "no bus free"}, None),
        (Decision.DECLINED, {"reason": " \t\n"}, "a declined recommendation needs a reason"),
    ],
    ids=["dispatch", "unknown route", "no bus", "too many", "no route", "decline", "no reason"],
)
def test_a_decision_is_checked_before_anything_is_written(
    conn: psycopg.Connection, action: Decision, fields: dict[str, object], error: str | None
) -> None:
    alert_id = firing(conn)
    if error is None:
        decided = decide(conn, alert_id, "Li Wei", action, routes=ROUTES, at=T0, **fields)
        assert (decided.action, decided.recommended, decided.cleared_at) == (action, None, None)
        assert conn.execute("SELECT count(*) FROM dispatch_decisions").fetchone() == (1,)
        return
    with pytest.raises(ValueError, match=error.replace("(", r"\(")):
        decide(conn, alert_id, "Li Wei", action, routes=ROUTES, **fields)
    assert conn.execute("SELECT count(*) FROM dispatch_decisions").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM alert_events").fetchone() == (0,)


def test_outcome_is_the_alert_resolving_after_the_decision(conn: psycopg.Connection) -> None:
    alert_id = firing(conn)
    decide(
        conn,
        alert_id,
        "Li Wei",
        Decision.DECLINED,
        routes=ROUTES,
        reason="queue walking off",
        at=T0,
    )
    sent = decide(
        conn,
        alert_id,
        "Wang",
        Decision.DISPATCHED,
        routes=ROUTES,
        route="K3",
        buses=1,
        at=T0 + timedelta(minutes=3),
    )
    # The first decision acknowledged the alert; the second leaves that as it was.
    assert conn.execute("SELECT acknowledged_by, ack_note FROM alerts").fetchone() == (
        "Li Wei",
        "queue walking off",
    )
    assert sent.time_to_clear_s is None
    conn.execute(
        "UPDATE alerts SET state = 'resolved', resolved_at = %s WHERE id = %s",
        (T0 + timedelta(minutes=15), alert_id),
    )
    [declined, dispatched] = dispatch_records(conn, [alert_id])[alert_id].decisions
    assert (declined.who, declined.time_to_clear_s) == ("Li Wei", 15 * 60)
    assert (dispatched.route, dispatched.buses, dispatched.time_to_clear_s) == ("K3", 1, 12 * 60)
    # Nothing more can be decided on a cleared stop; nor on an alert that does not exist.
    with pytest.raises(AlertNotActive):
        decide(conn, alert_id, "Li Wei", Decision.DECLINED, routes=ROUTES, reason="late")
    with pytest.raises(AlertNotFound):
        decide(conn, alert_id + 1, "Li Wei", Decision.DECLINED, routes=ROUTES, reason="x")
    events = conn.execute("SELECT kind, who, note FROM alert_events ORDER BY id").fetchall()
    assert events == [
        ("declined", "Li Wei", "queue walking off"),
        ("acknowledged", "Li Wei", "queue walking off"),
        ("dispatched", "Wang", "1 × K3"),
    ]
