"""The real services a benchmark runs against: given ones, or private ones it starts."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack

from crowdwatch.devservices import MosquittoBroker, PgServer, find_binary, start_pg_server


def bench_services(
    stack: ExitStack, database_url: str | None, broker: str | None, say: Callable[[str], None]
) -> tuple[PgServer, tuple[str, int]]:
    """PostgreSQL and an MQTT broker for one benchmark run, stopped when ``stack`` closes.

    Args:
        stack: owns what is started here.
        database_url: admin URL of a running PostgreSQL; None starts a private one.
        broker: ``HOST:PORT`` of a running MQTT 5 broker; None starts a private mosquitto.
        say: progress lines for the console.

    Returns:
        The database server and the broker's (host, port).
    """
    if database_url:
        pg = PgServer(database_url)
    else:
        say("starting a private PostgreSQL ...")
        pg = start_pg_server(None)
        stack.callback(pg.close)
    if broker:
        host, _, port = broker.rpartition(":")
        return pg, (host, int(port))
    say("starting a private mosquitto ...")
    mosquitto = MosquittoBroker(find_binary())
    stack.callback(mosquitto.close)
    mosquitto.start()
    return pg, (mosquitto.host, mosquitto.port)
