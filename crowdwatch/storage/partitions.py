"""Daily range partitions of the time-series tables (plain PostgreSQL, no TimescaleDB).

Each table of :data:`~crowdwatch.contracts.db_schema.TIME_SERIES_TABLES` has one partition
per UTC day (``zone_counts_20261127``) plus a DEFAULT partition that takes any row no day
partition covers (a late message, a camera with a wrong clock), so ingest never refuses a row
for want of a partition.  Retention is ``detach + drop`` of whole days: no ``DELETE`` scans.

PostgreSQL refuses to create a partition whose range the DEFAULT partition already holds
rows for, so :func:`ensure_daily_partitions` moves those rows into the new partition in the
same transaction.  Workers that create partitions at the same time are serialised by a
transaction-level advisory lock.

Creating, detaching and dropping partitions needs the table owner: with least-privilege roles
(:mod:`crowdwatch.storage.roles`) that is ``crowdwatch db maintain``, not ingest.  Reads and
writes through the parent are checked against the parent's privileges only; a new partition
also gets the parent's SELECT grants (:func:`grant_reads_like_parent`) so a role that reads the
parent may read one day directly too.  Writes go through the parent only, where the rollup
trigger sees them.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, date, datetime, time, timedelta

import psycopg
from psycopg import sql

from crowdwatch.contracts.db_schema import TIME_SERIES_TABLES, daily_partition_sql
from crowdwatch.contracts.errors import StorageError

logger = logging.getLogger(__name__)

PARTITION_LOCK_KEY = 0x63770002
"""Advisory lock held while creating or dropping partitions (any bigint unique to us)."""

_DAY_SUFFIX = re.compile(r"_(\d{8})$")


def partition_name(table: str, day: date) -> str:
    """``zone_counts`` and 2026-11-27 -> ``zone_counts_20261127``."""
    return f"{table}_{day:%Y%m%d}"


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), tzinfo=UTC)
    return start, start + timedelta(days=1)


def partitions_of(conn: psycopg.Connection, table: str) -> set[str]:
    """Names of the partitions attached to ``table``; empty if it is not partitioned."""
    rows = conn.execute(
        """
        SELECT c.relname
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_class p ON p.oid = i.inhparent
        WHERE p.oid = to_regclass(%s) AND p.relkind = 'p'
        """,
        (table,),
    ).fetchall()
    return {str(row[0]) for row in rows}


def is_range_partitioned(conn: psycopg.Connection, table: str) -> bool:
    """Whether ``table`` is a native partitioned table (False for a TimescaleDB hypertable)."""
    row = conn.execute(
        "SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass(%s)", (table,)
    ).fetchone()
    return bool(row and row[0])


def grant_reads_like_parent(conn: psycopg.Connection, table: str, partition: str) -> list[str]:
    """Grant SELECT on ``partition`` to every role (or PUBLIC) that may SELECT ``table``.

    Run by the owner inside the transaction that creates the partition.

    Returns:
        The grantees (role names, ``PUBLIC``); empty when only the owner reads the parent.
    """
    # aclexplode's grantee 0 is PUBLIC, which has no pg_roles row.
    rows = conn.execute(
        """
        SELECT DISTINCT a.grantee = 0, r.rolname
        FROM pg_class c
        CROSS JOIN LATERAL aclexplode(c.relacl) AS a
        LEFT JOIN pg_roles r ON r.oid = a.grantee
        WHERE c.oid = to_regclass(%s) AND a.privilege_type = 'SELECT'
          AND a.grantee <> c.relowner
        ORDER BY 1, 2
        """,
        (table,),
    ).fetchall()
    if not rows:
        return []
    conn.execute(
        sql.SQL("GRANT SELECT ON TABLE {} TO {}").format(
            sql.Identifier(partition),
            sql.SQL(", ").join(
                sql.SQL("PUBLIC") if public else sql.Identifier(str(name)) for public, name in rows
            ),
        )
    )
    return ["PUBLIC" if public else str(name) for public, name in rows]


def _create_partition(conn: psycopg.Connection, table: str, day: date) -> bool:
    """Create one day's partition, moving its rows out of DEFAULT; False if it existed."""
    name = partition_name(table, day)
    start, end = _day_bounds(day)
    default = sql.Identifier(f"{table}_default")
    staging = sql.Identifier(f"_moving_{name}")
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK_KEY,))
        # Checked again under the lock: another worker may have just created it.
        if conn.execute("SELECT to_regclass(%s)", (name,)).fetchone() != (None,):
            return False
        # CREATE ... PARTITION OF needs this lock anyway; taking it first keeps ingest from
        # adding a row of this day to DEFAULT between our move and the CREATE.
        conn.execute(
            sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(table))
        )
        # Rows of this day that arrived before the partition existed sit in DEFAULT; take
        # them out first (PostgreSQL would refuse the new partition) and put them back after.
        conn.execute(
            sql.SQL("CREATE TEMP TABLE {staging} (LIKE {table}) ON COMMIT DROP").format(
                staging=staging, table=sql.Identifier(table)
            )
        )
        conn.execute(
            sql.SQL(
                "WITH moved AS (DELETE FROM {default} WHERE ts >= %s AND ts < %s RETURNING *)"
                " INSERT INTO {staging} SELECT * FROM moved"
            ).format(staging=staging, default=default),
            (start, end),
        )
        conn.execute(
            daily_partition_sql(table, start.isoformat(), end.isoformat(), f"{day:%Y%m%d}")
        )
        grant_reads_like_parent(conn, table, name)
        moved = conn.execute(
            sql.SQL("INSERT INTO {table} SELECT * FROM {staging}").format(
                table=sql.Identifier(table), staging=staging
            )
        ).rowcount
    if moved:
        logger.info("created partition %s and moved %d rows into it from DEFAULT", name, moved)
    else:
        logger.debug("created partition %s", name)
    return True


