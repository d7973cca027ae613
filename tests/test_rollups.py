"""Rollups on both storage paths: every bucket equals a direct aggregate of the raw rows.

The expected values are computed here in Python from the raw rows the database holds, at
each resolution, and compared with the rollup tables (plain PostgreSQL) or continuous
aggregates (TimescaleDB) and the site rollups after real refreshes.  Tests that only make
sense on one path say why.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from raw_rows import LineRow, ZoneRow, hour_ago, insert_lines, insert_zones
from services.waiting import wait_until

from crowdwatch.cli import main
from crowdwatch.contracts.messages import CountMessage, ZoneCount
from crowdwatch.ingest.validate import Accepted, Envelope
from crowdwatch.ingest.writer import BatchWriter
from crowdwatch.storage.migrate import upgrade
from crowdwatch.storage.rollups import ROLLUP_LOCK_KEY, RollupRefresher, refresh_rollups

EXAMPLE_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "district.example.yaml"
ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)
WIDTHS = {"1m": timedelta(minutes=1), "15m": timedelta(minutes=15), "1h": timedelta(hours=1)}
H = hour_ago(3)


def bucket_of(ts: datetime, width: timedelta) -> datetime:
    return ORIGIN + ((ts - ORIGIN) // width) * width


def steady(site: str, zone: str, start: datetime, minutes: int, base: int = 0) -> list[ZoneRow]:
    """One row every 5 s, counts that move, like a camera would send."""
    return [
        ZoneRow(
            start + timedelta(seconds=5 * i),
            site,
            zone,
            base + (i * 7) % 13,
            count_max=base + (i * 7) % 13 + 2,
            count_mean=base + ((i * 7) % 13) + 0.25,
        )
        for i in range(minutes * 12)
    ]


@dataclass(frozen=True)
class Case:
    name: str
    waves: list[list[ZoneRow]]
    """Inserted one after the other, with a refresh after each."""
    lines: list[LineRow]


def _late_case() -> Case:
    first = steady("stop-a", "platform", H + timedelta(minutes=10), 6)
    late = [
        # into buckets refreshed already, out of order
        ZoneRow(H + timedelta(minutes=11, seconds=2), "stop-a", "platform", 40, count_max=41),
        ZoneRow(H + timedelta(minutes=10, seconds=1), "stop-a", "platform", 0),
        # into a bucket nobody wrote before (an earlier hour)
        ZoneRow(H - timedelta(minutes=30), "stop-a", "platform", 5),
        # the newest row of a bucket arriving last changes count_last
        ZoneRow(H + timedelta(minutes=15, seconds=59), "stop-a", "platform", 33),
    ]
    return Case("late and out-of-order rows", [first, late], [])


def _edges_case() -> Case:
    edges = [
        H,
        H + timedelta(minutes=14, seconds=59, microseconds=999_999),
        H + timedelta(minutes=15),
    ]
    edges += [H + timedelta(minutes=59, seconds=59), H + timedelta(hours=1)]
    rows = [ZoneRow(ts, "stop-a", "platform", i + 1) for i, ts in enumerate(edges)]
    return Case(
        "rows on bucket edges", [rows], [LineRow(ts, "stop-a", "gate", 2, 1) for ts in edges]
    )


CASES = [
    Case(
        "in order, two sites, across an hour",
        [
            steady("stop-a", "platform", H + timedelta(minutes=50), 20)
            + steady("stop-a", "queue", H + timedelta(minutes=52), 10, base=20)
            + steady("stop-b", "platform", H + timedelta(minutes=55), 8, base=5)
        ],
        [
            LineRow(H + timedelta(minutes=50, seconds=5 * i), "stop-a", "gate", i % 4, i % 3)
            for i in range(240)
        ],
    ),
    _late_case(),
    _edges_case(),
    Case(
        "empty buckets stay absent",
        [
            [
                ZoneRow(H + timedelta(minutes=1), "stop-a", "platform", 4),
                ZoneRow(H + timedelta(minutes=7), "stop-a", "platform", 9),
            ]
        ],
        [],
    ),
    Case(
        "waiting time and density where present",
        [
            [
                ZoneRow(
                    H + timedelta(seconds=5 * i),
                    "stop-a",
                    "platform",
                    i,
                    longest_wait_s=None if i % 3 else 60.0 + i,
                    median_wait_s=None if i % 3 else 30.0 + i,
                    density_per_m2=None if i % 2 else 0.5 + i / 10,
                )
                for i in range(30)
            ]
        ],
        [],
    ),
    Case(
        "two rows with the same ts: the larger message id is the last",
        [
            [
                ZoneRow(H + timedelta(seconds=5), "stop-a", "platform", 2, message_id="tie-a"),
                ZoneRow(H + timedelta(seconds=5), "stop-a", "platform", 1, message_id="tie-b"),
                ZoneRow(H + timedelta(seconds=5), "stop-a", "queue", 1, message_id="tie-b"),
                ZoneRow(H + timedelta(seconds=5), "stop-a", "queue", 2, message_id="tie-a"),
            ]
        ],
        [],
    ),
    Case(
        "a redelivered message is counted once",
        [
            [ZoneRow(H + timedelta(seconds=10), "stop-a", "platform", 3, message_id="same-id-1")],
            [ZoneRow(H + timedelta(seconds=10), "stop-a", "platform", 30, message_id="same-id-1")],
        ],
        [],
    ),
]


def _raw_zone_rows(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT ts, site_id, zone_id, count, count_max, count_mean, message_id,"
        " longest_wait_s, median_wait_s, density_per_m2 FROM zone_counts"
    ).fetchall()


def expected_zone_buckets(
    raw: list[tuple[Any, ...]], width: timedelta
) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    groups: dict[tuple[Any, ...], list[tuple[Any, ...]]] = defaultdict(list)
    for row in raw:
        groups[(row[1], row[2], bucket_of(row[0], width))].append(row)
    out: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for key, rows in groups.items():
        newest = max(rows, key=lambda r: (r[0], r[6]))
        waits = [r[8] for r in rows if r[8] is not None]
        dens = [r[9] for r in rows if r[9] is not None]
        longest = [r[7] for r in rows if r[7] is not None]
        out[key] = (
            len(rows),
            max(r[4] for r in rows),
            pytest.approx(sum(r[5] for r in rows) / len(rows)),
            newest[3],
            newest[0],
            max(longest) if longest else None,
            pytest.approx(sum(waits) / len(waits)) if waits else None,
            max(dens) if dens else None,
            pytest.approx(sum(dens) / len(dens)) if dens else None,
        )
    return out


def actual_zone_buckets(
    conn: psycopg.Connection, suffix: str
) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    rows = conn.execute(
        f"SELECT site_id, zone_id, bucket, samples, count_max, count_mean_sum / samples,"
        f" count_last, last_ts, wait_max, wait_median_sum / nullif(wait_samples, 0),"
        f" density_max, density_sum / nullif(density_samples, 0) FROM zone_counts_{suffix}"
    ).fetchall()
    return {tuple(r[:3]): tuple(r[3:]) for r in rows}


def expected_site_buckets(
    zone_buckets: dict[tuple[Any, ...], tuple[Any, ...]],
) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """Per site and bucket: the sum of the zones' count_max, mean and last."""
    sums: dict[tuple[Any, ...], list[float]] = defaultdict(lambda: [0, 0, 0.0, 0])
    for (site, _zone, bucket), value in zone_buckets.items():
        acc = sums[(site, bucket)]
        acc[0] += 1
        acc[1] += value[1]
        acc[2] += value[2].expected
        acc[3] += value[3]
    return {k: (v[0], v[1], pytest.approx(v[2]), v[3]) for k, v in sums.items()}


