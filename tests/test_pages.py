"""The three pages in a real headless Chromium: phone (390x844), wall and dispatcher (1920x1080).

Figures are compared with what the test wrote to the real PostgreSQL; live updates arrive
over the Server-Sent Events stream without a reload; screenshots go to the ``screenshots``
folder for people to look at.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from db_rows import alert_message, insert_firing, put_status, put_zone
from playwright.sync_api import Browser, Page, Response, expect
from raw_rows import ZoneRow, insert_zones
from web_server import PASSWORD, Serve, web_config

from crowdwatch.storage.migrate import upgrade
from crowdwatch.storage.queries import AlertRow
from crowdwatch.storage.rollups import refresh_rollups

FIRST_LOAD_LIMIT = 100_000
PHONE = {"width": 390, "height": 844}
WALL = {"width": 1920, "height": 1080}


@pytest.fixture
def district(pg_server: Any, serve: Serve) -> Iterator[tuple[httpx.Client, str]]:
    """A served app on a database of its own (a test may drop it), with figures in it."""
    url = pg_server.create_database()
    try:
        config = web_config(url)
        upgrade(url, config)
        now = datetime.now(UTC)
        with psycopg.connect(url, autocommit=True) as conn:
            insert_zones(conn, [ZoneRow(now - timedelta(minutes=7), "beach-a", "north", 40)])
            refresh_rollups(conn)
            put_zone(conn, "beach-a", "north", 70, now, method="dense")  # 40 -> 70: rising
            put_zone(conn, "beach-a", "south", 90, now, method="detect")
            put_zone(conn, "stop-a", "platform", 12, now)
            put_zone(conn, "stop-b", "platform", 5, now)
            put_status(conn, "stop-b", "cam1", "offline", now)
        yield serve(config), url
    finally:
        pg_server.drop_database(url)


def new_page(browser: Browser, viewport: dict[str, int]) -> Page:
    return browser.new_page(viewport=viewport, locale="zh-CN")  # type: ignore[arg-type]


def fire(url: str, key: str = "stop-a/platform/crowded") -> AlertRow:
    """Write a firing alert as the alert engine would, now."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = insert_firing(conn, alert_message(key=key, ts=datetime.now(UTC)))
    assert row is not None
    return row


def compressed_size(http: httpx.Client, path: str) -> int:
    with http.stream("GET", path, headers={"Accept-Encoding": "gzip"}) as response:
        return sum(len(chunk) for chunk in response.iter_raw())


def test_phone_page_shows_the_database_live_and_keeps_figures_when_the_database_goes(
    district: tuple[httpx.Client, str], browser: Browser, screenshots: Path, pg_server: Any
) -> None:
    http, url = district
    loaded: list[int] = []

    def count_bytes(response: Response) -> None:
        if "event-stream" not in response.headers.get("content-type", ""):
            loaded.append(len(response.body()))

    page = new_page(browser, PHONE)
    page.on("response", count_bytes)
    try:
        page.goto(str(http.base_url))
        expect(page.locator("#site-beach-a .count")).to_have_text("160", timeout=10_000)
        expect(page.locator("#site-beach-a .pct")).to_have_text("80%")
        expect(page.locator("#zone-beach-a-north .zcount")).to_have_text("70")
        # A density-map count is marked as an estimate; a box count is not.
        expect(page.locator("#zone-beach-a-north .est")).to_have_text("估算 est.")
        expect(page.locator("#zone-beach-a-south .est")).to_have_count(0)
        expect(page.locator("#zone-beach-a-north .trend")).to_have_attribute("data-trend", "up")
        expect(page.locator("#site-stop-a .count")).to_have_text("12")
        # An offline camera is a warning, never "0 people".
        expect(page.locator("#site-stop-b .count")).to_have_text("–")
        expect(page.locator("#site-stop-b .warn")).to_contain_text("Camera offline")
        expect(page.locator("#cams")).to_contain_text("camera offline")
        assert page.locator("h2").first.inner_text().startswith("海滩")
        expect(page.locator("#mode")).to_have_attribute("data-mode", "live")
        # The first load: the page (decoded) plus the first state (as sent, gzip).
        first_load = sum(loaded) + compressed_size(http, "/api/state")
        assert first_load < FIRST_LOAD_LIMIT, f"first load {first_load} bytes"
        # Nothing wider than the phone: no sideways scrolling in the field.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.screenshot(path=screenshots / "phone-390x844.png", full_page=True)

        with psycopg.connect(url, autocommit=True) as conn:
            put_zone(conn, "stop-a", "platform", 41, datetime.now(UTC))
        expect(page.locator("#site-stop-a .count")).to_have_text("41", timeout=5_000)

        pg_server.drop_database(url)  # the database goes away under the page
        expect(page.locator("#banner")).to_contain_text("Database unavailable", timeout=10_000)
        expect(page.locator("#banner")).to_contain_text("showing figures from")
        expect(page.locator("#site-stop-a .count")).to_have_text("41")  # last known, kept
        page.screenshot(path=screenshots / "phone-390x844-database-down.png", full_page=True)
    finally:
        page.close()


