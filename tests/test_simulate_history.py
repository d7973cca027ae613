"""``crowdwatch simulate --history``: a seeded past whose report equals a hand computation.

The reference is computed here in Python from the raw rows the history wrote (not from the
rollups the report reads), on both storage paths.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from factories import approach_road_dict, config_dict, make_config, write_config

from crowdwatch.cli import main
from crowdwatch.contracts.config import CrowdwatchConfig, SiteKind, load_config
from crowdwatch.contracts.errors import StorageError
from crowdwatch.reports.daily import build_daily_report, report_json
from crowdwatch.simulator.history import fill_history
from crowdwatch.storage.migrate import upgrade

EXAMPLE = Path(__file__).resolve().parents[1] / "configs" / "district.example.yaml"
DAY = date(2025, 10, 3)  # National Day day 3
LAST_YEAR = date(2024, 10, 3)
TZ = ZoneInfo("Asia/Shanghai")


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


@pytest.fixture(scope="module")
def config() -> CrowdwatchConfig:
    return load_config(EXAMPLE)


@pytest.fixture
def conn(db_url: str, timescale: bool, config: CrowdwatchConfig) -> Iterator[psycopg.Connection]:
    upgrade(db_url, config, timescale=timescale)
    fill_history(config, db_url, _days(date(2024, 10, 1), date(2024, 10, 7)), seed=7)
    fill_history(config, db_url, _days(date(2025, 9, 26), date(2025, 10, 4)), seed=8)
    with psycopg.connect(db_url, autocommit=True) as connection:
        yield connection


def _by_hand(conn: psycopg.Connection, config: CrowdwatchConfig, day: date) -> dict[str, Any]:
    """Each site's figures on ``day`` straight from the raw rows, as the docs define them."""
    start = datetime.combine(day, datetime.min.time(), tzinfo=TZ)
    end = start + timedelta(days=1)
    means: dict[tuple[str, datetime], float] = defaultdict(float)
    peaks: dict[tuple[str, datetime], int] = defaultdict(int)
    for site_id, ts, mean, peak in conn.execute(
        "SELECT site_id, ts, count_mean, count_max FROM zone_counts WHERE ts >= %s AND ts < %s",
        (start, end),
    ):
        means[(site_id, ts)] += mean
        peaks[(site_id, ts)] += peak
    entries: dict[str, int] = defaultdict(int)
    # A line by class counts a part of another line's crossings: not an entry of its own.
    by_class = {pair for site in config.sites for pair in site.lines_by_class()}
    assert ("road-tunnel-exit", "exit-line-bus") in by_class
    for site_id, line_id, n in conn.execute(
        "SELECT site_id, line_id, sum(in_count) FROM line_counts WHERE ts >= %s AND ts < %s"
        " GROUP BY 1, 2",
        (start, end),
    ):
        if (site_id, line_id) not in by_class:
            entries[site_id] += int(n)
    out = {}
    for site in config.sites:
        steps = sorted((ts, m) for (s, ts), m in means.items() if s == site.id)
        person_hours = sum(m for _, m in steps) * 0.25
        stay = config.reports.mean_stay_min.get(site.kind.value)
        has_lines = any(c.lines for c in site.cameras)
        if has_lines:
            visits = entries[site.id]
        else:
            visits = None if stay is None else round(person_hours / (stay / 60))
        peak_ts, peak = max(
            ((ts, p) for (s, ts), p in peaks.items() if s == site.id),
            key=lambda x: (x[1], -x[0].timestamp()),
        )
        out[site.id] = {
            "visits": visits,
            "person_hours": person_hours,
            "peak": peak,
            "peak_at": peak_ts.astimezone(UTC).replace(second=0),
            "minutes_above": {
                level.id: 15 * sum(1 for _, m in steps if m >= level.at * site.capacity)
                for level in config.reports.levels
            },
        }
    return out


