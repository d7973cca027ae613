"""Series, reference-day comparison and daily totals, on the real PostgreSQL, both storage
paths (rollup tables, and TimescaleDB's continuous aggregates where the server has it)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from raw_rows import LineRow, ZoneRow, hour_ago, insert_lines, insert_zones

from crowdwatch.storage.migrate import upgrade
from crowdwatch.storage.queries import (
    DailyTotal,
    Resolution,
    choose_resolution,
    compare_with_reference_day,
    daily_resolution,
    daily_totals,
    latest_zone_counts,
    reference_series,
    site_series,
    zone_series,
)
from crowdwatch.storage.rollups import refresh_rollups

SHANGHAI = "Asia/Shanghai"
H = hour_ago(3)


@pytest.fixture
def conn(db_url: str, timescale: bool) -> Iterator[psycopg.Connection]:
    upgrade(db_url, timescale=timescale)
    with psycopg.connect(db_url, autocommit=True) as connection:
        yield connection


@pytest.mark.parametrize(
    ("span", "expected"),
    [
        (timedelta(minutes=30), Resolution.RAW),
        (timedelta(hours=2) - timedelta(seconds=1), Resolution.RAW),
        (timedelta(hours=2), Resolution.MINUTE),
        (timedelta(hours=23), Resolution.MINUTE),
        (timedelta(days=1), Resolution.QUARTER_HOUR),
        (timedelta(days=13), Resolution.QUARTER_HOUR),
        (timedelta(days=14), Resolution.HOUR),
        (timedelta(days=30), Resolution.HOUR),
    ],
)
def test_resolution_follows_the_time_range(span: timedelta, expected: Resolution) -> None:
    assert choose_resolution(H, H + span) == expected


def ten_minutes(zone: str = "platform", base: int = 0) -> list[ZoneRow]:
    """Ten minutes from H, a row every 5 s; count = base + minute."""
    return [
        ZoneRow(
            H + timedelta(seconds=5 * i), "stop-a", zone, base + i // 12, count_max=base + 50 + i
        )
        for i in range(120)
    ]


@pytest.mark.parametrize(
    ("start", "end", "resolution", "points", "last_max"),
    [
        (H, H + timedelta(hours=1), Resolution.RAW, 120, 169),
        (H - timedelta(hours=3), H + timedelta(hours=3), Resolution.MINUTE, 10, 169),
        (H - timedelta(days=2), H + timedelta(days=1), Resolution.QUARTER_HOUR, 1, 169),
        (H - timedelta(days=20), H + timedelta(hours=1), Resolution.HOUR, 1, 169),
    ],
)
def test_zone_series_at_the_chosen_resolution(
    conn: psycopg.Connection,
    start: datetime,
    end: datetime,
    resolution: Resolution,
    points: int,
    last_max: int,
) -> None:
    insert_zones(conn, ten_minutes())
    refresh_rollups(conn)

    series = zone_series(conn, "stop-a", "platform", start, end)

    assert series.resolution == resolution
    assert len(series.points) == points
    assert [p.ts for p in series.points] == sorted(p.ts for p in series.points)
    assert series.points[-1].count_max == last_max
    assert sum(p.samples for p in series.points) == 120
    assert series.points[-1].count_last == 9


def test_zone_series_minute_values(conn: psycopg.Connection) -> None:
    insert_zones(conn, ten_minutes())
    refresh_rollups(conn)

    # The bucket containing start is included: 00:30 starts inside minute 0.
    series = zone_series(
        conn,
        "stop-a",
        "platform",
        H + timedelta(seconds=30),
        H + timedelta(minutes=3),
        Resolution.MINUTE,
    )

    assert [(p.ts, p.count_last, p.count_mean, p.count_max, p.samples) for p in series.points] == [
        (H + timedelta(minutes=m), m, float(m), 50 + 12 * m + 11, 12) for m in range(3)
    ]


def test_site_series_sums_its_zones_and_never_uses_raw_rows(conn: psycopg.Connection) -> None:
    insert_zones(conn, ten_minutes("platform") + ten_minutes("queue", base=100))
    refresh_rollups(conn)

    series = site_series(conn, "stop-a", H, H + timedelta(minutes=30))

    assert series.resolution == Resolution.MINUTE
    assert [(p.count_last, p.count_mean, p.samples) for p in series.points] == [
        (100 + 2 * m, 100.0 + 2 * m, 24) for m in range(10)
    ]


def _window(at: datetime, count: int, zone: str = "platform") -> list[ZoneRow]:
    """Rows every 30 s over the 15 minutes before ``at``."""
    return [ZoneRow(at - timedelta(seconds=30 * (i + 1)), "stop-a", zone, count) for i in range(30)]


def test_comparison_with_the_same_local_time_on_a_reference_day(conn: psycopg.Connection) -> None:
    at = H + timedelta(minutes=20)
    holiday = (at.astimezone(ZoneInfo(SHANGHAI)) - timedelta(days=6)).date()
    same_time = datetime.combine(
        holiday, at.astimezone(ZoneInfo(SHANGHAI)).time(), tzinfo=ZoneInfo(SHANGHAI)
    )
    insert_zones(conn, _window(at, 10) + _window(same_time, 40))
    insert_zones(conn, _window(at, 3, zone="queue"))
    # Just after the reference window: must not count.
    insert_zones(conn, [ZoneRow(same_time + timedelta(minutes=2), "stop-a", "platform", 500)])
    refresh_rollups(conn)

    rows = compare_with_reference_day(conn, at, holiday, SHANGHAI)

    assert [
        (r.zone_id, r.now_mean, r.now_max, r.reference_mean, r.reference_max) for r in rows
    ] == [
        ("platform", 10.0, 10, 40.0, 40),
        ("queue", 3.0, 3, None, None),
    ]
    assert compare_with_reference_day(conn, at, holiday, SHANGHAI, site_id="stop-a") == rows
    assert compare_with_reference_day(conn, at, holiday, SHANGHAI, site_id="stop-x") == []


def test_reference_series_plots_on_the_compared_range(conn: psycopg.Connection) -> None:
    at = H + timedelta(minutes=20)
    holiday = (at.astimezone(ZoneInfo(SHANGHAI)) - timedelta(days=6)).date()
    same_time = datetime.combine(
        holiday, at.astimezone(ZoneInfo(SHANGHAI)).time(), tzinfo=ZoneInfo(SHANGHAI)
    )
    insert_zones(conn, _window(same_time, 40))
    refresh_rollups(conn)

    start, end = at - timedelta(minutes=15), at
    ref = reference_series(
        conn,
        "stop-a",
        start,
        end,
        holiday,
        SHANGHAI,
        zone_id="platform",
        resolution=Resolution.MINUTE,
    )
    site_ref = reference_series(conn, "stop-a", start, end, holiday, SHANGHAI)

    assert [p.ts for p in ref.points] == [start + timedelta(minutes=m) for m in range(15)]
    assert {p.count_last for p in ref.points} == {40}
    assert site_ref.resolution == Resolution.MINUTE
    assert [p.ts for p in site_ref.points] == [p.ts for p in ref.points]


DAY = datetime.now(UTC).date() - timedelta(days=3)
LOCAL_MIDNIGHT = datetime.combine(DAY, time(16), tzinfo=UTC)  # 00:00 of DAY+1 in Shanghai


@pytest.mark.parametrize(
    ("tz", "expected"),
    [
        (
            SHANGHAI,
            [
                DailyTotal(DAY, "stop-a", 3, 1, 7),
                DailyTotal(DAY + timedelta(days=1), "stop-a", 9, 4, 12),
            ],
        ),
        ("UTC", [DailyTotal(DAY, "stop-a", 12, 5, 12)]),
    ],
)
@pytest.mark.parametrize("resolution", [None, Resolution.QUARTER_HOUR, Resolution.HOUR])
def test_daily_totals_split_at_local_midnight(
    conn: psycopg.Connection,
    tz: str,
    expected: list[DailyTotal],
    resolution: Resolution | None,
) -> None:
    before, at, after = (
        LOCAL_MIDNIGHT - timedelta(seconds=5),
        LOCAL_MIDNIGHT,
        LOCAL_MIDNIGHT + timedelta(seconds=5),
    )
    insert_lines(
        conn,
        [
            LineRow(before, "stop-a", "gate", 3, 1),
            LineRow(at, "stop-a", "gate", 4, 2),
            LineRow(after, "stop-a", "exit", 5, 2),
        ],
    )
    insert_zones(
        conn,
        [
            ZoneRow(before, "stop-a", "platform", 6, count_max=7),
            ZoneRow(at, "stop-a", "platform", 10, count_max=12),
            ZoneRow(after, "stop-a", "platform", 2, count_max=3),
        ],
    )
    refresh_rollups(conn)

    first, last = DAY - timedelta(days=1), DAY + timedelta(days=2)
    r = resolution
    assert daily_totals(conn, first, last, tz, resolution=r) == expected
    assert daily_totals(conn, first, last, tz, site_id="stop-a", resolution=r) == expected
    assert daily_totals(conn, first, last, tz, site_id="stop-b", resolution=r) == []
    # A range that ends before local midnight leaves the next day out.
    assert daily_totals(conn, DAY, DAY, tz, resolution=r) == expected[:1]


def test_daily_totals_leave_out_the_lines_by_class(conn: psycopg.Connection) -> None:
    # A bus line beside the all-vehicle line counts a part of the same traffic: summed,
    # the buses would be counted twice.
    insert_lines(
        conn,
        [
            LineRow(LOCAL_MIDNIGHT - timedelta(hours=2), "stop-a", "gate", 30, 20),
            LineRow(LOCAL_MIDNIGHT - timedelta(hours=2), "stop-a", "gate-bus", 2, 1),
        ],
    )
    refresh_rollups(conn)

    every = daily_totals(conn, DAY, DAY, SHANGHAI)
    assert [(t.crossings_in, t.crossings_out) for t in every] == [(32, 21)]
    for site_id in (None, "stop-a"):
        left = daily_totals(
            conn, DAY, DAY, SHANGHAI, site_id=site_id, left_out=[("stop-a", "gate-bus")]
        )
        assert [(t.crossings_in, t.crossings_out) for t in left] == [(30, 20)]
    # Only that site's line of that name: another site's "gate-bus" is not this one.
    other = daily_totals(conn, DAY, DAY, SHANGHAI, left_out=[("stop-b", "gate-bus")])
    assert [(t.crossings_in, t.crossings_out) for t in other] == [(32, 21)]


@pytest.mark.parametrize(
    ("tz", "expected"),
    [
        (SHANGHAI, Resolution.HOUR),
        ("UTC", Resolution.HOUR),
        ("Asia/Kolkata", Resolution.QUARTER_HOUR),  # UTC+5:30
        ("Asia/Kathmandu", Resolution.QUARTER_HOUR),  # UTC+5:45
    ],
)
def test_daily_totals_read_whole_buckets_of_the_local_day(tz: str, expected: Resolution) -> None:
    assert daily_resolution(tz, DAY, DAY + timedelta(days=6)) == expected


def test_latest_counts_carry_waiting_time_and_density(conn: psycopg.Connection) -> None:
    conn.execute(
        "INSERT INTO zone_latest (site_id, zone_id, camera_id, ts, count, count_max, count_mean,"
        " longest_wait_s, median_wait_s, density_per_m2)"
        " VALUES ('stop-a', 'platform', 'cam1', %s, 4, 5, 4.5, 300, 120, 0.75),"
        " ('stop-a', 'queue', 'cam1', %s, 1, 1, 1, NULL, NULL, NULL)",
        (H, H),
    )

    rows = latest_zone_counts(conn)

    assert [(r.zone_id, r.longest_wait_s, r.median_wait_s, r.density_per_m2) for r in rows] == [
        ("platform", 300.0, 120.0, 0.75),
        ("queue", None, None, None),
    ]
