"""Create or upgrade the database schema, its daily partitions, and the site registry.

:func:`upgrade` is safe to call from every process at start, several at once: a session-level
advisory lock lets one of them migrate while the others wait, and then find nothing to do.
Each migration runs in its own transaction together with its row in ``schema_migrations``,
so a failed migration leaves the database at the previous version.

A database is migrated either for TimescaleDB (hypertables) or for plain PostgreSQL (daily
range partitions); the mode is recorded per migration and an existing database keeps its
mode, whatever the server offers later.

Only the schema owner migrates.  A process that connects as a least-privilege user
(``database.ingest_url``, :mod:`crowdwatch.storage.roles`) calls :func:`require_schema`
instead, and when the group roles exist :func:`upgrade` re-grants their privileges after
migrating, so a new table is never left without them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import psycopg

from crowdwatch.contracts.config import CrowdwatchConfig
from crowdwatch.contracts.db_schema import Migration, migrations
from crowdwatch.contracts.errors import StorageError
from crowdwatch.storage.db import connect
from crowdwatch.storage.partitions import ensure_daily_partitions
from crowdwatch.storage.roles import apply_grants

logger = logging.getLogger(__name__)

MIGRATION_LOCK_KEY = 0x63770001
"""Advisory lock held by the process migrating the schema (any bigint unique to us)."""

PARTITION_DAYS_BEHIND = 1
"""Partitions kept ready before today (UTC): yesterday's late messages."""

PARTITION_DAYS_AHEAD = 7
"""Partitions kept ready after today (UTC), so a week without maintenance is harmless."""

LATEST_VERSION = max(m.version for m in migrations(timescale=False))
"""The schema version this release migrates to."""

DEFAULT_ROLES_PREFIX = "crowdwatch"
"""Group roles re-granted by an :func:`upgrade` without a config."""

_CREATE_SCHEMA_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    timescale   boolean NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class TimescaleSupport:
    """What the server offers of TimescaleDB."""

    installed: bool
    """``pg_available_extensions`` lists ``timescaledb``."""
    preloaded: bool
    """``shared_preload_libraries`` names it (without it the extension refuses to load)."""

    @property
    def usable(self) -> bool:
        return self.installed and self.preloaded

    def problem(self) -> str:
        """Why it cannot be used, and the fix; empty when it can."""
        if not self.installed:
            return "the server does not offer the timescaledb extension (pg_available_extensions)"
        if not self.preloaded:
            return (
                "timescaledb is installed but not preloaded: add it to shared_preload_libraries "
                "in postgresql.conf and restart the server"
            )
        return ""


def timescale_support(conn: psycopg.Connection) -> TimescaleSupport:
    """Whether the server has the ``timescaledb`` package, and whether it preloads it.

    A server with the package installed but not in ``shared_preload_libraries`` lists it in
    ``pg_available_extensions`` and still refuses ``CREATE EXTENSION`` (and every query on a
    hypertable) with "extension must be preloaded", so both are needed.  The setting itself
    is readable by superusers only, and crowdwatch's processes need not be; the settings that
    TimescaleDB's preloaded loader defines are in ``pg_settings`` for everyone, and a mere
    mention in ``postgresql.conf`` (a placeholder) is not.

    Args:
        conn: any open connection, as any user.
    """
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'),"
        " EXISTS (SELECT 1 FROM pg_settings WHERE name = ANY(%s))",
        (list(_LOADER_SETTINGS),),
    ).fetchone()
    if row is None:
        return TimescaleSupport(installed=False, preloaded=False)
    return TimescaleSupport(installed=bool(row[0]), preloaded=bool(row[1]))


_LOADER_SETTINGS = ("timescaledb.max_background_workers", "timescaledb.bgw_launcher_poll_time")
"""Defined by TimescaleDB's loader, which only runs from ``shared_preload_libraries``."""


def timescale_available(conn: psycopg.Connection) -> bool:
    """Whether the server can use TimescaleDB: installed and preloaded (see above)."""
    return timescale_support(conn).usable