def test_report_on_simulated_history_equals_the_hand_computation(
    conn: psycopg.Connection, config: CrowdwatchConfig
) -> None:
    body = report_json(build_daily_report(conn, config, DAY))
    today, before = _by_hand(conn, config, DAY), _by_hand(conn, config, LAST_YEAR)
    found = {s["site_id"]: s for s in body["sites"] + body["stops"] + body["roads"]}
    assert set(found) == {s.id for s in config.sites}
    for site_id, expected in today.items():
        site = found[site_id]
        assert site["visits"] == expected["visits"], site_id
        assert site["person_hours"] == pytest.approx(expected["person_hours"], abs=2e-3), site_id
        assert site["peak"] == expected["peak"], site_id
        assert site["peak_at"] == expected["peak_at"].isoformat().replace("+00:00", "Z"), site_id
        assert site["minutes_above"] == expected["minutes_above"], site_id
    for site in body["sites"]:
        now, then = today[site["site_id"]]["visits"], before[site["site_id"]]["visits"]
        assert site["comparisons"]["last_year"] == {
            "day": "2024-10-03",
            "visits": then,
            "change_pct": round((now - then) / then * 100, 1),
        }
    # previous holiday (Dragon Boat 2025) is outside the history: no figure, no percentage
    assert all(s["comparisons"]["previous_holiday"]["visits"] is None for s in body["sites"])
    # the ordinary weekend before (Sat 27 Sep; Sun 28 Sep was worked) is inside it
    weekend = [s["comparisons"]["ordinary_weekend"] for s in body["sites"]]
    assert all(w["day"] == "2025-09-27" and w["visits"] for w in weekend)


def test_the_history_looks_like_holidays_and_growth(
    conn: psycopg.Connection, config: CrowdwatchConfig
) -> None:
    body = report_json(build_daily_report(conn, config, DAY))
    beaches = [s for s in body["sites"] if s["kind"] == SiteKind.BEACH.value]
    assert beaches and all(s["visits_estimated"] for s in beaches)
    # a holiday fills beaches more than the ordinary weekend before it, on every beach
    assert all(s["comparisons"]["ordinary_weekend"]["change_pct"] > 0 for s in beaches)
    # the full curve takes the beaches past their yellow level for hours
    assert max(s["minutes_above"]["yellow"] for s in beaches) >= 120


def test_past_days_of_roads_have_vehicles_speeds_and_jams(
    conn: psycopg.Connection, config: CrowdwatchConfig
) -> None:
    body = report_json(build_daily_report(conn, config, DAY))
    roads = {r["site_id"]: r["congestion"] for r in body["roads"]}
    assert roads and set(roads) == {s.id for s in config.sites if s.kind is SiteKind.ROAD}
    for site_id, congestion in roads.items():
        # A row every 5 minutes over the opening hours (06:00-22:00): each of them graded.
        assert congestion["minutes_total"] - congestion["minutes_no_data"] == 16 * 12, site_id
        # National Day's peaks jam the road for a while, and it flows again outside them.
        assert congestion["minutes_severe"] >= 6, site_id
        assert congestion["minutes_at"]["smooth"] >= 12, site_id
    local = "(ts AT TIME ZONE 'Asia/Shanghai')"
    rows = conn.execute(
        f"SELECT site_id, extract(hour FROM {local})::int, avg(vehicles)::float,"
        " avg(mean_speed_kmh)::float, count(vehicle_density) FROM zone_counts"
        f" WHERE {local}::date = %s AND vehicles IS NOT NULL GROUP BY 1, 2",
        (DAY,),
    ).fetchall()
    hourly = {(site, hour): (cars, speed, dense) for site, hour, cars, speed, dense in rows}
    for site_id in roads:
        # Inbound morning and outbound evening peaks: more vehicles, slower, than at 6:00.
        for peak in (9, 17):
            assert hourly[(site_id, peak)][0] > 2 * hourly[(site_id, 6)][0], (site_id, peak)
            assert hourly[(site_id, peak)][1] < hourly[(site_id, 6)][1] / 2, (site_id, peak)
    # The example's tunnel-exit carriageway has lanes: its density is written too.
    with_density = {s: sum(v[2] for (site, _), v in hourly.items() if site == s) for s in roads}
    assert with_density == {"road-tunnel-exit": 16 * 12, "road-coastal-gate": 16 * 12}


