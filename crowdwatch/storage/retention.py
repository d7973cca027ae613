"""Retention: raw counts for ``raw_days``, rollups for ``rollup_days`` (``database.retention``).

Plain PostgreSQL: whole UTC-day partitions of the raw tables older than the cutoff are
detached and dropped (no ``DELETE`` scan), the DEFAULT partitions lose their rows older than
the cutoff (a far-off late row), and old rollup rows are deleted.  TimescaleDB: the raw
hypertables' whole-day chunks before the cutoff are dropped, the continuous aggregates lose
their buckets before theirs, and the same limits are kept as ``add_retention_policy`` jobs
(replaced only when the config changes) for a server whose job scheduler runs.

Cutoffs are UTC midnights, so a raw day is kept whole or dropped whole, the same on both
paths.  Rollups are never rebuilt from raw rows older than the raw cutoff (see
:mod:`crowdwatch.storage.rollups`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import psycopg
from psycopg import sql

from crowdwatch.contracts.config import RetentionConfig
from crowdwatch.contracts.db_schema import ROLLUP_TABLES as ROLLUP_TABLES  # re-exported
from crowdwatch.contracts.db_schema import TIME_SERIES_TABLES
from crowdwatch.contracts.errors import StorageError
from crowdwatch.storage.migrate import recorded_mode
from crowdwatch.storage.partitions import drop_partitions_before

logger = logging.getLogger(__name__)

CONTINUOUS_AGGREGATES = tuple(t for t in ROLLUP_TABLES if not t.startswith("site_counts"))
"""The rollups that are continuous aggregates on TimescaleDB."""


def raw_cutoff(retention: RetentionConfig, today: date) -> datetime:
    """The first instant of raw data kept: UTC midnight ``raw_days`` before ``today``."""
    return datetime.combine(today - timedelta(days=retention.raw_days), time(0), tzinfo=UTC)


def rollup_cutoff(retention: RetentionConfig, today: date) -> datetime:
    """The first rollup bucket kept: UTC midnight ``rollup_days`` before ``today``."""
    return datetime.combine(today - timedelta(days=retention.rollup_days), time(0), tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class RetentionResult:
    """What one retention run removed."""

    dropped_partitions: list[str] = field(default_factory=list)
    raw_rows_deleted: int = 0
    """Rows deleted from the DEFAULT partitions (plain PostgreSQL)."""
    rollup_rows_deleted: int = 0
    timescale: bool = False


def apply_retention(
    conn: psycopg.Connection, retention: RetentionConfig, *, today: date | None = None
) -> RetentionResult:
    """Remove raw rows and rollups older than the configured limits.

    Args:
        conn: a connection in autocommit mode to a migrated database.
        retention: ``database.retention`` of the config.
        today: the current UTC day (default: the clock).

    Returns:
        What was removed.

    Raises:
        StorageError: the database refused a statement or went away.
    """
    today = today or datetime.now(UTC).date()
    try:
        if recorded_mode(conn):
            return _timescale_retention(conn, retention, today)
        return _plain_retention(conn, retention, today)
    except psycopg.Error as exc:
        raise StorageError(f"cannot apply retention: {exc}") from exc


def _plain_retention(
    conn: psycopg.Connection, retention: RetentionConfig, today: date
) -> RetentionResult:
    raw_from = raw_cutoff(retention, today)
    rollups_from = rollup_cutoff(retention, today)
    dropped = drop_partitions_before(conn, raw_from.date())
    raw_deleted = rollup_deleted = 0
    with conn.transaction():
        for table in TIME_SERIES_TABLES:
            raw_deleted += conn.execute(
                sql.SQL("DELETE FROM {} WHERE ts < %s").format(sql.Identifier(f"{table}_default")),
                (raw_from,),
            ).rowcount
        for table in ROLLUP_TABLES:
            rollup_deleted += conn.execute(
                sql.SQL("DELETE FROM {} WHERE bucket < %s").format(sql.Identifier(table)),
                (rollups_from,),
            ).rowcount
        # A log entry for a dropped day could only rebuild a bucket from nothing.
        conn.execute("DELETE FROM rollup_invalidations WHERE bucket < %s", (raw_from,))
    if dropped or raw_deleted or rollup_deleted:
        logger.info(
            "retention: dropped %d partitions, %d raw rows from DEFAULT, %d rollup rows",
            len(dropped),
            raw_deleted,
            rollup_deleted,
        )
    return RetentionResult(dropped, raw_deleted, rollup_deleted)


def _timescale_retention(
    conn: psycopg.Connection, retention: RetentionConfig, today: date
) -> RetentionResult:
    # drop_chunks applies the limits now, at the same UTC midnights as the plain path (raw
    # chunks are UTC days, so a day goes whole).  The aggregates' chunks span ten days, so
    # their rows older than the cutoff are deleted as on the plain path; refreshes never
    # start before the raw cutoff, which is not older, so they never come back.  The
    # policies only matter where TimescaleDB's job scheduler runs; they are replaced only
    # when the config changed, which keeps their job ids and history.
    raw_from = raw_cutoff(retention, today)
    rollups_from = rollup_cutoff(retention, today)
    dropped: list[str] = []
    rollup_deleted = 0
    for table, days in [(t, retention.raw_days) for t in TIME_SERIES_TABLES] + [
        (t, retention.rollup_days) for t in CONTINUOUS_AGGREGATES
    ]:
        _ensure_retention_policy(conn, table, days)
    with conn.transaction():
        for table in TIME_SERIES_TABLES:
            rows = conn.execute(
                "SELECT drop_chunks(%s::regclass, older_than => %s::timestamptz)::text",
                (table, raw_from),
            ).fetchall()
            dropped += [str(r[0]) for r in rows]
        for table in CONTINUOUS_AGGREGATES:
            rollup_deleted += _delete_old_buckets(conn, table, rollups_from)
    if dropped or rollup_deleted:
        logger.info("retention: dropped %d chunks, %d rollup rows", len(dropped), rollup_deleted)
    return RetentionResult(dropped, 0, rollup_deleted, timescale=True)


def _ensure_retention_policy(conn: psycopg.Connection, relation: str, days: int) -> None:
    """Give ``relation`` a retention policy of ``days`` unless it has exactly that one."""
    row = conn.execute(
        "SELECT count(*), bool_and((config->>'drop_after')::interval"
        " = make_interval(days => %s)) FROM timescaledb_information.jobs"
        " WHERE proc_name = 'policy_retention' AND hypertable_schema = current_schema()"
        " AND hypertable_name = %s",
        (days, relation),
    ).fetchone()
    if row is not None and row[0] == 1 and row[1]:
        return
    with conn.transaction():
        conn.execute("SELECT remove_retention_policy(%s::regclass, if_exists => true)", (relation,))
        conn.execute(
            "SELECT add_retention_policy(%s::regclass, drop_after => make_interval(days => %s))",
            (relation, days),
        )
    logger.info("retention policy of %s set to %d days", relation, days)


def _delete_old_buckets(conn: psycopg.Connection, cagg: str, before: datetime) -> int:
    """Remove a continuous aggregate's buckets older than ``before``; returns the rows removed."""
    found = conn.execute(
        "SELECT materialization_hypertable_schema, materialization_hypertable_name"
        " FROM timescaledb_information.continuous_aggregates"
        " WHERE view_schema = current_schema() AND view_name = %s",
        (cagg,),
    ).fetchone()
    if found is None:
        raise StorageError(f"{cagg} is not a continuous aggregate: was the database migrated?")
    materialized = sql.Identifier(str(found[0]), str(found[1]))
    # Whole chunks first (no row scan), then what is left of the chunk holding the cutoff.
    chunks = conn.execute(
        "SELECT chunk_schema, chunk_name FROM timescaledb_information.chunks"
        " WHERE hypertable_schema = %s AND hypertable_name = %s AND range_end <= %s",
        (found[0], found[1], before),
    ).fetchall()
    removed = 0
    for schema, name in chunks:
        counted = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(str(schema), str(name)))
        ).fetchone()
        removed += int(counted[0]) if counted else 0
    if chunks:
        conn.execute(
            "SELECT drop_chunks(%s::regclass, older_than => %s::timestamptz)", (cagg, before)
        )
    removed += conn.execute(
        sql.SQL("DELETE FROM {} WHERE bucket < %s").format(materialized), (before,)
    ).rowcount
    return removed