def recorded_mode(conn: psycopg.Connection) -> bool | None:
    """The TimescaleDB mode the database was migrated with; None if never migrated."""
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return None
    row = conn.execute(
        "SELECT timescale FROM schema_migrations ORDER BY version LIMIT 1"
    ).fetchone()
    return None if row is None else bool(row[0])


def schema_version(conn: psycopg.Connection) -> int:
    """The highest migration applied; 0 for a database never migrated."""
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def require_schema(url: str) -> int:
    """Check, without changing anything, that the database is migrated for this release.

    For processes that connect as a least-privilege user, which may not migrate.

    Args:
        url: libpq URL (any user that may read ``schema_migrations``).

    Returns:
        The schema version.

    Raises:
        StorageError: unreachable, not readable by this user, or at an older version (the
            message says to run ``crowdwatch db upgrade`` as the owner).
    """
    with connect(url, autocommit=True) as conn:
        try:
            version = schema_version(conn)
            support = timescale_support(conn) if recorded_mode(conn) else None
        except psycopg.Error as exc:
            raise StorageError(
                f"cannot read the schema version: {exc}; run `crowdwatch db roles` as the "
                "owner to grant this user its privileges"
            ) from exc
    if support is not None and not support.usable:
        raise StorageError(f"the database was migrated with TimescaleDB but {support.problem()}")
    if version < LATEST_VERSION:
        raise StorageError(
            f"database schema at version {version}, this crowdwatch needs {LATEST_VERSION}: "
            "run `crowdwatch db upgrade` (or start `crowdwatch db maintain`) with the owner's "
            "database.url first"
        )
    return version


def ensure_partition_window(conn: psycopg.Connection, today: date | None = None) -> list[str]:
    """Keep daily partitions ready from yesterday to a week ahead (plain PostgreSQL only).

    The owner's maintenance calls this hourly (:mod:`crowdwatch.storage.maintenance`).

    Args:
        conn: a connection in autocommit mode, to a migrated database.
        today: the current UTC day (default: now).

    Returns:
        The partitions created; empty on TimescaleDB, whose chunks need no upkeep.
    """
    if recorded_mode(conn) is not False:
        return []
    today = today or datetime.now(UTC).date()
    start = today - timedelta(days=PARTITION_DAYS_BEHIND)
    return ensure_daily_partitions(conn, start, PARTITION_DAYS_BEHIND + 1 + PARTITION_DAYS_AHEAD)


def _apply(conn: psycopg.Connection, migration: Migration, timescale: bool) -> None:
    with conn.transaction():
        # A migration may have nothing for one of its parts; PostgreSQL refuses an empty query.
        for statement in (
            migration.common_sql,
            migration.timescale_sql if timescale else migration.plain_sql,
        ):
            if statement.strip():
                conn.execute(statement)
        conn.execute(
            "INSERT INTO schema_migrations (version, name, timescale) VALUES (%s, %s, %s)",
            (migration.version, migration.name, timescale),
        )
    logger.info(
        "applied migration %d (%s)%s",
        migration.version,
        migration.name,
        " with TimescaleDB" if timescale else "",
    )


def _migrate(conn: psycopg.Connection, requested: bool | None) -> tuple[int, bool]:
    """Apply the missing migrations; returns (schema version, timescale mode)."""
    conn.execute(_CREATE_SCHEMA_MIGRATIONS)
    mode = recorded_mode(conn)
    if mode is None:
        support = timescale_support(conn)
        if requested and not support.usable:
            raise StorageError(
                f"TimescaleDB was requested but {support.problem()}; or pass timescale=False"
            )
        if requested is None and support.installed and not support.preloaded:
            # The plain path works; say how to get TimescaleDB, since the mode is fixed from
            # the first migration on.
            logger.warning(
                "migrating for plain PostgreSQL, not TimescaleDB: %s before the first upgrade",
                support.problem(),
            )
        mode = support.usable if requested is None else requested
    elif mode and not (support := timescale_support(conn)).usable:
        raise StorageError(f"the database was migrated with TimescaleDB but {support.problem()}")
    elif requested is not None and requested != mode:
        logger.warning(
            "database was migrated %s TimescaleDB; keeping that mode (requested %s)",
            "with" if mode else "without",
            requested,
        )
    applied = {
        int(row[0]) for row in conn.execute("SELECT version FROM schema_migrations").fetchall()
    }
    version = max(applied, default=0)
    for migration in migrations(mode):
        if migration.version not in applied:
            _apply(conn, migration, mode)
            version = max(version, migration.version)
    return version, mode


