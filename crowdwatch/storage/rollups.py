"""Rollups of the raw counts at 1 min, 15 min and 1 h, kept fresh while ingest runs.

Tables ``zone_counts_{1m,15m,1h}``, ``line_counts_{1m,15m,1h}`` and
``site_counts_{1m,15m,1h}`` are created by migration 3 in
:mod:`crowdwatch.contracts.db_schema`, which documents their columns.

TimescaleDB: they are continuous aggregates (the site ones: views over them), real-time:
a query reads the materialised buckets and aggregates the raw rows after the last of them.
:func:`refresh_rollups` materialises every bucket that is complete (never the one still
being filled, whose later rows would then be hidden until the next refresh) from the raw
retention floor on, so late rows of any age the raw data still holds are taken in; the
refresh policies created with the aggregates do the same for the last two days where
TimescaleDB's job scheduler runs, and nothing here depends on them.

Plain PostgreSQL: they are tables refreshed here, incrementally.  A statement trigger on the
raw tables logs every 1-minute bucket an INSERT touched in ``rollup_invalidations``, in the
inserting transaction.  A refresh takes the log (``DELETE ... RETURNING``), recomputes those
1-minute buckets from the raw rows, then the 15-minute buckets containing them from the
1-minute rollups, then the hours from the 15-minute rollups, then the site rows of every
bucket touched from the zone rows of that bucket, all in one transaction: readers
see the old buckets until it commits, and running it again changes nothing.  Because the log
is written with the raw rows, a row that arrives late, out of order, or in a batch retried
after a database outage (whose ``received_at`` can be minutes old) is never missed, which a
``received_at`` watermark cannot promise.  Buckets older than the raw retention are never
recomputed: their raw rows are gone and a rebuild would replace a full bucket with a part.

Refreshing writes the rollup tables and empties the log, so it runs as the owner: in the
owner's maintenance (:class:`~crowdwatch.storage.maintenance.Maintenance`, which adds the
daily partitions), never as the least-privilege ingest user, which may only append to the log.

Example:
    >>> refresher = RollupRefresher(url, interval_s=20)  # doctest: +SKIP
    >>> refresher.start()  # doctest: +SKIP
    >>> refresher.stop()  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

from crowdwatch.contracts.config import RetentionConfig
from crowdwatch.contracts.db_schema import ROLLUP_ORIGIN, ROLLUP_RESOLUTIONS
from crowdwatch.contracts.errors import StorageError
from crowdwatch.contracts.rollup_sql import (
    SITE_ROLLUP_COLUMNS,
    SITE_ROLLUP_SELECT,
    zone_from_finer_exprs,
    zone_from_raw_exprs,
    zone_rollup_names,
)
from crowdwatch.storage.db import connect
from crowdwatch.storage.migrate import recorded_mode
from crowdwatch.storage.retention import apply_retention, raw_cutoff

logger = logging.getLogger(__name__)

ROLLUP_LOCK_KEY = 0x63770003
"""Advisory lock held by the one process refreshing the rollups (any bigint unique to us)."""

_ORIGIN = f"TIMESTAMPTZ '{ROLLUP_ORIGIN}'"

# Finest first: each level is rebuilt from the one before it (raw for 1 min).
_LEVELS = list(ROLLUP_RESOLUTIONS)

_ZONE_COLS = zone_rollup_names()
_LINE_COLS = "bucket, site_id, line_id, samples, in_sum, out_sum"

# The metrics' parts follow their declaration (crowdwatch.contracts.metrics).  Newest row
# wins a LAST metric; message_id breaks a tie of two rows with the same ts so a rebuild
# always picks the same one.
_ZONE_FROM_RAW = f"""
INSERT INTO zone_counts_1m ({_ZONE_COLS})
SELECT t.bucket, c.site_id, c.zone_id,
       {", ".join(zone_from_raw_exprs("c."))}
FROM rollup_touched t
JOIN zone_counts c ON c.ts >= t.bucket AND c.ts < t.bucket + INTERVAL '1 minute'
WHERE t.source = 'zone_counts'
GROUP BY t.bucket, c.site_id, c.zone_id
"""

_LINE_FROM_RAW = f"""
INSERT INTO line_counts_1m ({_LINE_COLS})
SELECT t.bucket, c.site_id, c.line_id, count(*), sum(c.in_count), sum(c.out_count)
FROM rollup_touched t
JOIN line_counts c ON c.ts >= t.bucket AND c.ts < t.bucket + INTERVAL '1 minute'
WHERE t.source = 'line_counts'
GROUP BY t.bucket, c.site_id, c.line_id
"""

_ZONE_FROM_FINER = (
    """
INSERT INTO zone_counts_{coarse} ({cols})
SELECT t.bucket, f.site_id, f.zone_id,
       """
    + ", ".join(zone_from_finer_exprs())
    + """
