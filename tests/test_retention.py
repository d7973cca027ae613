"""Retention on both storage paths: whole raw days dropped, old rollups deleted, nothing else.

Plain PostgreSQL drops day partitions; TimescaleDB drops day chunks and keeps its retention
policies (created once, replaced only when the limits change).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from factories import make_config
from raw_rows import ZoneRow, insert_zones

from crowdwatch.cli import main
from crowdwatch.contracts.config import RetentionConfig
from crowdwatch.contracts.db_schema import TIME_SERIES_TABLES
from crowdwatch.contracts.errors import ConfigError
from crowdwatch.storage.migrate import upgrade
from crowdwatch.storage.partitions import ensure_daily_partitions, partition_name
from crowdwatch.storage.retention import ROLLUP_TABLES, apply_retention
from crowdwatch.storage.rollups import refresh_rollups

TODAY = datetime.now(UTC).date()
EXAMPLE_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "district.example.yaml"


def noon(day: date) -> datetime:
    return datetime.combine(day, time(12), tzinfo=UTC)


def _insert_rollup(conn: psycopg.Connection, table: str, bucket: datetime) -> None:
    if table.startswith("zone_counts"):
        conn.execute(
            f"INSERT INTO {table} (bucket, site_id, zone_id, samples, count_max, count_mean_sum,"
            " count_last, last_ts, wait_samples, density_samples)"
            " VALUES (%s, 'stop-a', 'platform', 1, 5, 5, 5, %s, 0, 0)",
            (bucket, bucket),
        )
    elif table.startswith("site_counts"):
        conn.execute(
            f"INSERT INTO {table} (bucket, site_id, zones, samples, count_max, count_mean,"
            " count_last) VALUES (%s, 'stop-a', 1, 1, 5, 5, 5)",
            (bucket,),
        )
    else:
        conn.execute(
            f"INSERT INTO {table} (bucket, site_id, line_id, samples, in_sum, out_sum)"
            " VALUES (%s, 'stop-a', 'gate', 1, 1, 1)",
            (bucket,),
        )


def _days(conn: psycopg.Connection, sql: str) -> list[date]:
    return sorted({r[0].astimezone(UTC).date() for r in conn.execute(sql).fetchall()})


def _children(conn: psycopg.Connection, table: str) -> set[str]:
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = to_regclass(%s)",
        (table,),
    ).fetchall()
    return {str(r[0]) for r in rows}


def test_plain_retention_drops_old_days_and_old_rollups(db_url: str) -> None:
    """Plain PostgreSQL only: day partitions and rollup rows written here directly (a
    continuous aggregate takes no INSERT)."""
    upgrade(db_url, timescale=False)
    retention = RetentionConfig(raw_days=2, rollup_days=3)
    with psycopg.connect(db_url, autocommit=True) as conn:
        ensure_daily_partitions(conn, TODAY - timedelta(days=4), 3)  # days -4, -3, -2
        raw_days = [TODAY - timedelta(days=d) for d in (10, 4, 3, 2, 1, 0)]  # -10: DEFAULT
        insert_zones(conn, [ZoneRow(noon(d), "stop-a", "platform", 3) for d in raw_days])
        rollup_days = [TODAY - timedelta(days=d) for d in (5, 4, 3, 0)]
        for table in ROLLUP_TABLES:
            for day in rollup_days:
                _insert_rollup(conn, table, noon(day))

        result = apply_retention(conn, retention, today=TODAY)

        old = [TODAY - timedelta(days=4), TODAY - timedelta(days=3)]
        assert sorted(result.dropped_partitions) == sorted(
            partition_name(t, d) for t in TIME_SERIES_TABLES for d in old
        )
        assert result.raw_rows_deleted == 1  # the -10 row in DEFAULT
        assert result.rollup_rows_deleted == 2 * len(ROLLUP_TABLES)
        assert _days(conn, "SELECT ts FROM zone_counts") == [
            TODAY - timedelta(days=d) for d in (2, 1, 0)
        ]
        for table in ROLLUP_TABLES:
            assert _days(conn, f"SELECT bucket FROM {table}") == [
                TODAY - timedelta(days=3),
                TODAY,
            ], table
        children = _children(conn, "zone_counts")
        assert partition_name("zone_counts", TODAY - timedelta(days=2)) in children
        assert "zone_counts_default" in children

        again = apply_retention(conn, retention, today=TODAY)
    assert (again.dropped_partitions, again.raw_rows_deleted, again.rollup_rows_deleted) == (
        [],
        0,
        0,
    )


def test_a_row_older_than_raw_retention_does_not_rebuild_its_rollup(
    db_url: str, timescale: bool
) -> None:
    upgrade(db_url, timescale=timescale)
    old = noon(TODAY - timedelta(days=40))
    with psycopg.connect(db_url, autocommit=True) as conn:
        # Rolled up while the raw day was still kept (a 60-day raw retention then).
        insert_zones(conn, [ZoneRow(old, "stop-a", "platform", 5)])
        assert refresh_rollups(conn, retention=RetentionConfig(raw_days=60)).minutes == 1
        # A straggler for that minute, once the raw retention is 30 days.
        insert_zones(conn, [ZoneRow(old + timedelta(seconds=3), "stop-a", "platform", 99)])

        result = refresh_rollups(conn, retention=RetentionConfig(raw_days=30))
        again = refresh_rollups(conn, retention=RetentionConfig(raw_days=30))

        kept = conn.execute("SELECT samples, count_last FROM zone_counts_1m").fetchall()
    assert (result.minutes, result.skipped_old) == (0, 1)
    assert (again.minutes, again.skipped_old) == (0, 0)
    assert kept == [(1, 5)]


@pytest.mark.parametrize(
    ("retention", "error"),
    [
        ({}, None),
        ({"raw_days": 7, "rollup_days": 7}, None),
        ({"raw_days": 30, "rollup_days": 10}, "rollup_days must be at least raw_days"),
        ({"raw_days": 1}, "raw_days"),
        ({"raw_days": 30, "keep": 1}, "keep"),
    ],
)
def test_retention_config(retention: dict[str, Any], error: str | None) -> None:
    if error is None:
        config = make_config(database={"retention": retention})
        assert config.database.retention.raw_days == retention.get("raw_days", 30)
        assert config.database.retention.rollup_days == retention.get("rollup_days", 730)
    else:
        with pytest.raises(ConfigError, match=error):
            make_config(database={"retention": retention})


def test_db_refresh_and_retention_commands(
    db_url: str,
    timescale: bool,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    upgrade(db_url, timescale=timescale)
    with psycopg.connect(db_url, autocommit=True) as conn:
        insert_zones(conn, [ZoneRow(noon(TODAY - timedelta(days=1)), "stop-a", "platform", 4)])
    monkeypatch.setenv("CROWDWATCH_DATABASE_URL", db_url)

    assert main(["db", "refresh", "--config", str(EXAMPLE_CONFIG)]) == 0
    assert main(["db", "retention", "--config", str(EXAMPLE_CONFIG)]) == 0

    out = capsys.readouterr().out
    assert "rollups refreshed: 1 minutes recomputed" in out
    assert "retention applied: 0 partitions dropped, 0 rollup rows deleted" in out
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count_last FROM zone_counts_1h").fetchall() == [(4,)]


def _retention_jobs(conn: psycopg.Connection) -> dict[str, tuple[int, str]]:
    rows = conn.execute(
        "SELECT hypertable_name, job_id, config->>'drop_after' FROM timescaledb_information.jobs"
        " WHERE proc_name = 'policy_retention'"
    ).fetchall()
    return {str(r[0]): (int(r[1]), str(r[2])) for r in rows}


def test_timescale_retention_drops_old_days_and_old_rollups(
    db_url: str, timescale_problem: str
) -> None:
    """TimescaleDB only: day chunks instead of partitions, aggregates instead of tables."""
    if timescale_problem:
        pytest.skip(timescale_problem)
    upgrade(db_url, timescale=True)
    retention = RetentionConfig(raw_days=2, rollup_days=3)
    raw_days = [TODAY - timedelta(days=d) for d in (10, 4, 3, 2, 1, 0)]
    with psycopg.connect(db_url, autocommit=True) as conn:
        insert_zones(conn, [ZoneRow(noon(d), "stop-a", "platform", 3) for d in raw_days])
        refresh_rollups(conn, retention=RetentionConfig(raw_days=30))
        old_chunks = {
            str(r[0])
            for r in conn.execute(
                "SELECT show_chunks('zone_counts', older_than => %s::timestamptz)::text",
                (noon(TODAY - timedelta(days=2)) - timedelta(hours=12),),
            ).fetchall()
        }

        result = apply_retention(conn, retention, today=TODAY)
        again = apply_retention(conn, retention, today=TODAY)

        assert len(old_chunks) == 3  # days -10, -4, -3
        assert set(result.dropped_partitions) == old_chunks
        # Days -10 and -4 at 1 min, 15 min and 1 h; day -3 is the first kept.
        assert result.rollup_rows_deleted == 2 * 3
        assert _days(conn, "SELECT ts FROM zone_counts") == raw_days[3:]
        for table in ROLLUP_TABLES:
            if table.startswith("line_counts"):
                continue  # no crossings written
            assert _days(conn, f"SELECT bucket FROM {table}") == raw_days[2:], table
    assert (again.dropped_partitions, again.rollup_rows_deleted) == ([], 0)


def test_timescale_retention_keeps_its_policies_until_the_limits_change(
    db_url: str, timescale_problem: str
) -> None:
    """TimescaleDB only: a policy re-created every hour would lose its job's history."""
    if timescale_problem:
        pytest.skip(timescale_problem)
    upgrade(db_url, timescale=True)
    retention = RetentionConfig(raw_days=2, rollup_days=3)
    with psycopg.connect(db_url, autocommit=True) as conn:
        apply_retention(conn, retention, today=TODAY)
        jobs = _retention_jobs(conn)
        apply_retention(conn, retention, today=TODAY)
        jobs_again = _retention_jobs(conn)
        apply_retention(conn, RetentionConfig(raw_days=5, rollup_days=5), today=TODAY)
        jobs_changed = _retention_jobs(conn)

    relations = {*TIME_SERIES_TABLES, *(t for t in ROLLUP_TABLES if "site" not in t)}
    assert {name: after for name, (_, after) in jobs.items()} == {
        **dict.fromkeys(TIME_SERIES_TABLES, "2 days"),
        **{t: "3 days" for t in relations - set(TIME_SERIES_TABLES)},
    }
    assert jobs_again == jobs
    assert {name: after for name, (_, after) in jobs_changed.items()} == dict.fromkeys(
        relations, "5 days"
    )
    assert not {job for job, _ in jobs.values()} & {job for job, _ in jobs_changed.values()}
