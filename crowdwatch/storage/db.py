"""Connections to PostgreSQL, with psycopg errors translated to :class:`StorageError`."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from crowdwatch.contracts.errors import StorageError

logger = logging.getLogger(__name__)


def connect(url: str, *, autocommit: bool = False, timeout_s: float = 10.0) -> psycopg.Connection:
    """Open one connection.

    Raises:
        StorageError: the server is unreachable or refuses us (message names the server).
    """
    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=max(1, int(timeout_s)))
    except psycopg.Error as exc:
        # libpq's message spans lines ("...refused\n\tIs the server running..."): make it one.
        reason = " ".join(str(exc).split())
        raise StorageError(f"cannot connect to PostgreSQL ({_redact(url)}): {reason}") from exc


@contextmanager
def transaction(conn: psycopg.Connection) -> Iterator[psycopg.Cursor[tuple[object, ...]]]:
    """A cursor inside one transaction; psycopg errors leave as :class:`StorageError`."""
    try:
        with conn.transaction(), conn.cursor() as cur:
            yield cur
    except psycopg.Error as exc:
        raise StorageError(f"database statement failed: {exc}") from exc


def _redact(url: str) -> str:
    """Hide the password of a libpq URL in messages."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url