def test_history_twice_over_one_range_is_refused(
    conn: psycopg.Connection, config: CrowdwatchConfig, db_url: str
) -> None:
    with pytest.raises(StorageError, match="already holds simulated history"):
        fill_history(config, db_url, [date(2025, 10, 1)])


def test_cli_writes_history_and_renders_the_report(
    db_url: str,
    config: CrowdwatchConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write_config(config, tmp_path / "district.yaml")
    monkeypatch.setenv("CROWDWATCH_DATABASE_URL", db_url)
    assert main(["simulate", "-c", str(path), "--history", "3", "--until", "2025-10-03"]) == 0
    assert "simulated history of 3 days 2025-10-01..2025-10-03" in capsys.readouterr().out
    out = tmp_path / "out"
    assert (
        main(["reports", "render", "-c", str(path), "--day", "2025-10-03", "--out", str(out)]) == 0
    )
    assert (out / "report-2025-10-03.png").read_bytes()[:4] == b"\x89PNG"
    rows = (out / "report-2025-10-03.csv").read_text(encoding="utf-8-sig").splitlines()
    assert len(rows) == 1 + len(config.sites)


def test_compared_days_of_a_week_in_golden_week(config: CrowdwatchConfig) -> None:
    from crowdwatch.reports.holidays import HolidayCalendar
    from crowdwatch.simulator.history import compared_days

    days = compared_days(HolidayCalendar(), date(2025, 10, 3), back=2)
    # reports of 1-3 Oct 2025: National Day 2024 days 1-3, Dragon Boat 2025 days 1-3
    # (31 May - 2 Jun: the period before National Day's), Sat 27 Sep (Sun 28 Sep was worked)
    assert days == [
        date(2024, 10, 1),
        date(2024, 10, 2),
        date(2024, 10, 3),
        date(2025, 5, 31),
        date(2025, 6, 1),
        date(2025, 6, 2),
        date(2025, 9, 27),
    ]


def test_history_of_a_stop_line_s_approach_has_its_queue(db_url: str, timescale: bool) -> None:
    # The approach runs 99.2 m back from the stop line; its 2 lanes hold 30 vehicles standing.
    config = make_config(config_dict(approach_road_dict()))
    upgrade(db_url, config, timescale=timescale)
    fill_history(config, db_url, [DAY], seed=3)
    local = "(ts AT TIME ZONE 'Asia/Shanghai')"
    with psycopg.connect(db_url) as conn:
        raw_rows = conn.execute(
            f"SELECT extract(hour FROM {local})::int, max(queue_length_m)::float,"
            " count(*) - count(queue_length_m) FROM zone_counts GROUP BY 1"
        ).fetchall()
        rolled = conn.execute(
            "SELECT extract(hour FROM (bucket AT TIME ZONE 'Asia/Shanghai'))::int,"
            " max(queue_max)::float FROM zone_counts_15m GROUP BY 1"
        ).fetchall()
    longest = {hour: queue for hour, queue, _ in raw_rows}
    assert all(missing == 0 for _, _, missing in raw_rows)  # every row of the approach has one
    assert max(longest.values()) <= 99.2
    # National Day's inbound and outbound peaks queue back over most of the approach; at
    # opening time a red light holds a few cars.
    assert longest[9] >= 50.0 and longest[17] >= 50.0
    assert longest[6] < 25.0
    # The rollups carry the longest queue (max), as the reports and Grafana read it.
    assert dict(rolled) == pytest.approx(longest)
