"""Read-side queries and alert rows, on the real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from db_rows import T0, alert_message, insert_firing, put_status, put_zone, resolve_firing
from factories import make_config

from crowdwatch.contracts.errors import StorageError
from crowdwatch.contracts.messages import CountMessage, CountMethod, ZoneCount
from crowdwatch.storage.migrate import upgrade
from crowdwatch.storage.queries import (
    AlertRow,
    CameraStatusRow,
    ZoneLatest,
    active_alerts,
    firing_alert,
    latest_camera_status,
    latest_zone_counts,
    recent_alerts,
)


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    upgrade(db_url, make_config())
    with psycopg.connect(db_url, autocommit=True) as connection:
        yield connection


def test_an_empty_database_has_no_rows(conn: psycopg.Connection) -> None:
    assert latest_zone_counts(conn) == []
    assert latest_camera_status(conn) == []
    assert active_alerts(conn) == []
    assert firing_alert(conn, "stop-a/platform/crowded") is None


def test_latest_zone_counts_are_typed_rows(conn: psycopg.Connection) -> None:
    put_zone(conn, "stop-b", "platform", 7, T0, method="dense")
    put_zone(conn, "stop-a", "platform", 3, T0 - timedelta(seconds=5))
    put_zone(conn, "stop-c", "platform", 4, T0, method="detect")

    rows = latest_zone_counts(conn)

    assert rows == [
        ZoneLatest("stop-a", "platform", "cam1", T0 - timedelta(seconds=5), 3, 5, 3.5),
        ZoneLatest("stop-b", "platform", "cam1", T0, 7, 9, 7.5, method=CountMethod.DENSE),
        ZoneLatest("stop-c", "platform", "cam1", T0, 4, 6, 4.5, method=CountMethod.DETECT),
    ]
    assert rows[0].ts.utcoffset() == timedelta(0)


def test_a_held_count_reads_back_with_its_flag_as_ingest_writes_it(
    conn: psycopg.Connection,
) -> None:
    flag = "implausible: 900 people on 40 m² is 22.5 per m², more than the 6 that can stand there"
    zone = ZoneCount(
        zone_id="platform",
        count=7,
        count_max=9,
        count_mean=7.5,
        method=CountMethod.DENSE,
        count_flag=flag,
        flagged_count=900,
    )
    message = CountMessage(
        site_id="stop-b", camera_id="cam1", ts=T0, interval_s=5.0, frames=50, zones=[zone]
    )
    put_zone(conn, "stop-b", "platform", 7, T0, "cam1", "dense", flag, 900)

    # The database's row and the alert engine's fast path (ZoneLatest.of) agree.
    fast = ZoneLatest.of(message, zone)
    assert (fast.count, fast.count_flag, fast.flagged_count) == (7, flag, 900)
    assert latest_zone_counts(conn) == [fast]


def test_latest_camera_status_is_typed_rows(conn: psycopg.Connection) -> None:
    put_status(conn, "stop-a", "cam1", "offline", T0)

    assert latest_camera_status(conn) == [
        CameraStatusRow("stop-a", "cam1", T0, "offline", 9.5, 40.0, 3, "test")
    ]


def test_one_firing_alert_per_key_then_resolve(conn: psycopg.Connection) -> None:
    first = insert_firing(conn, alert_message())
    duplicate = insert_firing(conn, alert_message(ts=T0 + timedelta(seconds=5)))

    assert isinstance(first, AlertRow)
    assert first.state == "firing" and first.started_at == T0 and first.resolved_at is None
    assert duplicate is None, "the unique index must refuse a second firing row for the key"
    assert firing_alert(conn, first.alert_key) == first
    assert active_alerts(conn) == [first]

    resolved = resolve_firing(conn, alert_message(state="resolved", ts=T0 + timedelta(minutes=3)))

    assert resolved is not None
    assert resolved.id == first.id
    assert resolved.state == "resolved"
    assert resolved.resolved_at == T0 + timedelta(minutes=3)
    assert active_alerts(conn) == []
    assert resolve_firing(conn, alert_message(state="resolved")) is None

    again = insert_firing(conn, alert_message(ts=T0 + timedelta(hours=1)))
    assert again is not None and again.id != first.id
    assert [a.id for a in recent_alerts(conn)] == [again.id, first.id]


def test_active_alerts_are_newest_first(conn: psycopg.Connection) -> None:
    older = insert_firing(conn, alert_message("stop-a/platform/crowded", ts=T0))
    newer = insert_firing(conn, alert_message("stop-b/platform/crowded", ts=T0 + timedelta(1)))

    assert active_alerts(conn) == [newer, older]


def test_a_closed_connection_is_a_storage_error(db_url: str) -> None:
    connection = psycopg.connect(db_url)
    connection.close()

    with pytest.raises(StorageError, match="database query failed"):
        latest_zone_counts(connection)
