"""The test PostgreSQL: now in :mod:`crowdwatch.devservices.postgres`."""

from __future__ import annotations

from crowdwatch.devservices.postgres import (
    PgServer,
    PostgresCluster,
    database_name,
    database_url,
    find_bindir,
    start_pg_server,
)

__all__ = [
    "PgServer",
    "PostgresCluster",
    "database_name",
    "database_url",
    "find_bindir",
    "start_pg_server",
]
