"""The test fixtures' services work: databases are real and separate, the broker delivers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg
import pytest
from services import MqttBroker, PgServer

from crowdwatch.contracts.config import MqttConfig
from crowdwatch.mqtt.client import MqttClient

DELIVERY_TIMEOUT_S = 10.0


def test_database_url_accepts_ddl_and_queries(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute("CREATE TABLE probe (id int PRIMARY KEY, name text NOT NULL)")
        conn.execute("INSERT INTO probe VALUES (1, %s)", ("三亚湾",))
        rows = conn.execute("SELECT id, name FROM probe").fetchall()
    assert rows == [(1, "三亚湾")]


def test_each_db_url_is_its_own_database(db_url: str, pg_server: PgServer) -> None:
    other = pg_server.create_database()
    try:
        assert other != db_url
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("CREATE TABLE only_here (x int)")
        with psycopg.connect(other, autocommit=True) as conn:
            found = conn.execute("SELECT to_regclass('only_here')").fetchone()
            names = conn.execute("SELECT current_database()").fetchone()
        assert found == (None,)
        assert names is not None
        assert names[0] != psycopg.conninfo.conninfo_to_dict(db_url)["dbname"]
    finally:
        pg_server.drop_database(other)


def test_dropped_database_is_gone(pg_server: PgServer) -> None:
    url = pg_server.create_database()
    pg_server.drop_database(url)
    with pytest.raises(psycopg.OperationalError, match="does not exist"):
        psycopg.connect(url, connect_timeout=5).close()


def _connected_pair(config: MqttConfig) -> tuple[MqttClient, MqttClient]:
    subscriber = MqttClient(config, client_id=f"{config.topic_prefix}-sub")
    publisher = MqttClient(config, client_id=f"{config.topic_prefix}-pub")
    subscriber.connect()
    try:
        publisher.connect()
    except BaseException:
        subscriber.close()
        raise
    return subscriber, publisher


class Inbox:
    """Collects messages from paho's thread and lets the test wait for the n-th one."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._arrived = threading.Event()

    def __call__(self, topic: str, payload: bytes) -> None:
        with self._lock:
            self.messages.append((topic, payload))
        self._arrived.set()

    def wait_for(self, payload: bytes, timeout_s: float = DELIVERY_TIMEOUT_S) -> bool:
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                if any(p == payload for _, p in self.messages):
                    return True
                self._arrived.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._arrived.wait(remaining):
                with self._lock:
                    return any(p == payload for _, p in self.messages)


def _wait_until(condition: Callable[[], bool], timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_broker_delivers_qos1_between_clients(mqtt_config: MqttConfig) -> None:
    topic = f"{mqtt_config.topic_prefix}/probe"
    subscriber, publisher = _connected_pair(mqtt_config)
    try:
        inbox = Inbox()
        subscriber.subscribe(topic, inbox)
        # SUBACK is not awaited by MqttClient.subscribe: publish until the first copy arrives.
        assert _wait_until(lambda: _publish_and_check(publisher, topic, b"hello", inbox), 10)
        assert (topic, b"hello") in inbox.messages
    finally:
        publisher.close()
        subscriber.close()


def _publish_and_check(publisher: MqttClient, topic: str, payload: bytes, inbox: Inbox) -> bool:
    publisher.publish(topic, payload, qos=1)
    return inbox.wait_for(payload, timeout_s=0.5)


def test_broker_restart_on_same_port_and_clients_reconnect(
    mqtt_broker: MqttBroker, mqtt_config: MqttConfig
) -> None:
    port = mqtt_broker.port
    topic = f"{mqtt_config.topic_prefix}/after-restart"
    subscriber, publisher = _connected_pair(mqtt_config)
    try:
        inbox = Inbox()
        subscriber.subscribe(topic, inbox)
        mqtt_broker.stop()
        assert _wait_until(lambda: not publisher.connected and not subscriber.connected, 10)
        mqtt_broker.start()
        assert mqtt_broker.port == port
        # paho reconnects in the background (1 s backoff first); MqttClient resubscribes.
        assert _wait_until(lambda: publisher.connected and subscriber.connected)
        assert _wait_until(lambda: _publish_and_check(publisher, topic, b"back", inbox), 10)
    finally:
        mqtt_broker.ensure_running()
        publisher.close()
        subscriber.close()
