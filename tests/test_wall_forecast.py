"""The wall's forecast band: the alert engine's forecast of each beach 1-3 h ahead.

Figures against a hand computation on the real PostgreSQL (the reference holiday from the
calendar: day 3 of National Day 2026 against day 3 in 2025), the served ``/api/forecast``, and
the band drawn on the wall in a real Chromium at 1920x1080.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
from factories import make_config
from playwright.sync_api import Browser, expect
from raw_rows import ZoneRow, insert_zones
from web_server import Serve, web_config

from crowdwatch.contracts.config import RetentionConfig
from crowdwatch.dashboards.forecast_band import site_band
from crowdwatch.dashboards.snapshot import iso
from crowdwatch.reports.holidays import HolidayCalendar
from crowdwatch.storage.migrate import upgrade
from crowdwatch.storage.rollups import refresh_rollups

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Days this old are past the usual raw retention: a refresh would skip them.
LONG = RetentionConfig(raw_days=800, rollup_days=800)
WALL = {"width": 1920, "height": 1080}


def local(day: date, hh: int, mm: int) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=SHANGHAI).astimezone(UTC)


def rows(at: list[tuple[datetime, int]]) -> list[ZoneRow]:
    # One reading per bucket in the north zone: its 15-minute mean is the count itself.
    return [ZoneRow(ts, "beach-a", "north", n) for ts, n in at]


def test_band_is_the_engine_forecast_between_trend_and_last_holiday(db_url: str) -> None:
    config = web_config(db_url)
    upgrade(db_url, config)
    today, last_year = date(2026, 10, 3), date(2025, 10, 3)
    ramp = [(local(today, 9, 15 * i), 40 + 10 * i) for i in range(4)]  # 40 50 60 70
    reference = [
        (local(last_year, h, 45), n) for h, n in [(9, 100), (10, 150), (11, 200), (12, 100)]
    ]
    with psycopg.connect(db_url, autocommit=True) as conn:
        insert_zones(conn, rows(ramp + reference))
        refresh_rollups(conn, retention=LONG)
        band = site_band(
            conn, config, config.site("beach-a"), local(today, 9, 50), HolidayCalendar()
        )
        stale = site_band(
            conn, config, config.site("beach-a"), local(today, 10, 30), HolidayCalendar()
        )

    assert [round(v) for _, v in band.recent] == [40, 50, 60, 70]
    assert band.reference_day == last_year
    # By hand: trend +10 per 15 min = 2/3 per minute from 70; holiday ratios 150/100,
    # 200/100, 100/100 applied to 70; the blend is their mean, the band their range.
    got = [
        (p.horizon_min, round(p.expected, 3), round(p.low, 3), round(p.high, 3))
        for p in band.points
    ]
    assert got == [(60, 107.5, 105.0, 110.0), (120, 145.0, 140.0, 150.0), (180, 130.0, 70.0, 190.0)]
    assert [p.ts for p in band.points] == [local(today, h, 45) for h in (10, 11, 12)]
    # 45 minutes after the newest bucket nothing is projected; the past is still drawn.
    assert stale.points == [] and stale.reference_day is None and len(stale.recent) == 4


def test_band_without_a_reference_day_is_the_trend_alone(db_url: str) -> None:
    config = web_config(db_url)
    upgrade(db_url, config)
    today = date(2026, 12, 7)  # an ordinary Monday: no same day last year, none configured
    ramp = [(local(today, 14, 15 * i), 100 - 10 * i) for i in range(4)]  # 100 90 80 70
    with psycopg.connect(db_url, autocommit=True) as conn:
        insert_zones(conn, rows(ramp))
        refresh_rollups(conn, retention=LONG)
        band = site_band(
            conn, config, config.site("beach-a"), local(today, 14, 46), HolidayCalendar()
        )
    assert band.reference_day is None
    got = [
        (p.horizon_min, round(p.low, 3), round(p.expected, 3), round(p.high, 3))
        for p in band.points
    ]
    assert got == [(60, 30.0, 30.0, 30.0), (120, 0.0, 0.0, 0.0), (180, 0.0, 0.0, 0.0)]


@pytest.fixture
def forecast_district(pg_server: Any, serve: Serve) -> Iterator[tuple[httpx.Client, datetime]]:
    """A beach rising now, and yesterday (a configured reference day) rising further."""
    url = pg_server.create_database()
    try:
        now = datetime.now(UTC)
        newest = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
        yesterday = (newest.astimezone(SHANGHAI) - timedelta(days=1)).date()
        raw = web_config(url).model_dump(mode="json", by_alias=True, exclude_none=True)
        raw["alerts"]["reference_days"] = [yesterday.isoformat()]
        config = make_config(raw)
        upgrade(url, config)
        today_rows = [(newest - timedelta(minutes=15 * i), 90 - 10 * i) for i in range(8)]
        day = timedelta(days=1)
        ref_rows = [(newest - day + timedelta(minutes=15 * i), 80 + 12 * i) for i in range(14)]
        with psycopg.connect(url, autocommit=True) as conn:
            insert_zones(conn, rows(today_rows + ref_rows))
            refresh_rollups(conn)
        yield serve(config), newest
    finally:
        pg_server.drop_database(url)


def test_wall_draws_the_forecast_band_beside_recent_occupancy(
    forecast_district: tuple[httpx.Client, datetime], browser: Browser, screenshots: Path
) -> None:
    http, newest = forecast_district
    body = http.get("/api/forecast").json()
    (beach,) = body["sites"]
    assert beach["id"] == "beach-a" and beach["reference_day"] is not None
    assert [p["horizon_min"] for p in beach["forecast"]] == [60, 120, 180]
    # Trend +10/15 min from 90 and the reference's +48/h on 80 both rise: the band is above now.
    assert all(p["occupancy_low"] > 90 / 200 for p in beach["forecast"])
    assert all(p["low"] <= p["expected"] <= p["high"] for p in beach["forecast"])
    three_h = beach["forecast"][-1]
    assert three_h["ts"] == iso(newest + timedelta(hours=3))

    page = browser.new_page(viewport=WALL, locale="zh-CN")  # type: ignore[arg-type]
    try:
        page.goto(f"{http.base_url}wall")
        card = page.locator("#forecast-beach-a")
        expect(card.locator(".band")).to_have_count(1, timeout=10_000)
        expect(card.locator(".recent")).to_have_count(1)
        expect(card).to_contain_text("预测 forecast")
        expect(card.locator(".f-3h")).to_have_text(f"{round(three_h['occupancy'] * 100)}%")
        expect(page.locator("#wall-site-beach-a")).to_have_count(1)  # the live state too
        box = page.locator("#forecasts").bounding_box()
        assert box is not None and box["y"] + box["height"] <= WALL["height"]
        page.screenshot(path=screenshots / "wall-1920x1080-forecast.png")
    finally:
        page.close()