def actual_site_buckets(
    conn: psycopg.Connection, suffix: str
) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    rows = conn.execute(
        f"SELECT site_id, bucket, zones, count_max, count_mean, count_last FROM site_counts_{suffix}"
    ).fetchall()
    return {(r[0], r[1]): tuple(r[2:]) for r in rows}


def line_buckets(
    conn: psycopg.Connection, suffix: str, width: timedelta
) -> tuple[dict[Any, Any], dict[Any, Any]]:
    expected: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0, 0])
    for ts, site, line, n_in, n_out in conn.execute(
        "SELECT ts, site_id, line_id, in_count, out_count FROM line_counts"
    ).fetchall():
        acc = expected[(site, line, bucket_of(ts, width))]
        acc[0] += 1
        acc[1] += n_in
        acc[2] += n_out
    actual = {
        tuple(r[:3]): list(r[3:])
        for r in conn.execute(
            f"SELECT site_id, line_id, bucket, samples, in_sum, out_sum FROM line_counts_{suffix}"
        ).fetchall()
    }
    return dict(expected), actual


@pytest.fixture
def rollup_db(db_url: str, timescale: bool) -> str:
    """A database migrated for each storage path in turn."""
    upgrade(db_url, timescale=timescale)
    return db_url


@pytest.fixture
def plain_db(db_url: str) -> str:
    upgrade(db_url, timescale=False)
    return db_url