# The edge's reasons, as crowdwatch.edge.plausibility words them.
IMPLAUSIBLE = (
    "implausible: 1167 people on 64 m² is 18.2 per m², more than the 6 that can stand there"
)
DARK = "unusable frame: too dark (mean 6/255)"
HELD_ZH = "读数异常，已保留上次读数"


def test_phone_page_marks_a_held_count_with_the_edges_reason_not_the_refused_number(
    district: tuple[httpx.Client, str], browser: Browser, screenshots: Path
) -> None:
    http, url = district
    now = datetime.now(UTC)
    with psycopg.connect(url, autocommit=True) as conn:
        put_zone(conn, "beach-a", "north", 45, now, "cam1", "dense", IMPLAUSIBLE, 1167)
        put_zone(conn, "stop-a", "platform", 12, now, count_flag=DARK)
    page = new_page(browser, PHONE)
    try:
        page.goto(str(http.base_url))
        north = page.locator("#zone-beach-a-north")
        # The last usable count, marked held, with the reason in both languages.
        expect(north.locator(".zcount")).to_have_text("45", timeout=10_000)
        expect(north.locator(".held")).to_have_text("保留 held")
        expect(north.locator(".zheld")).to_have_text(
            f"⚠ {HELD_ZH} · Reading refused, last count kept — {IMPLAUSIBLE}"
        )
        expect(page.locator("#zone-beach-a-south .held")).to_have_count(0)
        # The site's figure is the sum of what is shown (45 + 90), itself marked as holding one.
        expect(page.locator("#site-beach-a .count")).to_have_text("135")
        expect(page.locator("#site-beach-a .figure .held")).to_have_count(1)
        # The refused reading is in the reason, never shown as a count of its own.
        assert "1167" not in "".join(
            page.locator("#site-beach-a .count, .zcount").all_inner_texts()
        )
        # A one-zone site has no zone rows: its reason is on the card.
        expect(page.locator("#site-stop-a .count")).to_have_text("12")
        expect(page.locator("#site-stop-a .held-why")).to_have_text(
            f"⚠ {HELD_ZH} · Reading refused, last count kept — {DARK}"
        )
        expect(page.locator("#site-stop-b .held")).to_have_count(0)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.screenshot(path=screenshots / "phone-390x844-held-count.png", full_page=True)

        # The edge counts again: the mark goes with the next state, no reload.
        with psycopg.connect(url, autocommit=True) as conn:
            put_zone(conn, "beach-a", "north", 52, datetime.now(UTC), method="dense")
        expect(north.locator(".zcount")).to_have_text("52", timeout=5_000)
        expect(north.locator(".held")).to_have_count(0)
        expect(north.locator(".zheld")).to_have_count(0)
        expect(page.locator("#site-beach-a .held")).to_have_count(0)
        expect(page.locator("#site-stop-a .held-why")).to_contain_text(DARK)
    finally:
        page.close()


def test_wall_marks_a_held_section_with_its_reason(
    district: tuple[httpx.Client, str], browser: Browser, screenshots: Path
) -> None:
    http, url = district
    with psycopg.connect(url, autocommit=True) as conn:
        put_zone(
            conn, "beach-a", "north", 45, datetime.now(UTC), "cam1", "dense", IMPLAUSIBLE, 1167
        )
    page = new_page(browser, WALL)
    try:
        page.goto(f"{http.base_url}wall")
        section = page.locator("#section-beach-a-north")
        expect(section.locator(".count")).to_have_text("45", timeout=10_000)
        expect(section.locator(".held")).to_have_text("保留 held")
        expect(section.locator(".why")).to_have_text(f"{HELD_ZH} · Reading refused: {IMPLAUSIBLE}")
        expect(page.locator("#section-beach-a-south .held")).to_have_count(0)
        # The sites table marks the beach (reason in the tag's title: the row has no room).
        expect(page.locator("#wall-site-beach-a .held")).to_have_attribute(
            "title", f"{HELD_ZH} · Reading refused, last count kept — {IMPLAUSIBLE}"
        )
        expect(page.locator("#wall-site-beach-a .count")).to_have_text("135")
        page.screenshot(path=screenshots / "wall-1920x1080-held-count.png")
    finally:
        page.close()


