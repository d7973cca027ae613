"""Connections to PostgreSQL, with psycopg errors translated to :class:`StorageError`."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.conninfo import conninfo_to_dict

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
        message = f"cannot connect to PostgreSQL ({url}): {reason}"
        raise StorageError(redact_dsn(message, url)) from exc


@contextmanager
def transaction(conn: psycopg.Connection) -> Iterator[psycopg.Cursor[tuple[object, ...]]]:
    """A cursor inside one transaction; psycopg errors leave as :class:`StorageError`."""
    try:
        with conn.transaction(), conn.cursor() as cur:
            yield cur
    except psycopg.Error as exc:
        raise StorageError(f"database statement failed: {exc}") from exc


# Every place a libpq password can stand: a ``password=``/``sslpassword=`` keyword (bare or
# quoted, in a key=value string or a URL's query; a misspelt ``passwd=`` too, which libpq
# quotes back as an invalid option) and a URL's ``user:password@``.
_KEYWORD_SECRET = re.compile(r"(?i)(\w*pass\w*\s*=\s*)('(?:\\.|[^'\\])*'?|[^\s&]*)")
_URL_SECRET = re.compile(r"(?i)([a-z][a-z0-9+.-]*://[^:/?#@\s]*):\S*@")
_URL_PASSWORD = re.compile(r"(?i)([a-z][a-z0-9+.-]*://[^:/?#@\s]*):(\S*)@")


def redact_dsn(text: str, dsn: str | None = None) -> str:
    """``text`` with every database password in it replaced by ``***``.

    Masks ``password=...`` in a key=value string or a URL query, a URL's ``user:pass@``, and
    (when ``dsn`` is given and parses) that DSN's password wherever else it appears, such as
    quoted back by libpq in an error message.

    Args:
        text: a message that may hold a connection string.
        dsn: the connection string the message is about, if known.

    Returns:
        The text with the secrets masked.

    Example:
        >>> redact_dsn("host=db user=web password='a b' dbname=cw")
        'host=db user=web password=*** dbname=cw'
        >>> redact_dsn("postgresql://web:s3cret@db/cw?sslpassword=x")
        'postgresql://web:***@db/cw?sslpassword=***'
    """
    masked = _URL_SECRET.sub(r"\1:***@", _KEYWORD_SECRET.sub(r"\1***", text))
    for secret in _passwords_in(dsn) if dsn else ():
        masked = masked.replace(secret, "***")
    return masked


def _passwords_in(dsn: str) -> set[str]:
    """The passwords a DSN holds, parsed by libpq or, for a DSN it refuses, by pattern."""
    found = {m.group(2).strip("'") for m in _KEYWORD_SECRET.finditer(dsn)}
    found |= {m.group(2) for m in _URL_PASSWORD.finditer(dsn)}
    # Unparsable: the patterns above are all there is to go on.
    with contextlib.suppress(psycopg.Error):
        found.add(str(conninfo_to_dict(dsn).get("password") or ""))
    return {s for s in found if s}