FROM ({touched}) t
JOIN zone_counts_{fine} f ON f.bucket >= t.bucket AND f.bucket < t.bucket + INTERVAL '{width}'
GROUP BY t.bucket, f.site_id, f.zone_id
"""
)

_LINE_FROM_FINER = """
INSERT INTO line_counts_{coarse} ({cols})
SELECT t.bucket, f.site_id, f.line_id,
       sum(f.samples)::bigint, sum(f.in_sum)::bigint, sum(f.out_sum)::bigint
FROM ({touched}) t
JOIN line_counts_{fine} f ON f.bucket >= t.bucket AND f.bucket < t.bucket + INTERVAL '{width}'
GROUP BY t.bucket, f.site_id, f.line_id
"""


def _touched_sql(source: str, width: str) -> str:
    """The distinct buckets of ``width`` that contain a touched minute of ``source``."""
    return (
        f"SELECT DISTINCT date_bin(INTERVAL '{width}', bucket, {_ORIGIN}) AS bucket"
        f" FROM rollup_touched WHERE source = '{source}'"
    )


def _plain_statements() -> list[str]:
    """The refresh statements after the log was taken into ``rollup_touched``, in order.

    Built once from constants (table names and widths), never from values.
    """
    statements: list[str] = []
    for source, insert_raw, from_finer, cols in (
        ("zone_counts", _ZONE_FROM_RAW, _ZONE_FROM_FINER, _ZONE_COLS),
        ("line_counts", _LINE_FROM_RAW, _LINE_FROM_FINER, _LINE_COLS),
    ):
        statements.append(
            f"DELETE FROM {source}_1m r USING rollup_touched t"
            f" WHERE t.source = '{source}' AND r.bucket = t.bucket"
        )
        statements.append(insert_raw)
        for (fine, _), (coarse, width) in itertools.pairwise(_LEVELS):
            touched = _touched_sql(source, width)
            statements.append(
                f"DELETE FROM {source}_{coarse} r USING ({touched}) t WHERE r.bucket = t.bucket"
            )
            statements.append(
                from_finer.format(coarse=coarse, fine=fine, width=width, cols=cols, touched=touched)
            )
    # Sites last, from the zone rollups just rebuilt, bucket for bucket.
    for suffix, width in _LEVELS:
        touched = _touched_sql("zone_counts", width)
        statements.append(
            f"DELETE FROM site_counts_{suffix} r USING ({touched}) t WHERE r.bucket = t.bucket"
        )
        statements.append(
            f"INSERT INTO site_counts_{suffix} ({SITE_ROLLUP_COLUMNS})"
            + SITE_ROLLUP_SELECT.replace("{suffix}", suffix)
            + f"WHERE bucket IN ({touched}) GROUP BY bucket, site_id"
        )
    return statements


_PLAIN_REFRESH = _plain_statements()


@dataclass(frozen=True, slots=True)
class RefreshResult:
    """What one refresh did."""

    minutes: int
    """Distinct 1-minute buckets recomputed (zones and lines together)."""
    skipped_old: int
    """Touched minutes older than the raw retention, left as they were."""
    busy: bool = False
    """Another process was refreshing; this call did nothing."""
    timescale: bool = False


def refresh_rollups(
    conn: psycopg.Connection,
    *,
    retention: RetentionConfig | None = None,
    now: datetime | None = None,
) -> RefreshResult:
    """Bring every rollup up to date with the raw rows committed so far.

    Idempotent, and safe from several processes at once (one refreshes, the others return
    ``busy``).

    Args:
        conn: a connection in autocommit mode to a migrated database.
        retention: its ``raw_days`` bounds what may be recomputed (default: 30 days).
        now: the current time (default: the clock): the retention bound, and on TimescaleDB
            the end of the buckets materialised (the current one stays real-time).

    Returns:
        How many 1-minute buckets were recomputed (on TimescaleDB: counted from its
        invalidation logs just before the refresh).

    Raises:
        StorageError: the database refused a statement or went away.
    """
    retention = retention or RetentionConfig()
    now = now or datetime.now(UTC)
    floor = raw_cutoff(retention, now.date())
    try:
        if recorded_mode(conn):
            return _refresh_timescale(conn, floor, now)
        return _refresh_plain(conn, floor)
    except psycopg.Error as exc:
        raise StorageError(f"cannot refresh rollups: {exc}") from exc


def _refresh_plain(conn: psycopg.Connection, floor: datetime) -> RefreshResult:
    with conn.transaction():
        got = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (ROLLUP_LOCK_KEY,)).fetchone()
        if not got or not got[0]:
            return RefreshResult(minutes=0, skipped_old=0, busy=True)
        conn.execute(
            "CREATE TEMP TABLE rollup_touched (source text, bucket timestamptz) ON COMMIT DROP"
        )
        # Only the log rows this statement sees are taken: rows of batches that commit later
        # stay for the next refresh, and their raw rows commit together with them.
        conn.execute(
            "WITH taken AS (DELETE FROM rollup_invalidations RETURNING source, bucket)"
            " INSERT INTO rollup_touched SELECT DISTINCT source, bucket FROM taken"
        )
        skipped = conn.execute("DELETE FROM rollup_touched WHERE bucket < %s", (floor,)).rowcount
        if skipped:
            logger.warning(
                "%d touched minutes before %s are older than the raw retention; their rollups "
                "are kept as they are",
                skipped,
                floor,
            )
        row = conn.execute("SELECT count(*) FROM rollup_touched").fetchone()
        minutes = int(row[0]) if row else 0
        if minutes:
            conn.execute("ANALYZE rollup_touched")
            for statement in _PLAIN_REFRESH:
                conn.execute(statement)
    return RefreshResult(minutes=minutes, skipped_old=max(skipped, 0))


_CAGGS = [
    (f"{source}_{suffix}", width)
    for suffix, width in _LEVELS
    for source in ("zone_counts", "line_counts")
]
"""(continuous aggregate, bucket width), finest first."""

# The 1-minute buckets that a refresh of ``{source}_1m`` will recompute: the minutes holding
# raw rows inside the ranges TimescaleDB still holds as invalid for that aggregate.  Those
# are the raw hypertable's log (rows written below the invalidation threshold since the last
# refresh, not yet handed to the aggregates) and the aggregate's own log (which also covers
# everything after its last refresh).  Internal times are microseconds since the Unix epoch,
# with the int64 extremes for "unbounded"; they are clamped before conversion.  Only the
# hypertable's log counts towards ``skipped_old``: an aggregate's entries below the floor
# stay there for good, and would be reported again on every refresh.
_TS_PENDING = """
WITH cagg AS (
    SELECT raw_hypertable_id, mat_hypertable_id
    FROM _timescaledb_catalog.continuous_agg
    WHERE user_view_schema = current_schema() AND user_view_name = %(cagg)s
), ranges AS (
    SELECT l.lowest_modified_value AS lo, l.greatest_modified_value AS hi, true AS new
    FROM _timescaledb_catalog.continuous_aggs_hypertable_invalidation_log l
    JOIN cagg ON l.hypertable_id = cagg.raw_hypertable_id
    UNION ALL
    SELECT l.lowest_modified_value, l.greatest_modified_value, false
    FROM _timescaledb_catalog.continuous_aggs_materialization_invalidation_log l
    JOIN cagg ON l.materialization_id = cagg.mat_hypertable_id
), bounded AS (
    SELECT _timescaledb_functions.to_timestamp(greatest(lo, %(low_us)s)) AS lo,
           _timescaledb_functions.to_timestamp(least(hi, %(high_us)s)) AS hi, new
    FROM ranges
    WHERE hi >= %(low_us)s AND lo <= %(high_us)s
), touched AS (
    SELECT DISTINCT date_bin(INTERVAL '1 minute', r.ts, {origin}) AS minute, g.new
    FROM bounded g
    JOIN {source} r ON r.ts >= g.lo AND r.ts <= g.hi
    WHERE r.ts < %(end)s
)
SELECT count(DISTINCT minute) FILTER (WHERE minute >= %(floor)s),
       count(DISTINCT minute) FILTER (WHERE minute < %(floor)s AND new)