def test_wall_page_shows_sites_queues_sections_and_alerts(
    district: tuple[httpx.Client, str], browser: Browser, screenshots: Path
) -> None:
    http, url = district
    row = fire(url)
    page = new_page(browser, WALL)
    try:
        page.goto(f"{http.base_url}wall")
        expect(page.locator("#wall-site-beach-a .count")).to_have_text("160", timeout=10_000)
        expect(page.locator("#queue-stop-a .waiting")).to_have_text("12")
        expect(page.locator("#queue-stop-b")).to_contain_text("offline")
        expect(page.locator("#section-beach-a-south .count")).to_have_text("90")
        expect(page.locator(f"#alert-{row.id}")).to_contain_text("Stop A platform: 45 people")
        expect(page.locator("#map circle")).to_have_count(3)

        with psycopg.connect(url, autocommit=True) as conn:
            put_zone(conn, "beach-a", "south", 95, datetime.now(UTC))
        expect(page.locator("#section-beach-a-south .count")).to_have_text("95", timeout=5_000)
        page.screenshot(path=screenshots / "wall-1920x1080.png")
    finally:
        page.close()


def test_dispatcher_logs_in_and_acknowledges_with_a_note_recorded_in_the_database(
    district: tuple[httpx.Client, str], browser: Browser, screenshots: Path
) -> None:
    http, url = district
    row = fire(url)
    page = new_page(browser, WALL)
    try:
        page.goto(f"{http.base_url}dispatch")
        expect(page.locator("#login")).to_be_visible(timeout=10_000)
        # Without a login, an acknowledge from the page is refused.
        refused = page.evaluate(
            """id => fetch("api/alerts/" + id + "/acknowledge", {method: "POST",
                 headers: {"Content-Type": "application/json"}, body: "{}"})
               .then(r => r.json().then(b => [r.status, b.error]))""",
            row.id,
        )
        assert refused == [401, "login required"]

        page.fill("#name", "li")
        page.fill("#password", "wrong password")
        page.click("#login-btn")
        expect(page.locator("#login-error")).to_contain_text("wrong name or password")
        page.fill("#password", PASSWORD)
        page.click("#login-btn")
        card = page.locator(f"#dalert-{row.id}")
        expect(card).to_contain_text("甲站 候车区: 45 人", timeout=10_000)
        expect(page.locator("#dqueue-stop-a .waiting")).to_have_text("12")
        page.screenshot(path=screenshots / "dispatch-1920x1080.png")

        card.locator("textarea.note").fill("已派 3 路加车 bus 3 sent")
        card.locator("button.ack").click()
        expect(page.locator(f"#dalert-{row.id} .ackinfo")).to_contain_text(
            "Acknowledged by li", timeout=10_000
        )
        expect(page.locator("#history")).to_contain_text("li: 已派 3 路加车 bus 3 sent")
        page.screenshot(path=screenshots / "dispatch-1920x1080-acknowledged.png")
    finally:
        page.close()

    with psycopg.connect(url, autocommit=True) as conn:
        recorded = conn.execute(
            "SELECT acknowledged_by, ack_note FROM alerts WHERE id = %s", (row.id,)
        ).fetchone()
        events = conn.execute(
            "SELECT kind, who FROM alert_events WHERE alert_id = %s ORDER BY id", (row.id,)
        ).fetchall()
    assert recorded == ("li", "已派 3 路加车 bus 3 sent")
    assert ("acknowledged", "li") in events


def test_a_note_being_typed_survives_the_alert_list_refreshing(
    district: tuple[httpx.Client, str], browser: Browser
) -> None:
    """Any alert changing rebuilds the dispatcher's list; a half-typed note must stay put."""
    http, url = district
    first = fire(url)
    page = new_page(browser, WALL)
    try:
        page.goto(f"{http.base_url}dispatch")
        page.fill("#name", "li")
        page.fill("#password", PASSWORD)
        page.click("#login-btn")
        note = page.locator(f"#dalert-{first.id} textarea.note")
        expect(note).to_be_visible(timeout=10_000)
        note.fill("已派 3 路")
        second = fire(url, "stop-b/platform/crowded")
        # The stream reports the new alert and the list is rebuilt around the typed note.
        expect(page.locator(f"#dalert-{second.id}")).to_be_visible(timeout=10_000)
        expect(note).to_have_value("已派 3 路")
        expect(note).to_be_focused()
        page.locator(f"#dalert-{first.id} button.ack").click()
        ackinfo = page.locator(f"#dalert-{first.id} .ackinfo")
        expect(ackinfo).to_contain_text("Acknowledged by li", timeout=10_000)
        expect(ackinfo).to_contain_text(": 已派 3 路")
        # Sent, so the rebuilt card's box is empty again.
        expect(note).to_have_value("")
    finally:
        page.close()