@pytest.fixture
def timescale_db(db_url: str, timescale_problem: str) -> str:
    if timescale_problem:
        pytest.skip(timescale_problem)
    upgrade(db_url, timescale=True)
    return db_url


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_rollups_equal_a_direct_aggregate_of_raw_rows(rollup_db: str, case: Case) -> None:
    with psycopg.connect(rollup_db, autocommit=True) as conn:
        insert_lines(conn, case.lines)
        for wave in case.waves:
            insert_zones(conn, wave)
            refresh_rollups(conn)

        raw = _raw_zone_rows(conn)
        for suffix, width in WIDTHS.items():
            zones = expected_zone_buckets(raw, width)
            assert actual_zone_buckets(conn, suffix) == zones, suffix
            assert actual_site_buckets(conn, suffix) == expected_site_buckets(zones), suffix
            expected_lines, actual_lines = line_buckets(conn, suffix, width)
            assert actual_lines == expected_lines, suffix


def test_empty_buckets_are_not_invented(rollup_db: str) -> None:
    with psycopg.connect(rollup_db, autocommit=True) as conn:
        insert_zones(conn, CASES[3].waves[0])
        refresh_rollups(conn)
        buckets = conn.execute("SELECT bucket FROM zone_counts_1m ORDER BY bucket").fetchall()
    assert buckets == [(H + timedelta(minutes=1),), (H + timedelta(minutes=7),)]


