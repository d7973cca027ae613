"""The web API and phone page: a real uvicorn (``run_web``) over the real PostgreSQL.

Starlette's TestClient warns (deprecated httpx use) and the suite turns warnings into errors,
so every test serves the app for real on a free port and talks to it with httpx.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from db_rows import alert_message, insert_firing, put_status, put_zone
from web_server import DEAD_DB, Serve, web_config

from crowdwatch.analytics.readings import ZoneReading, ZoneStatus, site_readings
from crowdwatch.contracts.errors import ConfigError
from crowdwatch.contracts.messages import (
    CountMessage,
    CountMethod,
    TopicKind,
    ZoneCount,
    camera_topic,
    decode_counts,
    encode,
)
from crowdwatch.contracts.site_kinds import KIND_ORDER
from crowdwatch.dashboards.web import run_web
from crowdwatch.ingest.validate import Accepted, Envelope
from crowdwatch.ingest.writer import BatchWriter
from crowdwatch.storage.migrate import upgrade

PHONE_PAGE = Path(__file__).resolve().parents[1] / "crowdwatch/dashboards/static/phone.html"
# Site aggregation (pure).

NOW = datetime(2026, 10, 1, 6, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zones", "status", "count"),
    [
        ([("ok", 10), ("ok", 20)], ZoneStatus.OK, 30),
        ([("ok", 10), ("stale", None)], ZoneStatus.STALE, 10),
        ([("ok", 10), ("offline", None)], ZoneStatus.OFFLINE, 10),
        ([("no_data", None), ("stale", None)], ZoneStatus.STALE, None),
        ([("no_data", None), ("no_data", None)], ZoneStatus.NO_DATA, None),
    ],
)
def test_a_site_sums_fresh_zones_and_shows_the_worst_status(
    zones: list[tuple[str, int | None]], status: ZoneStatus, count: int | None
) -> None:
    config = web_config()
    beach = config.site("beach-a")
    camera = beach.cameras[0]
    readings = [
        ZoneReading(beach, camera.id, zone, ZoneStatus(s), c, NOW - timedelta(seconds=i), i)
        for i, (zone, (s, c)) in enumerate(zip(camera.zones, zones, strict=True))
    ]

    site = next(r for r in site_readings(readings, config) if r.site.id == "beach-a")

    assert (site.status, site.count) == (status, count)
    assert site.ts == NOW and site.age_s == 0
    assert site.occupancy == (None if count is None else count / 200)


# The API, served for real.


@pytest.fixture
def client(db_url: str, serve: Serve) -> Iterator[tuple[httpx.Client, psycopg.Connection]]:
    config = web_config(db_url)
    upgrade(db_url, config)
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield serve(config), conn


def test_sites_lists_every_configured_site_with_its_zones(
    client: tuple[httpx.Client, psycopg.Connection],
) -> None:
    http, conn = client
    now = datetime.now(UTC)
    put_zone(conn, "beach-a", "north", 70, now - timedelta(seconds=3), method="dense")
    put_zone(conn, "beach-a", "south", 90, now - timedelta(seconds=8), method="detect")
    put_zone(conn, "stop-b", "platform", 40, now - timedelta(minutes=10), method="detect")  # stale

    response = http.get("/api/sites")

    assert response.status_code == 200
    by_id = {s["id"]: s for s in response.json()}
    assert list(by_id) == ["stop-a", "stop-b", "beach-a"]
    beach = by_id["beach-a"]
    assert beach["kind"] == "beach"
    assert beach["name"] == {"zh": "甲海滩", "en": "Beach A"}
    assert beach["location"] == {"lat": 22.5, "lon": 114.5}
    assert (beach["capacity"], beach["department"]) == (200, "culture_tourism")
    assert (beach["count"], beach["occupancy"], beach["status"]) == (160, 0.8, "ok")
    assert beach["ts"].endswith("Z")
    assert datetime.fromisoformat(beach["ts"]) == now - timedelta(seconds=3)
    assert 0 <= beach["age_s"] < 60
    assert [(z["zone_id"], z["count"], z["status"], z["method"]) for z in beach["zones"]] == [
        ("north", 70, "ok", "dense"),
        ("south", 90, "ok", "detect"),
    ]
    assert beach["zones"][0]["name"] == {"zh": "北区", "en": "North"}
    assert beach["zones"][0]["capacity"] == 100

    stale = by_id["stop-b"]
    assert (stale["count"], stale["occupancy"], stale["status"]) == (None, None, "stale")
    assert stale["ts"] is not None and stale["age_s"] >= 600
    # A withheld count has no method either.
    assert [(z["count"], z["method"]) for z in stale["zones"]] == [(None, None)]

    empty = by_id["stop-a"]
    assert (empty["count"], empty["status"], empty["ts"], empty["age_s"]) == (
        None,
        "no_data",
        None,
        None,
    )


def test_a_held_count_comes_with_the_edges_reason_and_the_refused_reading(
    client: tuple[httpx.Client, psycopg.Connection],
) -> None:
    http, conn = client
    now = datetime.now(UTC)
    flag = "implausible: 1167 people on 64 m² is 18.2 per m², more than the 6 that can stand there"
    put_zone(conn, "beach-a", "north", 45, now, "cam1", "dense", flag, 1167)
    put_zone(conn, "beach-a", "south", 90, now, method="detect")
    dark = "unusable frame: too dark (mean 6/255)"
    put_zone(conn, "stop-b", "platform", 12, now - timedelta(minutes=10), count_flag=dark)

    state = http.get("/api/state").json()

    by_id = {s["id"]: s for s in state["sites"]}
    held = [
        (z["zone_id"], z["count"], z["count_flag"], z["flagged_count"])
        for z in by_id["beach-a"]["zones"]
    ]
    # The held count is the last usable one, the refused reading only beside it.
    assert held == [("north", 45, flag, 1167), ("south", 90, None, None)]
    assert by_id["beach-a"]["count"] == 135
    # A stale count is withheld: nothing is held back either.
    [stale] = by_id["stop-b"]["zones"]
    assert (stale["count"], stale["count_flag"], stale["flagged_count"]) == (None, None, None)
    # The same zone on /api/sites, which shares the shape.
    beach = http.get("/api/sites/beach-a").json()
    assert beach["zones"][0]["count_flag"] == flag


def test_a_message_the_edge_flagged_reaches_the_api_through_the_ingest_writer(
    client: tuple[httpx.Client, psycopg.Connection], db_url: str
) -> None:
    http, _ = client
    now = datetime.now(UTC)
    flag = "implausible: 640 people, more than the 400 the zone's 6400 px at one person per 16 px holds"
    message = CountMessage(
        site_id="beach-a",
        camera_id="cam1",
        ts=now,
        interval_s=5.0,
        frames=5,
        zones=[
            ZoneCount(
                zone_id="north",
                count=38,
                count_max=38,
                count_mean=38.0,
                method=CountMethod.DENSE,
                count_flag=flag,
                flagged_count=640,
            ),
            ZoneCount(zone_id="south", count=20, count_max=21, count_mean=20.0),
        ],
    )
    payload = encode(message)  # as the edge publishes it, and as ingest decodes it
    topic = camera_topic("crowdwatch", "beach-a", "cam1", TopicKind.COUNTS)
    writer = BatchWriter(db_url)
    try:
        writer.write([Accepted(Envelope(topic, payload, now), decode_counts(payload))])
    finally:
        writer.close()

    [beach] = [s for s in http.get("/api/state").json()["sites"] if s["id"] == "beach-a"]

    assert [(z["count"], z["count_flag"], z["flagged_count"]) for z in beach["zones"]] == [
        (38, flag, 640),
        (20, None, None),
    ]
    assert beach["count"] == 58


def test_an_offline_camera_shows_offline_not_zero(
    client: tuple[httpx.Client, psycopg.Connection],
) -> None:
    http, conn = client
    now = datetime.now(UTC)
    put_zone(conn, "stop-a", "platform", 0, now)
    put_status(conn, "stop-a", "cam1", "offline", now)

    site = http.get("/api/sites/stop-a").json()

    assert (site["status"], site["count"]) == ("offline", None)


def test_one_site_answers_as_its_entry_in_the_district_list(
    client: tuple[httpx.Client, psycopg.Connection],
) -> None:
    # /api/sites/{id} reads only that site's rows; nothing of the others may leak in or out.
    http, conn = client
    now = datetime.now(UTC)
    put_zone(conn, "beach-a", "north", 70, now - timedelta(seconds=3), method="dense")
    put_zone(conn, "stop-a", "platform", 30, now)
    put_zone(conn, "stop-b", "platform", 12, now)
    put_status(conn, "stop-b", "cam1", "offline", now)

    def without_ages(site: dict[str, Any]) -> dict[str, Any]:
        zones = [{**z, "age_s": None} for z in site["zones"]]
        return {**site, "age_s": None, "zones": zones}

    listed = {s["id"]: without_ages(s) for s in http.get("/api/sites").json()}
    assert [(s["status"], s["count"]) for s in listed.values()] == [
        ("ok", 30),
        ("offline", None),
        ("no_data", 70),
    ]
    for site_id, entry in listed.items():
        assert without_ages(http.get(f"/api/sites/{site_id}").json()) == entry


def test_an_unknown_site_is_a_404_naming_it(
    client: tuple[httpx.Client, psycopg.Connection],
) -> None:
    http, _ = client

    response = http.get("/api/sites/stop-nowhere")

    assert response.status_code == 404
    assert "stop-nowhere" in response.json()["error"]


def test_alerts_lists_the_firing_alerts(client: tuple[httpx.Client, psycopg.Connection]) -> None:
    http, conn = client
    insert_firing(conn, alert_message())

    [alert] = http.get("/api/alerts").json()

    assert (alert["alert_key"], alert["state"], alert["severity"]) == (
        "stop-a/platform/crowded",
        "firing",
        "warning",
    )
    assert alert["summary"]["zh"].startswith("甲站")
    assert alert["started_at"] == "2026-10-01T06:00:00Z"


def test_healthz_says_the_database_answers(client: tuple[httpx.Client, psycopg.Connection]) -> None:
    http, _ = client

    response = http.get("/healthz")

    assert (response.status_code, response.json()) == (200, {"status": "ok", "database": "ok"})


@pytest.mark.parametrize("path", ["/api/sites", "/api/sites/stop-a", "/api/alerts", "/healthz"])
def test_a_database_that_is_down_is_a_503_with_a_json_error(path: str, serve: Serve) -> None:
    response = serve(web_config(DEAD_DB)).get(path)

    assert response.status_code == 503
    body = response.json()
    assert body["error"] == "database unavailable"
    assert "detail" not in body  # connection details stay in the (redacted) log
    assert "Traceback" not in response.text


@pytest.mark.parametrize("path", ["/", "/wall", "/dispatch"])
def test_each_page_is_one_small_self_contained_file_with_an_etag_and_gzip(
    path: str, serve: Serve
) -> None:
    http = serve(web_config(DEAD_DB))

    response = http.get(path, headers={"Accept-Encoding": "gzip"})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-encoding"] == "gzip"
    html = response.text
    assert len(html.encode("utf-8")) < 40_000
    assert "<script src" not in html and "<link" not in html, "no external assets"
    assert "script-src 'sha256-" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-cache"
    again = http.get(path, headers={"If-None-Match": response.headers["etag"]})
    assert (again.status_code, again.content) == (304, b"")


def test_the_phone_page_lists_beaches_first_and_streams_with_a_polling_fallback() -> None:
    html = PHONE_PAGE.read_text(encoding="utf-8")

    # The page groups sites in the order of the kinds the state carries (site_kinds.py).
    assert "state.kinds.forEach" in html
    order = [k.value for k in KIND_ORDER]
    assert order.index("beach") < order.index("bus_stop") < order.index("road")
    assert 'new EventSource("api/stream")' in html and 'fetch("api/state"' in html
    assert "Database unavailable" in html and "Camera offline" in html


def test_a_taken_port_is_a_one_line_error_that_names_it(db_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"cannot listen on 127\.0\.0\.1:{port}: "):
            run_web(web_config(db_url), "127.0.0.1", port, threading.Event())


def test_run_web_picks_a_free_port_and_logs_the_url(
    db_url: str, serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="crowdwatch.dashboards.web")
    http = serve(web_config(db_url))

    url = str(http.base_url)
    assert url.startswith("http://127.0.0.1:") and not url.endswith(":0/")
    assert f"web dashboard at {url}" in caplog.text