def ensure_daily_partitions(conn: psycopg.Connection, start: date, days: int) -> list[str]:
    """Create the missing UTC-day partitions of every time-series table.

    Each partition is created in its own transaction, with the rows the DEFAULT partition
    already holds for that day moved into it.

    Args:
        conn: a connection in autocommit mode (or idle), on plain PostgreSQL.
        start: the first UTC day.
        days: how many consecutive days from ``start``.

    Returns:
        The names of the partitions created (empty when all existed).

    Raises:
        StorageError: a table is not range-partitioned (a TimescaleDB hypertable), or the
            database refused a statement.
    """
    created: list[str] = []
    try:
        for table in TIME_SERIES_TABLES:
            if not is_range_partitioned(conn, table):
                raise StorageError(
                    f"expected {table} to be a range-partitioned table (plain PostgreSQL "
                    "schema), got a plain table or a TimescaleDB hypertable"
                )
            existing = partitions_of(conn, table)
            for offset in range(days):
                day = start + timedelta(days=offset)
                if partition_name(table, day) in existing:
                    continue
                if _create_partition(conn, table, day):
                    created.append(partition_name(table, day))
    except psycopg.Error as exc:
        raise StorageError(f"cannot create daily partitions: {exc}") from exc
    return created


def _drop_partition(conn: psycopg.Connection, table: str, name: str) -> bool:
    """Detach and drop one partition; False if another worker dropped it first."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK_KEY,))
        if conn.execute("SELECT to_regclass(%s)", (name,)).fetchone() == (None,):
            return False
        conn.execute(
            sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(
                sql.Identifier(table), sql.Identifier(name)
            )
        )
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
    return True


def drop_partitions_before(conn: psycopg.Connection, day: date) -> list[str]:
    """Retention: detach and drop every daily partition of a UTC day before ``day``.

    The DEFAULT partition is never touched.

    Args:
        conn: a connection in autocommit mode (or idle), on plain PostgreSQL.
        day: the first UTC day to keep.

    Returns:
        The names of the partitions dropped.

    Raises:
        StorageError: the database refused a statement.
    """
    dropped: list[str] = []
    try:
        for table in TIME_SERIES_TABLES:
            for name in sorted(partitions_of(conn, table)):
                match = _DAY_SUFFIX.search(name)
                if not match or name != f"{table}{match.group(0)}":
                    continue
                if datetime.strptime(match.group(1), "%Y%m%d").date() >= day:
                    continue
                if _drop_partition(conn, table, name):
                    dropped.append(name)
                    logger.info("dropped partition %s (retention before %s)", name, day)
    except psycopg.Error as exc:
        raise StorageError(f"cannot drop old partitions: {exc}") from exc
    return dropped
