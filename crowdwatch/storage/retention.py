"""Retention: raw counts for ``raw_days``, rollups for ``rollup_days`` (``database.retention``).

Plain PostgreSQL: whole UTC-day partitions of the raw tables older than the cutoff are
detached and dropped (no ``DELETE`` scan), the DEFAULT partitions lose their rows older than
the cutoff (a far-off late row), and old rollup rows are deleted.  TimescaleDB: the same
limits become ``add_retention_policy`` jobs on the hypertables and continuous aggregates
(replaced when the config changes), and old chunks are dropped at once.

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
            return _timescale_retention(conn, retention)
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


def _timescale_retention(conn: psycopg.Connection, retention: RetentionConfig) -> RetentionResult:
    # Not run by the test suite (no TimescaleDB here).  Policies are replaced so that a
    # changed config takes effect; drop_chunks applies the limits now rather than at the
    # next scheduled run.
    limits = [(t, retention.raw_days) for t in TIME_SERIES_TABLES]
    limits += [(t, retention.rollup_days) for t in CONTINUOUS_AGGREGATES]
    with conn.transaction():
        for table, days in limits:
            conn.execute(
                "SELECT remove_retention_policy(%s::regclass, if_exists => true)", (table,)
            )
            conn.execute(
                "SELECT add_retention_policy(%s::regclass, drop_after => make_interval(days => %s))",
                (table, days),
            )
            conn.execute(
                "SELECT drop_chunks(%s::regclass, older_than => make_interval(days => %s))",
                (table, days),
            )
    return RetentionResult(timescale=True)
