"""The daily report on the web: JSON, page, PNG, PDF, CSV, Excel agree; the page on a phone.

Screenshots go to tests/artifacts/screenshots/ (committed: the issue asks to look at them).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from factories import make_config
from playwright.sync_api import Browser
from raw_rows import insert_lines, insert_zones
from report_history import (
    DAY,
    EXPECTED_BEACH,
    EXPECTED_ROAD,
    line_rows,
    report_config_dict,
    zone_rows,
)
from web_server import Serve

from crowdwatch.contracts.config import RetentionConfig
from crowdwatch.storage.migrate import upgrade
from crowdwatch.storage.rollups import refresh_rollups

ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "screenshots"
PHONE = {"width": 390, "height": 844}
BASE = f"/reports/daily/{DAY.isoformat()}"


@pytest.fixture
def http(db_url: str, serve: Serve) -> Iterator[httpx.Client]:
    raw = report_config_dict()
    raw["database"] = {"url": db_url}
    config = make_config(raw)
    upgrade(db_url, config)
    with psycopg.connect(db_url, autocommit=True) as conn:
        insert_zones(conn, zone_rows())
        insert_lines(conn, line_rows())
        refresh_rollups(conn, retention=RetentionConfig(raw_days=3650, rollup_days=36500))
    yield serve(config)


def test_every_form_shows_the_figures_of_the_api(http: httpx.Client) -> None:
    body = http.get(f"/api/reports/daily/{DAY.isoformat()}").json()
    beach = next(s for s in body["sites"] if s["site_id"] == "beach-a")
    assert (beach["visits"], beach["peak"]) == (EXPECTED_BEACH["visits"], EXPECTED_BEACH["peak"])
    assert body["total_visits"] == 76

    page = http.get(BASE)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<b id="total-visits">76</b>' in page.text
    assert "41<abbr" in page.text and "+173.3%" in page.text  # estimate mark, vs last year
    assert "<svg" in page.text  # matplotlib's chart
    assert 'href="/reports/holiday/national_day/2025"' in page.text

    png = http.get(f"{BASE}.png")
    assert png.headers["content-type"] == "image/png" and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    pdf = http.get(f"{BASE}.pdf")
    assert pdf.headers["content-type"] == "application/pdf" and pdf.content[:5] == b"%PDF-"

    rows = list(csv.reader(io.StringIO(http.get(f"{BASE}.csv").content.decode("utf-8-sig"))))
    by_site = {row[2]: row for row in rows[1:]}
    assert by_site["beach-a"][5:7] == ["41", "True"]
    assert by_site["spot-b"][5:9] == ["35", "False", "35", "35"]

    from openpyxl import load_workbook

    sheet = load_workbook(io.BytesIO(http.get(f"{BASE}.xlsx").content)).active
    assert sheet is not None
    cells = {row[2]: row for row in sheet.iter_rows(min_row=2, values_only=True)}
    assert cells["beach-a"][5] == 41 and cells["spot-b"][7] == 35

    # The road's congestion: the last columns, minutes per level then its day's summary.
    header, road = rows[0], by_site["road-d"]
    smooth = header.index("畅通分钟 / min smooth")
    minutes = list(EXPECTED_ROAD["minutes_at"].values())  # type: ignore[union-attr]
    assert road[smooth:] == [str(m) for m in minutes] + [
        "5",
        "2",
        "1431",
        "严重拥堵 severe congestion",
        "08:02",
        "8.0",
    ]
    assert by_site["beach-a"][smooth:] == [""] * 11
    assert list(cells["road-d"][smooth : smooth + 5]) == minutes


def test_the_page_shows_each_road_minutes_per_congestion_level(http: httpx.Client) -> None:
    page = http.get(BASE).text
    roads = page[page.index('<table id="roads">') :]
    roads = roads[: roads.index("</table>")]
    assert "道路拥堵" in page and "中度<br>拥堵" in roads and "no data" in roads
    cells = roads[roads.index("road-d中") :]
    # smooth, mostly smooth, light, moderate, severe, no data, then the worst and when
    assert "<td>2</td><td>1</td><td>1</td><td>3</td><td>2</td><td>1431</td>" in cells
    assert "严重<br>拥堵<br><span class='en'>08:02</span>" in cells


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("/reports/daily/2025-13-01", "expected a day as YYYY-MM-DD, got '2025-13-01'"),
        ("/reports/daily/yesterday", "expected a day as YYYY-MM-DD"),
        ("/reports/daily/2025-10-03.gif", "unknown format 'gif'; expected one of png"),
        ("/api/reports/daily/2025-10-03.png", "expected a day as YYYY-MM-DD"),
        ("/api/reports/daily/2030-10-01", "no data for 2030; add that year's holidays"),
    ],
)
def test_a_bad_day_is_a_422_naming_the_fix(http: httpx.Client, path: str, problem: str) -> None:
    response = http.get(path)
    assert response.status_code == 422
    assert problem in response.json()["error"]


def test_reports_redirects_to_today(http: httpx.Client) -> None:
    response = http.get("/reports")
    assert response.status_code == 302
    assert response.headers["location"].startswith("/reports/daily/20")


def test_the_page_and_the_poster_on_a_phone(http: httpx.Client, browser: Browser) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    api = http.get(f"/api/reports/daily/{DAY.isoformat()}").json()
    page = browser.new_page(viewport=PHONE, locale="zh-CN")  # type: ignore[arg-type]
    try:
        page.goto(f"{str(http.base_url).rstrip('/')}{BASE}")
        assert page.locator("#total-visits").inner_text() == f"{api['total_visits']:,}"
        first = page.locator("#sites tr").nth(1).inner_text()
        assert "beach-a中" in first and "41*" in first
        # Nothing wider than the phone: no sideways scrolling to read a table.
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        page.screenshot(path=ARTIFACTS / "report-390x844.png", full_page=True)
        page.goto(f"{str(http.base_url).rstrip('/')}{BASE}.png")
        page.screenshot(path=ARTIFACTS / "report-poster-390x844.png", full_page=True)
    finally:
        page.close()


def test_the_example_district_on_national_day_as_a_leader_sees_it(
    db_url: str, serve: Serve, browser: Browser
) -> None:
    """The example district with a simulated golden week and what it is compared with."""
    from datetime import date

    from crowdwatch.contracts.config import load_config
    from crowdwatch.simulator.history import fill_history

    example = load_config(Path(__file__).resolve().parents[1] / "configs" / "district.example.yaml")
    config = example.model_copy(
        update={"database": example.database.model_copy(update={"url": db_url})}
    )
    days = [date(2025, 9, 27), date(2025, 10, 1), date(2025, 10, 2), date(2025, 10, 3)]
    days += [date(2024, 10, 3), date(2025, 6, 2)]
    fill_history(config, db_url, days, seed=3)
    http = serve(config)
    api = http.get("/api/reports/daily/2025-10-03").json()
    assert api["holiday"] == "national_day" and api["holiday_day"] == 3
    assert all(s["comparisons"]["last_year"]["change_pct"] is not None for s in api["sites"])
    base = str(http.base_url).rstrip("/")
    page = browser.new_page(viewport=PHONE, locale="zh-CN")  # type: ignore[arg-type]
    try:
        page.goto(f"{base}/reports/daily/2025-10-03")
        assert page.locator("#total-visits").inner_text() == f"{api['total_visits']:,}"
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        page.screenshot(path=ARTIFACTS / "report-haiwan-390x844.png", full_page=True)
    finally:
        page.close()
    (ARTIFACTS / "report-haiwan-poster.png").write_bytes(
        http.get("/reports/daily/2025-10-03.png").content
    )


def test_the_whole_holiday_against_last_year(http: httpx.Client, browser: Browser) -> None:
    # National Day 2025 (1-8 Oct): beach 41 on the 3rd + 9 on the 4th (17.5 person-hours / 2 h,
    # rounded); spot 35 + 100 entries.  2024 (1-7 Oct): beach 15, spot 20.
    body = http.get("/api/reports/holiday/national_day/2025").json()
    assert body["days"][0] == "2025-10-01" and body["days"][-1] == "2025-10-08"
    assert len(body["last_year_days"]) == 7
    sites = {s["site_id"]: s for s in body["sites"]}
    assert (sites["beach-a"]["visits"], sites["beach-a"]["last_year_visits"]) == (50, 15)
    assert (sites["spot-b"]["visits"], sites["spot-b"]["last_year_visits"]) == (135, 20)
    assert (body["total_visits"], body["last_year_total"], body["change_pct"]) == (185, 35, 428.6)
    assert body["per_day"] == [None, None, 76, 109, None, None, None, None]
    assert body["last_year_per_day"] == [None, None, 35, None, None, None, None]
    assert sites["beach-a"]["minutes_above"] == {"yellow": 45, "orange": 30, "red": 15}

    assert http.get("/api/reports/holiday/national_day/1999").status_code == 422
    bad = http.get("/api/reports/holiday/ski_week/2025")
    assert bad.status_code == 422 and "no ski_week holiday in 2025" in bad.json()["error"]

    page = browser.new_page(viewport=PHONE, locale="zh-CN")  # type: ignore[arg-type]
    try:
        page.goto(f"{str(http.base_url).rstrip('/')}/reports/holiday/national_day/2025")
        assert page.locator("#total-visits").inner_text() == "185"
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        page.screenshot(path=ARTIFACTS / "report-holiday-390x844.png", full_page=True)
    finally:
        page.close()
