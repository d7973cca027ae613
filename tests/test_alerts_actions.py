"""Dispatcher actions on the real database: acknowledge, escalate, history, silences."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from db_rows import alert_message, insert_firing, resolve_firing
from factories import make_config

from crowdwatch.analytics.actions import acknowledge, alert_history, escalate, get_alert
from crowdwatch.analytics.silences import active_silences, add_silence, expire_silence
from crowdwatch.contracts.errors import AlertNotActive, AlertNotFound
from crowdwatch.storage.migrate import upgrade

T0 = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    upgrade(db_url, make_config())
    with psycopg.connect(db_url, autocommit=True) as connection:
        yield connection


def test_acknowledge_then_escalate_is_recorded_in_the_history(conn: psycopg.Connection) -> None:
    fired = insert_firing(conn, alert_message(ts=T0))
    assert fired is not None

    acked = acknowledge(conn, fired.id, "Li Wei", "bus 3 sent", at=T0 + timedelta(minutes=2))
    escalated = escalate(
        conn, fired.id, "Li Wei", "need a second bus", at=T0 + timedelta(minutes=5)
    )

    assert (acked.acknowledged_by, acked.ack_note) == ("Li Wei", "bus 3 sent")
    assert acked.acknowledged_at == T0 + timedelta(minutes=2)
    assert (escalated.escalation_level, escalated.escalated_at) == (1, T0 + timedelta(minutes=5))
    assert get_alert(conn, fired.id) == escalated
    history = alert_history(conn, fired.id)
    assert [(e.kind, e.who, e.note) for e in history] == [
        ("acknowledged", "Li Wei", "bus 3 sent"),
        ("escalated", "Li Wei", "need a second bus"),
    ]
    assert [e.at for e in history] == [T0 + timedelta(minutes=2), T0 + timedelta(minutes=5)]


@pytest.mark.parametrize("action", ["acknowledge", "escalate", "history"])
def test_unknown_alert_is_refused(conn: psycopg.Connection, action: str) -> None:
    with pytest.raises(AlertNotFound, match="no alert with id 999"):
        if action == "acknowledge":
            acknowledge(conn, 999, "Li Wei", "")
        elif action == "escalate":
            escalate(conn, 999, "Li Wei")
        else:
            alert_history(conn, 999)


@pytest.mark.parametrize("action", ["acknowledge", "escalate"])
def test_a_resolved_alert_cannot_be_acted_on(conn: psycopg.Connection, action: str) -> None:
    fired = insert_firing(conn, alert_message(ts=T0))
    assert fired is not None
    resolve_firing(conn, alert_message(state="resolved", ts=T0 + timedelta(minutes=1)))

    with pytest.raises(AlertNotActive, match=f"alert {fired.id} is resolved"):
        if action == "acknowledge":
            acknowledge(conn, fired.id, "Li Wei", "late")
        else:
            escalate(conn, fired.id, "Li Wei")
    assert alert_history(conn, fired.id) == []


def test_acknowledge_needs_a_name(conn: psycopg.Connection) -> None:
    fired = insert_firing(conn, alert_message(ts=T0))
    assert fired is not None
    with pytest.raises(ValueError, match="who must name"):
        acknowledge(conn, fired.id, "  ", "note")


def test_silences_match_and_expire(conn: psycopg.Connection) -> None:
    silence = add_silence(
        conn, "Chen", T0 + timedelta(hours=1), site_id="stop-a", starts_at=T0, comment="works"
    )

    assert silence.matches("stop-a", "platform", "crowded", T0 + timedelta(minutes=5))
    assert not silence.matches("stop-b", "platform", "crowded", T0 + timedelta(minutes=5))
    assert not silence.matches("stop-a", "platform", "crowded", T0 + timedelta(hours=1))
    assert active_silences(conn, T0 + timedelta(minutes=5)) == [silence]

    assert expire_silence(conn, silence.id, T0 + timedelta(minutes=10))
    assert active_silences(conn, T0 + timedelta(minutes=11)) == []
    with pytest.raises(ValueError, match="must end after it starts"):
        add_silence(conn, "Chen", T0, starts_at=T0)
