"""Real services for the test suite: a private PostgreSQL and a private mosquitto.

``tests/conftest.py`` turns these into pytest fixtures; nothing here is mocked.  Each service
runs from a temporary folder on a free port and is stopped at the end of the session.

Set ``CROWDWATCH_TEST_DATABASE_URL`` (admin URL of a running PostgreSQL) or
``CROWDWATCH_TEST_MQTT`` (``host:port`` of a running broker) to use existing services instead.
"""

from __future__ import annotations

from services.host import ServiceStartError, ServiceUnavailable
from services.mosquitto import ExternalBroker, MosquittoBroker, MqttBroker
from services.postgres import PgServer, start_pg_server
from services.threads import lingering_threads, wait_for_threads

__all__ = [
    "ExternalBroker",
    "MosquittoBroker",
    "MqttBroker",
    "PgServer",
    "ServiceStartError",
    "ServiceUnavailable",
    "lingering_threads",
    "start_pg_server",
    "wait_for_threads",
]