FROM touched
"""

_MIN_INTERNAL_US = -210866803200000000
"""TimescaleDB's smallest timestamptz (4714-11-24 BC) in its internal unit."""


def _bucket_start(at: datetime, width: str) -> datetime:
    """The start of the bucket of ``width`` (a ``_LEVELS`` width) holding ``at``."""
    seconds = {"1 minute": 60, "15 minutes": 900, "1 hour": 3600}[width]
    origin = datetime.fromisoformat(ROLLUP_ORIGIN)
    return origin + timedelta(seconds=(at - origin).total_seconds() // seconds * seconds)


def _unix_us(at: datetime) -> int:
    return int(at.timestamp()) * 1_000_000 + at.microsecond


def _pending_minutes(conn: psycopg.Connection, floor: datetime, end: datetime) -> tuple[int, int]:
    """(minutes the coming refresh recomputes, touched minutes older than ``floor``)."""
    minutes = skipped = 0
    for source in ("zone_counts", "line_counts"):
        row = conn.execute(
            _TS_PENDING.format(source=source, origin=_ORIGIN),
            {
                "cagg": f"{source}_1m",
                "low_us": _MIN_INTERNAL_US,
                "high_us": _unix_us(end),
                "end": end,
                "floor": floor,
            },
        ).fetchone()
        if row:
            minutes += int(row[0])
            skipped += int(row[1])
    return minutes, skipped


def _refresh_timescale(conn: psycopg.Connection, floor: datetime, now: datetime) -> RefreshResult:
    """Refresh every continuous aggregate over [floor, the start of its current bucket).

    The bucket still being filled is left to real-time aggregation: materialised, it would
    hide the rows that arrive after the refresh (TimescaleDB reads raw rows only after the
    last materialised bucket) until the next refresh, and a row accepted a few minutes ahead
    of the clock would push that point into the future.  The same advisory lock as the plain
    path keeps our refreshers apart; TimescaleDB itself refuses a refresh whose window
    overlaps one in progress (a policy job, another tool), and that is ``busy`` too.

    CALL cannot run in a transaction block: the connection must be in autocommit mode.
    """
    got = conn.execute("SELECT pg_try_advisory_lock(%s)", (ROLLUP_LOCK_KEY,)).fetchone()
    if not got or not got[0]:
        return RefreshResult(minutes=0, skipped_old=0, busy=True, timescale=True)
    try:
        # Counted before the refresh, which clears the logs; a batch committed in between is
        # refreshed too but not counted.
        minutes, skipped = _pending_minutes(conn, floor, _bucket_start(now, "1 minute"))
        if skipped:
            logger.warning(
                "%d touched minutes before %s are older than the raw retention; their rollups "
                "are kept as they are",
                skipped,
                floor,
            )
        for name, width in _CAGGS:
            end = _bucket_start(now, width)
            if end <= floor:
                continue
            try:
                conn.execute(
                    "CALL refresh_continuous_aggregate(%s::regclass, %s::timestamptz,"
                    " %s::timestamptz)",
                    (name, floor, end),
                )
            except psycopg.errors.LockNotAvailable as exc:
                logger.info("%s is being refreshed elsewhere; next round: %s", name, exc)
                return RefreshResult(minutes=0, skipped_old=0, busy=True, timescale=True)
    finally:
        if not conn.broken:
            conn.execute("SELECT pg_advisory_unlock(%s)", (ROLLUP_LOCK_KEY,))
    return RefreshResult(minutes=minutes, skipped_old=skipped, timescale=True)


class RollupRefresher:
    """A thread that refreshes the rollups every ``interval_s`` (and applies retention hourly).

    Several may run (every ingest worker that connects as the owner runs one, through
    :class:`~crowdwatch.storage.maintenance.Maintenance`): their refreshes do not overlap (an
    advisory lock), so rollups are fresh within about ``interval_s`` plus one refresh.

    Args:
        db_url: libpq URL of a migrated database.
        interval_s: seconds between refreshes (``database.rollup_refresh_s``).
        retention: ``database.retention``; bounds the refresh, and is applied every
            ``retention_every_s``.
        retention_every_s: seconds between retention runs; ``None`` never runs it.
    """

    def __init__(
        self,
        db_url: str,
        interval_s: float = 20.0,
        *,
        retention: RetentionConfig | None = None,
        retention_every_s: float | None = 3600.0,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self._url = db_url
        self._interval_s = interval_s
        self._retention = retention or RetentionConfig()
        self._retention_every_s = retention_every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection | None = None
        self._last_retention = float("-inf")
        self.refreshes = 0
        """Refreshes completed (read by metrics and tests)."""

    def start(self) -> None:
        """Start the thread; the first refresh runs at once."""
        if self._thread is not None:
            raise RuntimeError("RollupRefresher already started")
        self._thread = threading.Thread(target=self._run, name="rollup-refresher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the thread after the refresh in progress, and close its connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("rollup refresher did not stop within %.0f s", timeout)
            self._thread = None

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._tick()
                if self._stop.wait(self._interval_s):
                    break
        finally:
            self._close()

    def _tick(self) -> None:
        # Top of a long-running loop: log any failure and try again next time.
        try:
            self._work(self._connection())
        except Exception:
            logger.exception("rollup refresh failed; retrying in %.0f s", self._interval_s)
            self._close()

    def _work(self, conn: psycopg.Connection) -> None:
        """One round: refresh the rollups, and apply retention when it is due."""
        started = time.monotonic()
        result = refresh_rollups(conn, retention=self._retention)
        self.refreshes += 1
        logger.debug(
            "rollups refreshed: %d minutes in %.3f s%s",
            result.minutes,
            time.monotonic() - started,
            " (another worker was refreshing)" if result.busy else "",
        )
        if (
            self._retention_every_s is not None
            and time.monotonic() - self._last_retention >= self._retention_every_s
        ):
            apply_retention(conn, self._retention)
            self._last_retention = time.monotonic()

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self._url, autocommit=True)
        return self._conn

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
