"""The owner's upkeep of the database: daily partitions, rollups, retention, dead letters.

Creating and dropping partitions needs the table owner, and so (in this design) do the rollup
refresh and retention.  Who runs it:

* one URL for everything (``database.url`` only, as in the demo): every ingest worker runs a
  :class:`Maintenance` thread, as before;
* least-privilege users (``database.ingest_url`` set, :mod:`crowdwatch.storage.roles`): ingest
  does not, and ``crowdwatch db maintain`` does, as the owner, in a process of its own
  (:func:`run_maintenance`); ``crowdwatch db maintain --once`` is one round, for cron.

Every step is safe to run from several processes at once (advisory locks), so a second
``db maintain`` or an owner-run ingest beside it only does the same work twice.

Example:
    >>> upkeep = Maintenance.for_config(owner_url, config.database)  # doctest: +SKIP
    >>> upkeep.start()  # doctest: +SKIP
    >>> upkeep.stop()  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import psycopg

from crowdwatch.contracts.config import CrowdwatchConfig, DatabaseConfig, RetentionConfig
from crowdwatch.contracts.errors import StorageError
from crowdwatch.storage.db import connect
from crowdwatch.storage.dead_letters import expire_dead_letters
from crowdwatch.storage.migrate import ensure_partition_window, upgrade
from crowdwatch.storage.retention import RetentionResult, apply_retention
from crowdwatch.storage.rollups import RefreshResult, RollupRefresher, refresh_rollups

logger = logging.getLogger(__name__)

PARTITIONS_EVERY_S = 3600.0
"""Seconds between partition checks (a week is kept ready, so an hour is plenty)."""

RETENTION_EVERY_S = 3600.0
"""Seconds between retention runs."""


@dataclass(frozen=True, slots=True)
class MaintenanceResult:
    """What one round of :func:`maintain_once` did."""

    partitions: list[str]
    """Partitions created (empty on TimescaleDB)."""
    rollups: RefreshResult
    retention: RetentionResult
    dead_letters_expired: int = 0
    """Dead letters older than ``retention.dead_letter_days`` deleted."""


def maintain_once(conn: psycopg.Connection, database: DatabaseConfig) -> MaintenanceResult:
    """Create the coming days' partitions, refresh the rollups, apply retention, expire the
    dead letters: once.

    Args:
        conn: a connection in autocommit mode, as the owner of a migrated database.
        database: the ``database`` section (retention limits).

    Raises:
        StorageError: the database refused a statement (not the owner?) or went away.
    """
    created = ensure_partition_window(conn)
    rollups = refresh_rollups(conn, retention=database.retention)
    retention = apply_retention(conn, database.retention)
    expired = expire_dead_letters(conn, database.retention)
    return MaintenanceResult(created, rollups, retention, expired)


class Maintenance(RollupRefresher):
    """A thread that refreshes the rollups every ``interval_s``, and every hour creates the
    coming days' partitions, applies retention and expires old dead letters.

    Args:
        db_url: libpq URL of a migrated database, as its owner.
        interval_s: seconds between rollup refreshes.
        retention: the limits; bounds the refresh too.
        retention_every_s: seconds between retention runs (and dead-letter expiry); None: never.
        partitions_every_s: seconds between partition checks; None: never.
    """

    def __init__(
        self,
        db_url: str,
        interval_s: float = 20.0,
        *,
        retention: RetentionConfig | None = None,
        retention_every_s: float | None = RETENTION_EVERY_S,
        partitions_every_s: float | None = PARTITIONS_EVERY_S,
    ) -> None:
        super().__init__(
            db_url, interval_s, retention=retention, retention_every_s=retention_every_s
        )
        self._partitions_every_s = partitions_every_s
        self._last_partitions = float("-inf")
        self._dead_letter_retention = retention or RetentionConfig()
        self._dead_letters_every_s = retention_every_s
        self._last_dead_letters = float("-inf")
        self.partitions_created: list[str] = []
        """Every partition this thread created (read by tests)."""

    @classmethod
    def for_config(cls, db_url: str, database: DatabaseConfig) -> Maintenance:
        """The upkeep ``database`` asks for: rollups every ``rollup_refresh_s``, its retention."""
        return cls(db_url, database.rollup_refresh_s, retention=database.retention)

    def _work(self, conn: psycopg.Connection) -> None:
        if (
            self._partitions_every_s is not None
            and time.monotonic() - self._last_partitions >= self._partitions_every_s
        ):
            try:
                created = ensure_partition_window(conn)
            except StorageError as exc:
                # Rows of a missing day go to DEFAULT meanwhile; rollups must not wait for it.
                logger.warning("partition upkeep failed, retrying next round: %s", exc)
            else:
                self._last_partitions = time.monotonic()
                self.partitions_created.extend(created)
                if created:
                    logger.info("created partitions %s", ", ".join(created))
        self._expire_dead_letters(conn)
        super()._work(conn)

    def _expire_dead_letters(self, conn: psycopg.Connection) -> None:
        every = self._dead_letters_every_s
        if every is None or time.monotonic() - self._last_dead_letters < every:
            return
        try:
            expire_dead_letters(conn, self._dead_letter_retention)
        except StorageError as exc:
            logger.warning("dead-letter expiry failed, retrying next round: %s", exc)
        else:
            self._last_dead_letters = time.monotonic()


def run_maintenance(
    config: CrowdwatchConfig, stop: threading.Event, *, once: bool = False
) -> MaintenanceResult | None:
    """``crowdwatch db maintain``: migrate, then keep the database up to date until ``stop``.

    Connects with ``database.url`` (or ``CROWDWATCH_DATABASE_URL``): the owner's.

    Args:
        config: the district config (its sites are synced at start).
        stop: set it to stop after the round in progress.
        once: one round, then return what it did (for cron).

    Returns:
        With ``once``, the round's result; else None.

    Raises:
        ConfigError: no database URL.
        StorageError: the database is unreachable or refused at start.
    """
    url = config.database.resolved_url()
    version = upgrade(url, config)
    logger.info("database schema at version %d", version)
    if once:
        with connect(url, autocommit=True) as conn:
            return maintain_once(conn, config.database)
    upkeep = Maintenance.for_config(url, config.database)
    upkeep.start()
    logger.info(
        "maintenance started: rollups every %g s, partitions and retention hourly",
        config.database.rollup_refresh_s,
    )
    try:
        stop.wait()
    finally:
        upkeep.stop()
    return None
