"""Expiry of ``dead_letters``: refused payloads are kept ``database.retention.dead_letter_days``.

A dead letter is there to be looked at (which box sends what, and why it was refused), not
kept for ever: a hostile or broken publisher can refuse itself into the table at the broker's
rate.  Each row is small (the ingest keeps 8 KiB of a payload, with its size and SHA-256), and
the owner's upkeep (:mod:`crowdwatch.storage.maintenance`: ingest as owner, or
``crowdwatch db maintain``) deletes the rows older than the limit every hour.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import psycopg

from crowdwatch.contracts.config import RetentionConfig
from crowdwatch.contracts.errors import StorageError

logger = logging.getLogger(__name__)


def dead_letter_cutoff(retention: RetentionConfig, now: datetime) -> datetime:
    """The oldest ``received_at`` kept: ``dead_letter_days`` before ``now``."""
    return now - timedelta(days=retention.dead_letter_days)


def expire_dead_letters(
    conn: psycopg.Connection, retention: RetentionConfig, *, now: datetime | None = None
) -> int:
    """Delete the dead letters received before :func:`dead_letter_cutoff`.

    Args:
        conn: a connection in autocommit mode, as the table's owner.
        retention: ``database.retention`` of the config.
        now: the current time (default: the clock).

    Returns:
        How many dead letters were deleted.

    Raises:
        StorageError: the database refused the statement or went away.
    """
    cutoff = dead_letter_cutoff(retention, now or datetime.now(UTC))
    try:
        deleted = conn.execute(
            "DELETE FROM dead_letters WHERE received_at < %s", (cutoff,)
        ).rowcount
    except psycopg.Error as exc:
        raise StorageError(f"cannot expire dead letters: {exc}") from exc
    if deleted > 0:
        logger.info("expired %d dead letters received before %s", deleted, cutoff.isoformat())
    return max(deleted, 0)