def _snapshot(conn: psycopg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    tables = [f"{s}_{r}" for r in WIDTHS for s in ("zone_counts", "line_counts", "site_counts")]
    return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2, 3").fetchall() for t in tables}


def test_refresh_is_idempotent(rollup_db: str) -> None:
    case = CASES[0]
    with psycopg.connect(rollup_db, autocommit=True) as conn:
        insert_lines(conn, case.lines)
        insert_zones(conn, case.waves[0])
        first = refresh_rollups(conn)
        before = _snapshot(conn)

        again = refresh_rollups(conn)

        assert first.minutes == 20 + 20  # zone minutes 50-69 and line minutes 50-69
        assert again.minutes == 0
        assert _snapshot(conn) == before


def test_a_full_rebuild_from_the_log_changes_nothing(plain_db: str) -> None:
    """Plain PostgreSQL only: its invalidation log is ours to fill; TimescaleDB's is not."""
    case = CASES[0]
    with psycopg.connect(plain_db, autocommit=True) as conn:
        insert_lines(conn, case.lines)
        insert_zones(conn, case.waves[0])
        first = refresh_rollups(conn)
        before = _snapshot(conn)
        # Invalidate every bucket there is: a full rebuild must give the same tables.
        conn.execute(
            "INSERT INTO rollup_invalidations (source, bucket)"
            " SELECT DISTINCT 'zone_counts', date_bin('1 minute', ts, TIMESTAMPTZ '2000-01-01Z')"
            " FROM zone_counts UNION"
            " SELECT DISTINCT 'line_counts', date_bin('1 minute', ts, TIMESTAMPTZ '2000-01-01Z')"
            " FROM line_counts"
        )
        rebuilt = refresh_rollups(conn)

        assert rebuilt.minutes == first.minutes
        assert _snapshot(conn) == before
        assert conn.execute("SELECT count(*) FROM rollup_invalidations").fetchone() == (0,)


def test_a_second_refresher_steps_aside(rollup_db: str) -> None:
    with (
        psycopg.connect(rollup_db, autocommit=True) as holder,
        psycopg.connect(rollup_db, autocommit=True) as conn,
    ):
        insert_zones(conn, CASES[3].waves[0])
        with holder.transaction():
            holder.execute("SELECT pg_advisory_xact_lock(%s)", (ROLLUP_LOCK_KEY,))
            busy = refresh_rollups(conn)
        done = refresh_rollups(conn)
    assert busy.busy and busy.minutes == 0
    assert not done.busy and done.minutes == 2


def test_db_refresh_while_another_process_refreshes_says_so(
    rollup_db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CROWDWATCH_DATABASE_URL", rollup_db)
    with psycopg.connect(rollup_db, autocommit=True) as holder, holder.transaction():
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (ROLLUP_LOCK_KEY,))
        code = main(["db", "refresh", "--config", str(EXAMPLE_CONFIG)])
    assert code == 0
    assert "another process is refreshing them" in capsys.readouterr().out


def test_a_count_message_with_waiting_and_density_reaches_the_rollups(rollup_db: str) -> None:
    ts = H + timedelta(minutes=3, seconds=5)
    message = CountMessage(
        site_id="stop-a",
        camera_id="cam1",
        ts=ts,
        interval_s=5.0,
        frames=50,
        zones=[
            ZoneCount(
                zone_id="platform",
                count=12,
                count_max=14,
                count_mean=11.5,
                longest_wait_s=420.0,
                median_wait_s=180.0,
                density_per_m2=1.25,
            ),
            ZoneCount(zone_id="queue", count=3, count_max=3, count_mean=3.0),
        ],
    )
    writer = BatchWriter(rollup_db)
    try:
        envelope = Envelope("crowdwatch/v1/stop-a/cam1/counts", b"{}", datetime.now(UTC))
        assert writer.write([Accepted(envelope, message)]).rows_written == 2
    finally:
        writer.close()
    with psycopg.connect(rollup_db, autocommit=True) as conn:
        refresh_rollups(conn)
        latest = conn.execute(
            "SELECT zone_id, longest_wait_s, median_wait_s, density_per_m2 FROM zone_latest ORDER BY zone_id"
        ).fetchall()
        rollup = conn.execute(
            "SELECT zone_id, wait_max, wait_median_sum / nullif(wait_samples, 0), density_max"
            " FROM zone_counts_1h ORDER BY zone_id"
        ).fetchall()
    assert latest == [("platform", 420.0, 180.0, 1.25), ("queue", None, None, None)]
    assert rollup == [("platform", 420.0, 180.0, 1.25), ("queue", None, None, None)]


def test_the_refresher_thread_keeps_rollups_fresh(rollup_db: str) -> None:
    refresher = RollupRefresher(rollup_db, interval_s=0.1, retention_every_s=None)
    refresher.start()
    try:
        with psycopg.connect(rollup_db, autocommit=True) as conn:
            insert_zones(conn, [ZoneRow(H + timedelta(seconds=1), "stop-a", "platform", 8)])

            def rolled_up() -> bool:
                row = conn.execute("SELECT count_last FROM zone_counts_1h").fetchone()
                return row == (8,)

            assert wait_until(rolled_up)
    finally:
        refresher.stop()
    assert refresher.refreshes >= 1


# --- TimescaleDB only: what real-time aggregation and TimescaleDB's own refreshes add ------


def _minute_samples(conn: psycopg.Connection, table: str) -> dict[datetime, int]:
    rows = conn.execute(f"SELECT bucket, samples FROM {table} ORDER BY bucket").fetchall()
    return {r[0]: int(r[1]) for r in rows}


def test_the_bucket_being_filled_stays_real_time(timescale_db: str) -> None:
    """A refresh materialises complete buckets only: rows arriving later in the current
    minute (and hour) are seen at once, not after the next refresh."""
    now = H + timedelta(minutes=10, seconds=20)
    minute, hour = H + timedelta(minutes=10), H
    with psycopg.connect(timescale_db, autocommit=True) as conn:
        insert_zones(
            conn,
            [
                ZoneRow(H + timedelta(minutes=9), "stop-a", "platform", 1),
                ZoneRow(now - timedelta(seconds=5), "stop-a", "platform", 2),
            ],
        )
        refresh_rollups(conn, now=now)
        insert_zones(conn, [ZoneRow(now + timedelta(seconds=5), "stop-a", "platform", 3)])

        per_minute = _minute_samples(conn, "zone_counts_1m")
        per_hour = _minute_samples(conn, "zone_counts_1h")
        last = conn.execute(
            "SELECT count_last FROM zone_counts_1m WHERE bucket = %s", (minute,)
        ).fetchone()
    assert per_minute == {minute - timedelta(minutes=1): 1, minute: 2}
    assert per_hour == {hour: 3}
    assert last == (3,)


def test_a_row_ahead_of_the_clock_does_not_hide_the_minutes_before_it(timescale_db: str) -> None:
    now = H + timedelta(minutes=30, seconds=10)
    with psycopg.connect(timescale_db, autocommit=True) as conn:
        # Accepted up to 5 min ahead (a camera clock running fast).
        insert_zones(conn, [ZoneRow(now + timedelta(minutes=4), "stop-a", "platform", 7)])
        refresh_rollups(conn, now=now)
        insert_zones(conn, [ZoneRow(now + timedelta(minutes=1), "stop-a", "platform", 5)])

        per_minute = _minute_samples(conn, "zone_counts_1m")
    assert per_minute == {
        H + timedelta(minutes=31): 1,
        H + timedelta(minutes=34): 1,
    }


def test_a_refresh_running_elsewhere_makes_ours_step_aside(timescale_db: str) -> None:
    """TimescaleDB refuses a refresh whose window overlaps one in progress (a policy job, a
    tool run by hand): that is ``busy``, not an error, and the next round does the work."""
    with (
        psycopg.connect(timescale_db, autocommit=True) as other,
        psycopg.connect(timescale_db, autocommit=True) as conn,
    ):
        insert_zones(conn, CASES[3].waves[0])
        # What TimescaleDB records while the policy job of zone_counts_1m refreshes it: the
        # window, the job, and the backend running it (a live one, or the entry would be
        # cleared as stale).
        other_pid = other.execute("SELECT pg_backend_pid()").fetchone()
        conn.execute(
            "INSERT INTO _timescaledb_catalog.continuous_aggs_jobs_refresh_ranges"
            " (materialization_id, start_range, end_range, pid, job_id, created_at)"
            " SELECT (config->>'mat_hypertable_id')::integer, -9223372036854775808,"
            " 9223372036854775807, %s, job_id, now() FROM timescaledb_information.jobs"
            " WHERE proc_name = 'policy_refresh_continuous_aggregate'"
            " AND hypertable_name = 'zone_counts_1m'",
            (other_pid[0] if other_pid else None,),
        )
        busy = refresh_rollups(conn)
        conn.execute("DELETE FROM _timescaledb_catalog.continuous_aggs_jobs_refresh_ranges")
        done = refresh_rollups(conn)
        got = conn.execute("SELECT count(*) FROM zone_counts_1m").fetchone()
    assert busy.busy and busy.minutes == 0
    assert not done.busy and done.minutes == 2
    assert got == (2,)


def test_rollups_over_several_days_aggregate_like_one(rollup_db: str) -> None:
    """Rows of several days (several TimescaleDB chunks, aggregated chunk by chunk and the
    partial states combined) give the same buckets as one day's."""
    midnight = H.replace(hour=0) - timedelta(days=1)
    rows = [
        row
        for z in range(3)
        for start in (midnight - timedelta(minutes=10), midnight + timedelta(days=1, minutes=-5))
        for row in steady("stop-a", f"zone-{z}", start, 15, base=z)
    ]
    with psycopg.connect(rollup_db, autocommit=True) as conn:
        insert_zones(conn, rows)
        refresh_rollups(conn)

        raw = _raw_zone_rows(conn)
        for suffix, width in WIDTHS.items():
            assert actual_zone_buckets(conn, suffix) == expected_zone_buckets(raw, width), suffix
