"""Private PostgreSQL and mosquitto servers for the test suite and the benchmarks.

Each runs from a temporary folder on a free port (Debian's ``initdb``/``pg_ctl`` and
``mosquitto``, installed with apt when missing and allowed) and is stopped by its owner.
Nothing here is imported by the production processes.
"""

from __future__ import annotations

from crowdwatch.devservices.host import ServiceStartError, ServiceUnavailable
from crowdwatch.devservices.mosquitto import MosquittoBroker, find_binary
from crowdwatch.devservices.postgres import PgServer, start_pg_server

__all__ = [
    "MosquittoBroker",
    "PgServer",
    "ServiceStartError",
    "ServiceUnavailable",
    "find_binary",
    "start_pg_server",
]