def sync_sites(conn: psycopg.Connection, config: CrowdwatchConfig) -> None:
    """Make ``sites`` and ``zones`` match the config, in one transaction.

    Sites and zones no longer in the config are deleted; their raw counts stay.

    Args:
        conn: a connection in autocommit mode, to a migrated database.
        config: the district config.
    """
    site_rows = [
        (
            s.id,
            s.kind.value,
            s.name.zh,
            s.name.en,
            s.location.lat,
            s.location.lon,
            s.capacity,
            s.department.value,
        )
        for s in config.sites
    ]
    zone_rows = [
        (site.id, cam.id, z.id, z.name.zh, z.name.en, z.capacity)
        for site, cam in config.cameras()
        for z in cam.zones
    ]
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            """
            INSERT INTO sites (site_id, kind, name_zh, name_en, lat, lon, capacity, department)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (site_id) DO UPDATE SET
                kind = EXCLUDED.kind, name_zh = EXCLUDED.name_zh, name_en = EXCLUDED.name_en,
                lat = EXCLUDED.lat, lon = EXCLUDED.lon, capacity = EXCLUDED.capacity,
                department = EXCLUDED.department, updated_at = now()
            """,
            site_rows,
        )
        cur.execute("DELETE FROM sites WHERE site_id <> ALL(%s)", ([r[0] for r in site_rows],))
        cur.executemany(
            """
            INSERT INTO zones (site_id, camera_id, zone_id, name_zh, name_en, capacity)
            VALUES (%s, %s, %s, %s, %s, %s)
            ON CONFLICT (site_id, zone_id) DO UPDATE SET
                camera_id = EXCLUDED.camera_id, name_zh = EXCLUDED.name_zh,
                name_en = EXCLUDED.name_en, capacity = EXCLUDED.capacity
            """,
            zone_rows,
        )
        cur.execute(
            """
            DELETE FROM zones z
            WHERE NOT EXISTS (
                SELECT 1 FROM unnest(%s::text[], %s::text[]) AS keep (site_id, zone_id)
                WHERE keep.site_id = z.site_id AND keep.zone_id = z.zone_id
            )
            """,
            ([r[0] for r in zone_rows], [r[2] for r in zone_rows]),
        )
    logger.info("synced %d sites and %d zones from the config", len(site_rows), len(zone_rows))


def upgrade(
    url: str, config: CrowdwatchConfig | None = None, *, timescale: bool | None = None
) -> int:
    """Create or upgrade the schema, keep partitions ready, sync the sites, re-grant the roles.

    Safe to run from several processes at once (an advisory lock serialises them) and
    idempotent: a second call applies nothing.

    Args:
        url: libpq URL of the database.
        config: when given, ``sites`` and ``zones`` are made to match it.
        timescale: use TimescaleDB hypertables; default: when the server has the extension
            installed and preloaded (installed only: plain, with a warning).  Ignored (with a warning) for a database already migrated in the
            other mode.

    Returns:
        The schema version now in the database.

    Raises:
        StorageError: the database is unreachable or refused a statement (message says which).

    Example:
        >>> version = upgrade(owner_url, load_config("district.yaml"))  # doctest: +SKIP
    """
    conn = connect(url, autocommit=True)
    try:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            version, mode = _migrate(conn, timescale)
            if not mode:
                ensure_partition_window(conn)
            if config is not None:
                sync_sites(conn, config)
            apply_grants(
                conn, config.database.roles_prefix if config is not None else DEFAULT_ROLES_PREFIX
            )
        finally:
            if not conn.broken:
                conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    except psycopg.Error as exc:
        raise StorageError(f"database upgrade failed: {exc}") from exc
    finally:
        conn.close()
    return version
