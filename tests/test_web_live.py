"""The live state and its Server-Sent Events stream, trends, series and bad input.

Served for real (``serve`` from test_web) over the real PostgreSQL; the stream is read with
httpx as a browser's EventSource would (gzip included).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from db_rows import alert_message, insert_firing, put_zone
from factories import config_dict, make_config, site_dict
from raw_rows import ZoneRow, insert_zones
from web_server import DEAD_DB, Serve, events, web_config

from crowdwatch.contracts.errors import StorageError
from crowdwatch.dashboards.live import LiveHub
from crowdwatch.dashboards.snapshot import Snapshot
from crowdwatch.dashboards.trends import Trend, trend
from crowdwatch.storage.migrate import upgrade
from crowdwatch.storage.rollups import refresh_rollups


@pytest.mark.parametrize(
    ("count", "earlier", "capacity", "expected"),
    [
        (60, 40.0, 100, Trend.UP),
        (40, 60.0, 100, Trend.DOWN),
        (52, 50.0, 100, Trend.STEADY),  # under 5 % of capacity
        (12, 10.0, 20, Trend.UP),  # at least 2 people on a small stop
        (11, 10.0, 20, Trend.STEADY),
        (1100, 1000.0, 2000, Trend.UP),
        (1090, 1000.0, 2000, Trend.STEADY),
        (None, 10.0, 100, None),
        (10, None, 100, None),
    ],
)
def test_trend(count: int | None, earlier: float | None, capacity: int, expected: Trend) -> None:
    assert trend(count, earlier, capacity) == expected


@pytest.fixture
def live(db_url: str, serve: Serve) -> Iterator[tuple[httpx.Client, psycopg.Connection]]:
    config = web_config(db_url)
    upgrade(db_url, config)
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield serve(config), conn


def test_the_stream_sends_the_full_state_then_changes_then_pings(
    live: tuple[httpx.Client, psycopg.Connection],
) -> None:
    http, conn = live
    now = datetime.now(UTC)
    # Eight minutes ago the stop had 10 people; now it has 30: the arrow points up.
    insert_zones(conn, [ZoneRow(now - timedelta(minutes=8), "stop-a", "platform", 10)])
    refresh_rollups(conn)
    put_zone(conn, "stop-a", "platform", 30, now)
    put_zone(conn, "beach-a", "north", 70, now)
    insert_firing(conn, alert_message(ts=now))

    with http.stream("GET", "/api/stream") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["content-encoding"] == "gzip"
        stream = events(response)
        name, first = next(stream)
        assert name == "state" and first["database"]["ok"] is True
        sites = {s["id"]: s for s in first["sites"]}
        assert (sites["stop-a"]["count"], sites["stop-a"]["trend"]) == (30, "up")
        assert sites["beach-a"]["zones"][0]["count"] == 70
        assert sites["beach-a"]["count"] == 70 and sites["beach-a"]["status"] == "no_data"
        assert [a["alert_key"] for a in first["alerts"]] == ["stop-a/platform/crowded"]

        put_zone(conn, "stop-a", "platform", 31, datetime.now(UTC))
        name, second = next(stream)
        assert name == "state"
        assert next(s for s in second["sites"] if s["id"] == "stop-a")["count"] == 31

        name, ping = next(stream)  # nothing changes for heartbeat_s
        assert name == "ping" and ping["ok"] is True
        assert ping["as_of"] >= second["database"]["as_of"]  # figures confirmed, unchanged


def test_the_stream_says_the_database_is_down_and_keeps_the_last_figures(
    pg_server: Any,
    serve: Serve,
) -> None:
    url = pg_server.create_database()
    try:
        config = web_config(url)
        upgrade(url, config)
        with psycopg.connect(url, autocommit=True) as conn:
            put_zone(conn, "stop-a", "platform", 17, datetime.now(UTC))
        http = serve(config)
        with http.stream("GET", "/api/stream") as response:
            stream = events(response)
            _, before = next(stream)
            pg_server.drop_database(url)
            # Noted once the drop is done: a read that starts while it runs is still a good one.
            dropped_at = datetime.now(UTC)
            _, after = next(stream)
        state = http.get("/api/state")
    finally:
        pg_server.drop_database(url)

    assert before["database"]["ok"] is True
    assert after["database"]["ok"] is False and after["database"]["detail"]  # says why
    # The last good read: the one before, or one that came between it and the drop.
    last_good = datetime.fromisoformat(after["database"]["as_of"])
    assert datetime.fromisoformat(before["database"]["as_of"]) <= last_good <= dropped_at
    assert next(s for s in after["sites"] if s["id"] == "stop-a")["count"] == 17
    assert state.status_code == 503 and state.json()["database"]["ok"] is False


def test_state_before_any_good_read_has_no_sites(serve: Serve) -> None:
    response = serve(web_config(DEAD_DB)).get("/api/state")

    body = response.json()
    assert response.status_code == 503
    assert (body["sites"], body["database"]["ok"], body["database"]["as_of"]) == ([], False, None)


def test_series_of_a_range_without_data_is_empty_not_zeros(
    live: tuple[httpx.Client, psycopg.Connection],
) -> None:
    http, conn = live
    now = datetime.now(UTC)
    insert_zones(conn, [ZoneRow(now - timedelta(minutes=3), "beach-a", "north", 44)])

    empty = http.get("/api/sites/stop-a/series", params={"minutes": 30}).json()
    zone = http.get("/api/sites/beach-a/series", params={"minutes": 30, "zone": "north"}).json()

    assert (empty["resolution"], empty["points"]) == ("1m", [])
    assert zone["resolution"] == "raw" and [p["count"] for p in zone["points"]] == [44]


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("/api/sites/stop-nowhere", 404, "unknown site 'stop-nowhere'"),
        ("/api/sites/stop-nowhere/series", 404, "unknown site 'stop-nowhere'"),
        ("/api/sites/beach-a/series?zone=west", 404, "unknown zone 'west' of site 'beach-a'"),
        ("/api/sites/beach-a/series?minutes=0", 422, None),
        ("/api/sites/beach-a/series?minutes=lots", 422, None),
        ("/api/dispatch/history?hours=99999", 422, None),
        ("/api/dispatch/history", 401, "login required"),
        ("/api/dispatch/alerts", 401, "login required"),
    ],
)
def test_bad_urls_are_json_4xx_before_the_database_is_asked(
    serve: Serve,
    path: str,
    status: int,
    error: str | None,
) -> None:
    http = serve(web_config(DEAD_DB))  # the database is down: none of these may need it

    response = http.get(path)

    assert response.status_code == status
    body = response.json()
    if error is not None:
        assert error in body["error"]


def test_a_state_is_encoded_once_for_every_listener_and_request() -> None:
    # At 20,000 zones a state is megabytes of JSON: encoding it again for each listener and
    # each request would cost every change listeners x 0.3 s of the event loop.
    def unreachable(now: datetime) -> Snapshot:
        raise StorageError("database away (test)")

    async def scenario() -> tuple[list[bytes], list[bytes], list[bytes]]:
        hub = LiveHub(make_config(config_dict(site_dict())), unreachable, 60.0, 60.0)
        streams = [hub.events(), hub.events()]
        frames = [[await anext(s) for _ in range(2)] for s in streams]
        bodies = [(await hub.current_body())[1] for _ in range(2)]
        for s in streams:
            await s.aclose()
        return frames[0], frames[1], bodies

    first, second, bodies = asyncio.run(scenario())
    assert first[1].startswith(b"event: state\ndata: {") and first[1] == second[1]
    assert first[1] is second[1], "each listener got its own encoding of the same state"
    assert bodies[0] is bodies[1], "each request rendered the same state again"
    assert json.loads(bodies[0])["database"]["ok"] is False
