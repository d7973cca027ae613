"""Visitor figures and comparisons on both storage paths, against a hand-computed reference.

The history and its hand computation are in ``tests/report_history.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest
from db_rows import alert_message, insert_firing
from factories import make_config
from raw_rows import insert_lines, insert_zones
from report_history import (
    ALERTS,
    DAY,
    EXPECTED_BEACH,
    EXPECTED_DEPARTMENTS,
    EXPECTED_ROAD,
    EXPECTED_SPOT,
    EXPECTED_STOP,
    EXPECTED_TOTAL_LAST_YEAR,
    line_rows,
    report_config_dict,
    zone_rows,
)

from crowdwatch.contracts.config import CrowdwatchConfig, RetentionConfig
from crowdwatch.dashboards.api_schema import DailyReportOut
from crowdwatch.reports.daily import build_daily_report, report_json
from crowdwatch.storage.migrate import upgrade
from crowdwatch.storage.rollups import refresh_rollups

NOW = datetime(2026, 12, 1, tzinfo=UTC)
KEEP_ALL = RetentionConfig(raw_days=3650, rollup_days=36500)


@pytest.fixture
def config() -> CrowdwatchConfig:
    return make_config(report_config_dict())


@pytest.fixture
def conn(db_url: str, timescale: bool, config: CrowdwatchConfig) -> Iterator[psycopg.Connection]:
    upgrade(db_url, config, timescale=timescale)
    with psycopg.connect(db_url, autocommit=True) as connection:
        insert_zones(connection, zone_rows())
        insert_lines(connection, line_rows())
        for key, started, ack_after_min in ALERTS:
            row = insert_firing(connection, alert_message(key, ts=started))
            assert row is not None
            if ack_after_min is not None:
                connection.execute(
                    "UPDATE alerts SET acknowledged_at = started_at + %s * INTERVAL '1 minute'"
                    " WHERE id = %s",
                    (ack_after_min, row.id),
                )
        refresh_rollups(connection, retention=KEEP_ALL, now=NOW)
        yield connection


def _subset(found: dict[str, object], expected: dict[str, object]) -> dict[str, object]:
    return {key: found[key] for key in expected}


def test_beach_visits_are_estimated_from_occupancy_and_compared(
    conn: psycopg.Connection, config: CrowdwatchConfig
) -> None:
    body = report_json(build_daily_report(conn, config, DAY, now=NOW))
    beach = next(s for s in body["sites"] if s["site_id"] == "beach-a")
    assert _subset(beach, EXPECTED_BEACH) == EXPECTED_BEACH


def test_a_site_with_lines_counts_entries_inside_the_local_day(
    conn: psycopg.Connection, config: CrowdwatchConfig
) -> None:
    body = report_json(build_daily_report(conn, config, DAY, now=NOW))
    spot = next(s for s in body["sites"] if s["site_id"] == "spot-b")
    assert _subset(spot, EXPECTED_SPOT) == EXPECTED_SPOT


def test_district_total_and_day_label(conn: psycopg.Connection, config: CrowdwatchConfig) -> None:
    body = report_json(build_daily_report(conn, config, DAY, now=NOW))
    assert body["total_visits"] == 76
    assert body["total_comparisons"]["last_year"] == EXPECTED_TOTAL_LAST_YEAR
    assert (body["day_kind"], body["holiday"], body["holiday_day"]) == (
        "holiday",
        "national_day",
        3,
    )
    assert [s["site_id"] for s in body["sites"]] == ["beach-a", "spot-b"]


def test_the_next_day_gets_the_midnight_rows(
    conn: psycopg.Connection, config: CrowdwatchConfig
) -> None:
    body = report_json(build_daily_report(conn, config, DAY.replace(day=4), now=NOW))
    beach = next(s for s in body["sites"] if s["site_id"] == "beach-a")
    spot = next(s for s in body["sites"] if s["site_id"] == "spot-b")
    assert (beach["person_hours"], beach["peak"], beach["peak_local"]) == (17.5, 70, "00:00")
    assert (spot["entries"], spot["exits"]) == (100, 0)


def test_busiest_stop_and_alerts_by_department(
    conn: psycopg.Connection, config: CrowdwatchConfig
) -> None:
    body = report_json(build_daily_report(conn, config, DAY, now=NOW))
    [stop] = body["stops"]
    assert _subset(stop, EXPECTED_STOP) == EXPECTED_STOP
    assert stop["visits"] is None  # a bus stop has no mean stay: no visit estimate
    departments = [
        {k: d[k] for k in ("department", "alerts", "acknowledged", "median_ack_min")}
        for d in body["departments"]
    ]
    assert departments == EXPECTED_DEPARTMENTS


def test_a_road_is_graded_per_minute_by_its_slowest_direction(
    conn: psycopg.Connection, config: CrowdwatchConfig
) -> None:
    body = report_json(build_daily_report(conn, config, DAY, now=NOW))
    [road] = body["roads"]
    assert road["site_id"] == "road-d"
    assert road["congestion"] == EXPECTED_ROAD
    assert [lv["id"] for lv in body["congestion_levels"]] == list(EXPECTED_ROAD["minutes_at"])
    # bus stops and beaches have no congestion: people occupancy says nothing of a jam
    assert all("congestion" not in s for s in body["sites"] + body["stops"])
    DailyReportOut.model_validate(body)  # the OpenAPI schema states the road's figures


def test_a_road_minute_counts_on_the_local_day_of_its_bucket(
    conn: psycopg.Connection, config: CrowdwatchConfig
) -> None:
    body = report_json(build_daily_report(conn, config, DAY.replace(day=4), now=NOW))
    [road] = body["roads"]
    congestion = road["congestion"]
    assert congestion["minutes_at"] == {
        "smooth": 0,
        "mostly_smooth": 0,
        "light": 0,
        "moderate": 0,
        "severe": 1,
    }
    assert (congestion["worst_local"], congestion["minutes_no_data"]) == ("00:00", 1439)
