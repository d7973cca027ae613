"""The wall's road traffic in a real headless Chromium (1920x1080): each road coloured by its
congestion level (GB/T 33171-2016) with its vehicles' mean speed and count, live.

Figures are what the test wrote to the real PostgreSQL; the screenshot goes to
tests/artifacts/screenshots/ (committed: the issue asks to see the road panel).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from factories import (
    APPROACH,
    APPROACH_CALIBRATION,
    config_dict,
    make_config,
    road_dict,
    site_dict,
)
from playwright.sync_api import Browser, expect
from web_server import Serve

from crowdwatch.contracts.config import CrowdwatchConfig
from crowdwatch.dashboards.grafana import macros
from crowdwatch.dashboards.grafana.dashboards import site_dashboard, wall_dashboard
from crowdwatch.storage.migrate import upgrade
from crowdwatch.storage.rollups import refresh_rollups

ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "screenshots"


# The fixture's counts are this old: the hysteresis of the pages' levels runs on the counts'
# clock, so the test can hold a level 2 minutes without waiting them (stale after 10 min).
FIXTURE_AGE = timedelta(seconds=200)


def put_traffic(
    conn: psycopg.Connection,
    site_id: str,
    zone_id: str,
    vehicles: int,
    speed: float | None,
    ts: datetime | None = None,
    density: float | None = None,
    queue: float | None = None,
) -> None:
    """Upsert a road zone's newest row as ingest does: no people, vehicles, speed, density,
    and the queue of an approach."""
    conn.execute(
        "INSERT INTO zone_latest (site_id, zone_id, camera_id, ts, count, count_max, count_mean,"
        " vehicles, mean_speed_kmh, vehicle_density, queue_length_m)"
        " VALUES (%s, %s, 'cam1', %s, 0, 0, 0, %s, %s, %s, %s)"
        " ON CONFLICT (site_id, zone_id) DO UPDATE SET ts = EXCLUDED.ts,"
        " vehicles = EXCLUDED.vehicles, mean_speed_kmh = EXCLUDED.mean_speed_kmh,"
        " vehicle_density = EXCLUDED.vehicle_density, queue_length_m = EXCLUDED.queue_length_m",
        (site_id, zone_id, ts or datetime.now(UTC), vehicles, speed, density, queue),
    )


def two_way_road() -> dict[str, Any]:
    site = road_dict(site_id="road-gate")
    site["name"] = {"zh": "滨海大道入口", "en": "Coastal Avenue Gate"}
    camera = site["cameras"][0]
    zone = camera["zones"][0]
    # Inbound ends at the gate's stop line: an approach 99.2 m long.
    camera["calibration"] = APPROACH_CALIBRATION
    camera["zones"] = [
        zone | {"id": "inbound", "name": {"zh": "进城", "en": "Inbound"}, **APPROACH},
        zone | {"id": "outbound", "name": {"zh": "出城", "en": "Outbound"}},
    ]
    return site


def roads_config(db_url: str) -> CrowdwatchConfig:
    """A bus stop and four roads: an expressway, a two-way arterial, one graded from density
    and one with no counts."""
    quiet = road_dict(site_id="road-coast")
    quiet["name"] = {"zh": "环岛路", "en": "Island Ring Road"}
    hill = road_dict(site_id="road-hill")
    hill["name"] = {"zh": "山顶路", "en": "Hilltop Road"}
    tunnel, gate = road_dict({"road_class": "expressway"}), two_way_road()
    # Apart on the map, so each road's dot shows its own colour.
    for site, lat, lon in (
        (tunnel, 22.56, 114.486),
        (gate, 22.552, 114.495),
        (quiet, 22.53, 114.52),
        (hill, 22.545, 114.47),
    ):
        site["location"] = {"lat": lat, "lon": lon}
    raw = config_dict(site_dict("stop-a"), tunnel, gate, quiet, hill)
    raw["database"] = {"url": db_url}
    raw["web"] = {"live_poll_s": 0.3, "heartbeat_s": 1.0}
    raw["alerts"]["stale_after_s"] = 600
    return make_config(raw)


@pytest.fixture
def roads(db_url: str, serve: Serve) -> Iterator[httpx.Client]:
    config = roads_config(db_url)
    upgrade(db_url, config)
    then = datetime.now(UTC) - FIXTURE_AGE
    with psycopg.connect(db_url, autocommit=True) as conn:
        # An expressway at 28 km/h: moderate (20-35).  An arterial whose outbound lane
        # crawls at 26 km/h (light, 20-30) while inbound flows: the slower lane speaks.
        put_traffic(conn, "road-tunnel", "carriageway", 64, 28.0, then)
        put_traffic(conn, "road-gate", "inbound", 12, 45.0, then, queue=60.0)
        put_traffic(conn, "road-gate", "outbound", 30, 26.0, then)
        # No calibration on the ring road's camera: its level comes from density, a model.
        put_traffic(conn, "road-coast", "carriageway", 30, None, then, density=80.0)
    yield serve(config)


def test_the_wall_colours_each_road_by_its_level_with_speed_and_vehicles(
    roads: httpx.Client, db_url: str, browser: Browser
) -> None:
    road = roads.get("/api/sites/road-tunnel").json()
    assert road["traffic"] == {
        "vehicles": 64,
        "speed_kmh": 28.0,
        "density": None,
        "level": 4,
        "level_name": {"zh": "中度拥堵", "en": "moderate congestion"},
        "level_source": "speed",
        "level_note": None,
        "queue_m": None,  # no stop line in the tunnel
        "queue_share": None,
        "spills_back": None,
    }
    assert road["zones"][0]["traffic"]["level"] == 4
    # The gate's inbound approach queues 60 m back from its stop line, 60% of the approach.
    gate_api = roads.get("/api/sites/road-gate").json()
    inbound = next(z for z in gate_api["zones"] if z["zone_id"] == "inbound")
    assert (inbound["traffic"]["queue_m"], inbound["traffic"]["queue_share"]) == (60.0, 0.61)
    assert (gate_api["traffic"]["queue_m"], gate_api["traffic"]["queue_share"]) == (60.0, 0.61)
    assert gate_api["traffic"]["spills_back"] is False
    assert roads.get("/api/sites/stop-a").json()["traffic"] is None

    page = browser.new_page(viewport={"width": 1920, "height": 1080}, locale="zh-CN")
    try:
        page.goto(f"{roads.base_url}wall")
        tunnel = page.locator("#road-road-tunnel")
        expect(tunnel.locator(".lv")).to_have_text("中度拥堵", timeout=10_000)
        expect(tunnel.locator(".lv-en")).to_have_text("moderate congestion")
        expect(tunnel.locator(".lv-4")).to_have_count(1)
        expect(tunnel.locator(".speed")).to_have_text("28 km/h")
        expect(tunnel.locator(".vehicles")).to_have_text("64")
        gate = page.locator("#road-road-gate")
        expect(gate.locator(".lv-3")).to_have_text("轻度拥堵")
        expect(gate.locator(".speed")).to_have_text("26 km/h")
        expect(gate.locator(".vehicles")).to_have_text("42")
        expect(gate.locator(".queue")).to_have_text("60 m")
        expect(tunnel.locator(".queue")).to_have_text("–")
        # A road graded from density says that it is a model, and shows the density.
        coast = page.locator("#road-road-coast")
        expect(coast.locator(".lv-3")).to_have_text("轻度拥堵")  # 60 * (1 - 80/150) = 28 km/h
        expect(coast.locator(".lv-note")).to_have_text(
            "按密度推算, 模型估计 · from density, a model"
        )
        expect(coast.locator(".speed")).to_have_text("80 辆/km/车道 veh/km/lane")
        # A road without a count says so: no colour, no figures, never "smooth".
        hill = page.locator("#road-road-hill")
        expect(hill.locator(".lv-none")).to_have_text("无数据")
        expect(hill.locator(".speed")).to_have_text("–")
        # The list of every site shows a road's vehicles and level, not "0 people".
        expect(page.locator("#wall-site-road-tunnel .count")).to_have_text("64 辆 veh")
        expect(page.locator("#wall-site-road-tunnel .pct")).to_have_text("中度拥堵")
        # Bus stops are no roads.
        expect(page.locator("#roads tr")).to_have_count(4)
        # The map colours a road by its level too.
        fill = page.locator("#map circle").nth(1).evaluate("c => c.style.fill")
        assert fill == "rgb(255, 122, 26)"  # the moderate orange

        # The speed wobbles over the boundary (36 km/h is light on an expressway) for one
        # count: the colour holds, as the alert does (each read through the API feeds the
        # same memory the live state does).
        then = datetime.now(UTC) - FIXTURE_AGE
        with psycopg.connect(db_url, autocommit=True) as conn:
            put_traffic(conn, "road-tunnel", "carriageway", 60, 38.0, then + timedelta(seconds=20))
        wobble = roads.get("/api/sites/road-tunnel").json()["traffic"]
        assert (wobble["speed_kmh"], wobble["level"]) == (38.0, 4)
        expect(tunnel.locator(".speed")).to_have_text("38 km/h", timeout=5_000)
        expect(tunnel.locator(".lv-4")).to_have_text("中度拥堵")
        # The jam gets worse: severe (<= 20 km/h) shows once it has held 2 minutes.
        with psycopg.connect(db_url, autocommit=True) as conn:
            put_traffic(conn, "road-tunnel", "carriageway", 80, 15.0, then + timedelta(seconds=30))
        assert roads.get("/api/sites/road-tunnel").json()["traffic"]["level"] == 4
        with psycopg.connect(db_url, autocommit=True) as conn:
            put_traffic(conn, "road-tunnel", "carriageway", 88, 14.0)
        expect(tunnel.locator(".lv-5")).to_have_text("严重拥堵", timeout=5_000)
        expect(tunnel.locator(".speed")).to_have_text("14 km/h")
        expect(tunnel.locator(".vehicles")).to_have_text("88")
        # The gate's queue fills its approach (90 of 99.2 m: where the spill-back alert fires,
        # a stopped car's anchor never reaching the very end): it blocks the junction behind,
        # which the wall says in red.
        with psycopg.connect(db_url, autocommit=True) as conn:
            put_traffic(conn, "road-gate", "inbound", 30, 8.0, queue=90.0)
        expect(gate.locator(".queue")).to_have_text("90 m溢出 spill-back", timeout=5_000)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=ARTIFACTS / "wall-roads-1920x1080.png")
    finally:
        page.close()


def test_grafanas_road_table_grades_each_road_as_the_wall_does(db_url: str) -> None:
    config = roads_config(db_url)
    upgrade(db_url, config)
    [panel] = [p for p in wall_dashboard(config).panels if p.title.startswith("道路通行")]
    [target] = panel.targets
    with psycopg.connect(db_url, autocommit=True) as conn:
        put_traffic(conn, "road-tunnel", "carriageway", 64, 28.0)
        put_traffic(conn, "road-gate", "inbound", 12, 45.0, queue=60.0)
        put_traffic(conn, "road-gate", "outbound", 30, 26.0)
        # No speed measured on the hilltop road: its density graded by Greenshields' rule,
        # 60 km/h * (1 - 110 / 150) = 16 km/h on an arterial, as the wall grades it.
        put_traffic(conn, "road-hill", "carriageway", 40, None, density=110.0)
        cur = conn.execute(target.sql)
        assert cur.description is not None
        names = [c.name for c in cur.description]
        rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        # An empty road is smooth, not "no data".
        put_traffic(conn, "road-coast", "carriageway", 0, None)
        empty = conn.execute(target.sql).fetchall()
        # The gate's approach fills: a spill-back, as the wall says it.
        put_traffic(conn, "road-gate", "inbound", 30, 8.0, queue=90.0)
        spilled = conn.execute(target.sql).fetchall()
    got = [(r["site_id"], r["level"], r["speed_kmh"], r["vehicles"]) for r in rows]
    assert got == [
        ("road-hill", 4, None, 40),  # from density: moderate
        ("road-tunnel", 4, 28.0, 64),  # expressway, 20-35 km/h: moderate
        ("road-gate", 3, 26.0, 42),  # arterial, its slower lane at 20-30: light
        ("road-coast", None, None, None),  # no count: no level
    ]
    # A level from density says it is a model's, as the wall's note does; a speed needs no note.
    assert {r["site_id"]: r["basis"] for r in rows} == {
        "road-hill": "按密度推算, 模型估计 · from density, a model",
        "road-tunnel": None,
        "road-gate": None,
        "road-coast": None,
    }
    assert [r[:3] for r in empty if r[0] == "road-coast"] == [
        ("road-coast", "环岛路 Island Ring Road", 1)
    ]
    # The queue of a road's fullest approach, as the wall shows it; none without a stop line.
    assert {r["site_id"]: r["queue"] for r in rows} == {
        "road-hill": None,
        "road-tunnel": None,
        "road-gate": "60 m",
        "road-coast": None,
    }
    queue = names.index("queue")
    assert [r[queue] for r in spilled if r[0] == "road-gate"] == ["90 m · 溢出 spill-back"]


def test_grafanas_road_drill_down_shows_speed_and_vehicles_over_time(db_url: str) -> None:
    config = roads_config(db_url)
    upgrade(db_url, config)
    [panel] = [p for p in site_dashboard(config).panels if p.title.startswith("道路")]
    [target] = panel.targets
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    jam = [(4, 60, 30.0), (3, 70, 20.0), (2, 80, 10.0)]  # minutes ago, vehicles, km/h
    with psycopg.connect(db_url, autocommit=True) as conn:
        for minutes, vehicles, speed in jam:
            conn.execute(
                "INSERT INTO zone_counts (ts, site_id, camera_id, zone_id, count, count_max,"
                " count_mean, interval_s, message_id, vehicles, mean_speed_kmh)"
                " VALUES (%s, 'road-tunnel', 'cam1', 'carriageway', 0, 0, 0, 5, %s, %s, %s)",
                (now - timedelta(minutes=minutes, seconds=-10), f"m{minutes}", vehicles, speed),
            )
        refresh_rollups(conn)
        sql = macros.expand(
            target.sql, now - timedelta(hours=1), now, {"site": "road-tunnel", "ref_day": ""}
        )
        rows = conn.execute(sql).fetchall()
    assert [(r[1], r[2]) for r in rows] == [(30.0, 60), (20.0, 70), (10.0, 80)]
    assert [r[0] for r in rows] == [now - timedelta(minutes=m) for m, _, _ in jam]


def test_the_phone_page_shows_a_road_by_its_level_not_as_people(
    roads: httpx.Client, browser: Browser
) -> None:
    page = browser.new_page(viewport={"width": 390, "height": 844}, locale="zh-CN")
    try:
        page.goto(str(roads.base_url))
        tunnel = page.locator("#site-road-tunnel")
        expect(tunnel.locator(".count")).to_have_text("64", timeout=10_000)
        expect(tunnel.locator(".unit")).to_have_text("辆 veh")
        expect(tunnel.locator(".speed")).to_have_text("28 km/h")
        expect(tunnel.locator(".word")).to_have_text("中度拥堵 moderate congestion")
        expect(tunnel).to_have_class("site s-full")
        expect(page.locator("#site-road-gate .word")).to_have_text("轻度拥堵 light congestion")
        expect(page.locator("#site-road-gate .count")).to_have_text("42")
        expect(page.locator("#site-road-gate .queue")).to_have_text("排队 queue 60 m")
        coast = page.locator("#site-road-coast")
        expect(coast.locator(".word")).to_have_text("轻度拥堵 light congestion")
        expect(coast.locator(".note")).to_have_text("按密度推算, 模型估计 · from density, a model")
        expect(coast.locator(".speed")).to_have_text("80")
        expect(coast.locator(".density")).to_have_text("辆/km/车道")
        hill = page.locator("#site-road-hill")
        expect(hill.locator(".word")).to_have_text("无数据 No data")
        expect(hill.locator(".warn")).to_contain_text("No data yet")
        # The bus stop keeps its people.
        expect(page.locator("#site-stop-a .unit")).to_have_text("人")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=ARTIFACTS / "phone-roads-390x844.png", full_page=True)
    finally:
        page.close()


def test_grafanas_flow_per_lane_is_crossings_per_hour_per_lane(db_url: str) -> None:
    site = road_dict({"road_class": "expressway"})
    site["cameras"][0]["lines"] = [
        {
            "id": "exit-line",
            "name": {"zh": "出口断面", "en": "Exit"},
            "start": [0, 300],
            "end": [768, 300],
            "in_direction": [0, 1],
            "lanes": 3,
        },
        # A line without lanes has no flow per lane: its values are empty.
        {
            "id": "kerb",
            "name": {"zh": "路缘", "en": "Kerb"},
            "start": [0, 500],
            "end": [768, 500],
            "in_direction": [0, 1],
        },
    ]
    config = make_config(config_dict(site))
    upgrade(db_url, config)
    [panel] = [p for p in site_dashboard(config).panels if p.title.startswith("每车道流量")]
    [target] = panel.targets
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    # Minutes ago, then two messages in the minute: (in, out) crossings of each.
    minutes = {3: [(20, 10), (25, 5)], 2: [(40, 20), (35, 25)]}
    with psycopg.connect(db_url, autocommit=True) as conn:
        for ago, messages in minutes.items():
            for i, (n_in, n_out) in enumerate(messages):
                for line_id in ("exit-line", "kerb"):
                    conn.execute(
                        "INSERT INTO line_counts (ts, site_id, camera_id, line_id, in_count,"
                        " out_count, message_id) VALUES (%s, 'road-tunnel', 'cam1', %s, %s, %s,"
                        " %s)",
                        (
                            now - timedelta(minutes=ago, seconds=-10 - 20 * i),
                            line_id,
                            n_in,
                            n_out,
                            f"m{ago}-{i}-{line_id}",
                        ),
                    )
        refresh_rollups(conn)
        sql = macros.expand(
            target.sql, now - timedelta(hours=1), now, {"site": "road-tunnel", "ref_day": ""}
        )
        rows = conn.execute(sql).fetchall()
    # 60 vehicles in a minute over 3 lanes: 1,200 per hour per lane; then 120: 2,400.
    assert rows == [
        (now - timedelta(minutes=3), "exit-line", 1200.0),
        (now - timedelta(minutes=3), "kerb", None),
        (now - timedelta(minutes=2), "exit-line", 2400.0),
        (now - timedelta(minutes=2), "kerb", None),
    ]
