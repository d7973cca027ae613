"""The alert engine SIGKILLed while an alert is pending, firing, or being delivered.

Each test runs ``crowdwatch alerts`` as a real process against the real database and broker,
with counts published over MQTT (a real ingest writes them to PostgreSQL as well), a real
recording webhook server as the only channel, and a listener on the MQTT alerts topic.  The
engine is killed with SIGKILL (no clean stop: its lease is not released, its delivery
threads die mid-flight) and a second engine is started; what people were told is then
counted at the receivers:

- killed while an alert is *pending*: the alert still fires, at the time its pending period
  started before the kill (the timer lives in ``alert_pending``), not a pending period after
  the restart, and exactly once;
- killed while it is *firing*: the next engine does not announce it again and still
  resolves it, once;
- killed while the webhook has the notification but has not answered: the next engine sends
  it again (a delivery not confirmed is not a delivery), and both requests carry the same
  notification ``id`` and ``Idempotency-Key`` so the receiver can drop the repeat.

The last case is the window at-least-once delivery cannot close: between a channel taking a
notification and the engine recording it ``sent``.  The MQTT alerts topic has the same
window (publish, PUBACK, then the record); a repeat there carries the same ``message_id``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from factories import config_dict, count_message, make_config, site_dict, write_config
from services.components import CrowdwatchProcess
from sinks import HttpSink

from crowdwatch.contracts.config import CrowdwatchConfig, MqttConfig
from crowdwatch.contracts.errors import BrokerError
from crowdwatch.contracts.messages import (
    AlertMessage,
    TopicKind,
    alert_topic,
    camera_topic,
    decode_alert,
    encode,
)
from crowdwatch.ingest import IngestService
from crowdwatch.mqtt.client import MqttClient
from crowdwatch.storage.migrate import upgrade

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

KEY = "stop-a/platform/crowded"
LEASE_S = 4.0
"""The lease a killed engine leaves behind: the next one takes over when it expires."""
FOR_S = 10.0
"""The pending period of the pending case: longer than kill + lease + start of the next."""
CROWDED, CALM = 45, 10  # capacity 50: fire at 0.8 (40), clear below 0.5 (25)
TIMEOUT_S = 30.0


def district(db_url: str, mqtt: MqttConfig, sink_url: str, *, for_s: float) -> CrowdwatchConfig:
    raw = config_dict(site_dict("stop-a"))
    raw["alerts"] = {
        "evaluate_every_s": 0.2,
        "lease_s": LEASE_S,
        "rules": [
            {
                "id": "crowded",
                "metric": "occupancy_ratio",
                "fire_at": 0.8,
                "clear_at": 0.5,
                "for_s": for_s,
            }
        ],
        "channels": [{"id": "hook", "type": "webhook", "url": f"{sink_url}/hook", "timeout_s": 5}],
        "routes": [{"departments": ["transport"], "notify": ["hook"]}],
        "delivery": {"attempts": 3, "backoff_s": 0.2, "max_backoff_s": 1.0},
    }
    config = make_config(raw, mqtt=mqtt.model_dump())
    upgrade(db_url, config)
    return config


def _wait(condition: Callable[[], object], what: str, timeout_s: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class AlertsProcess(CrowdwatchProcess):
    """One ``python -m crowdwatch alerts`` process; its lease holder name contains its pid."""

    def __init__(self, config_path: Path, db_url: str, log_path: Path) -> None:
        super().__init__(
            ["alerts", "--config", str(config_path)],
            log_path,
            env={"CROWDWATCH_DATABASE_URL": db_url},
        )
        self._db_url = db_url

    def holds_lease(self) -> bool:
        """Whether this process holds the unexpired engines' lease (it evaluates and notifies)."""
        returncode = self.poll()
        if returncode is not None:
            pytest.fail(f"crowdwatch alerts exited with {returncode}:\n{self.log_tail()}")
        with psycopg.connect(self._db_url) as conn:
            row = conn.execute(
                "SELECT holder FROM alert_engine_lease WHERE name = 'alerts' AND expires_at > now()"
            ).fetchone()
        return row is not None and f"-{self.pid}-" in row[0]

    def wait_active(self, timeout_s: float = TIMEOUT_S) -> datetime:
        """Wait until it holds the lease; when it was seen holding it."""
        _wait(self.holds_lease, f"engine {self.pid} to take the lease", timeout_s)
        return datetime.now(UTC)


class CountFeed:
    """Publishes a count message of ``count`` people for stop-a/cam1 every 0.25 s (ts = now)."""

    def __init__(self, mqtt: MqttConfig) -> None:
        self.count = CROWDED
        self._client = MqttClient(mqtt, f"test-alerts-feed-{uuid.uuid4().hex[:8]}")
        self._topic = camera_topic(mqtt.topic_prefix, "stop-a", "cam1", TopicKind.COUNTS)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-alerts-feed")

    def start(self) -> None:
        self._client.connect()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._client.close()

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            try:
                self._client.publish(self._topic, encode(count_message(count=self.count)))
            except BrokerError:
                continue  # the next one goes out a quarter second later


class AlertsTopic:
    """Every message on the MQTT alerts topic of the district."""

    def __init__(self, mqtt: MqttConfig) -> None:
        self.received: list[AlertMessage] = []
        self._client = MqttClient(mqtt, f"test-alerts-topic-{uuid.uuid4().hex[:8]}")
        self._client.subscribe(
            alert_topic(mqtt.topic_prefix, "+"),
            lambda _topic, payload: self.received.append(decode_alert(payload)),
        )

    def start(self) -> None:
        self._client.connect()

    def close(self) -> None:
        self._client.close()


class Rig:
    """The district's services around the engine processes under test."""

    def __init__(self, db_url: str, mqtt: MqttConfig, tmp_path: Path, *, for_s: float) -> None:
        self.sink = HttpSink()
        self.db_url = db_url
        self.config = district(db_url, mqtt, self.sink.url, for_s=for_s)
        self._config_path = write_config(self.config, tmp_path / "district.yaml")
        self._tmp_path = tmp_path
        self.engines: list[AlertsProcess] = []
        self.ingest = IngestService(
            self.config, db_url, client_id=f"test-alerts-ingest-{uuid.uuid4().hex[:8]}"
        )
        self.topic = AlertsTopic(mqtt)
        self.feed = CountFeed(mqtt)

    def start(self) -> None:
        self.ingest.start()
        self.topic.start()

    def engine(self) -> AlertsProcess:
        n = len(self.engines)
        proc = AlertsProcess(self._config_path, self.db_url, self._tmp_path / f"alerts-{n}.log")
        self.engines.append(proc)
        proc.start()
        return proc

    def hook_events(self) -> list[str]:
        return [r.body["event"] for r in self.sink.on("/hook")]

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.db_url) as conn:
            return list(conn.execute(sql).fetchall())

    def notifications(self) -> list[tuple[str, str, str, int]]:
        rows = self.query(
            "SELECT channel_id, event, state, attempts FROM notifications ORDER BY id"
        )
        return [(str(c), str(e), str(s), int(a)) for c, e, s, a in rows]

    def all_sent(self, n: int) -> bool:
        rows = self.notifications()
        return len(rows) == n and all(r[2] == "sent" for r in rows)

    def history(self) -> list[str]:
        rows = self.query("SELECT kind FROM alert_events ORDER BY at, id")
        return [str(r[0]) for r in rows]

    def close(self) -> None:
        self.feed.stop()
        for proc in self.engines:
            proc.terminate()
        self.topic.close()
        self.ingest.stop()
        self.sink.close()


@pytest.fixture
def rig_factory(
    db_url: str, mqtt_config: MqttConfig, tmp_path: Path
) -> Iterator[Callable[[float], Rig]]:
    made: list[Rig] = []

    def make(for_s: float) -> Rig:
        rig = Rig(db_url, mqtt_config, tmp_path, for_s=for_s)
        made.append(rig)
        rig.start()
        return rig

    try:
        yield make
    finally:
        for rig in made:
            rig.close()


def test_killed_while_pending_the_alert_fires_on_its_original_timer_once(
    rig_factory: Callable[[float], Rig],
) -> None:
    rig = rig_factory(FOR_S)
    first = rig.engine()
    first.wait_active()
    rig.feed.start()
    _wait(lambda: rig.query("SELECT 1 FROM alert_pending"), "the pending timer in the database")
    [(pending_since,)] = rig.query("SELECT pending_since FROM alert_pending")
    assert rig.query("SELECT 1 FROM alerts") == [], "fired before its pending period"

    first.kill()
    second = rig.engine()
    took_over = second.wait_active()
    assert took_over < pending_since + timedelta(seconds=FOR_S), "too slow to tell the timers apart"
    rig.sink.wait_for("/hook", 1, timeout=TIMEOUT_S)
    time.sleep(2.0)  # counts keep arriving: no second announcement may follow
    rig.feed.stop()
    assert second.terminate() == 0, second.log_tail()

    [(state, started_at)] = rig.query("SELECT state, started_at FROM alerts")
    assert state == "firing"
    due = pending_since + timedelta(seconds=FOR_S)
    # Due on the timer started before the kill; a restarted timer would say took_over + FOR_S.
    assert due <= started_at < due + timedelta(seconds=2), (pending_since, took_over, started_at)
    assert started_at < took_over + timedelta(seconds=FOR_S - 2)
    assert rig.hook_events() == ["firing"]
    assert [(m.alert_key, m.state, m.ts) for m in rig.topic.received] == [
        (KEY, "firing", started_at)
    ]
    assert rig.notifications() == [("mqtt", "firing", "sent", 1), ("hook", "firing", "sent", 1)]
    assert rig.history() == ["fired"]
    assert rig.query("SELECT 1 FROM alert_pending") == [], "the timer is closed with the firing"


def test_killed_while_firing_the_next_engine_does_not_repeat_it_and_still_resolves_it(
    rig_factory: Callable[[float], Rig],
) -> None:
    rig = rig_factory(0.0)
    first = rig.engine()
    first.wait_active()
    rig.feed.start()
    rig.sink.wait_for("/hook", 1, timeout=TIMEOUT_S)
    _wait(lambda: rig.all_sent(2), "the firing notifications recorded as sent")

    first.kill()
    second = rig.engine()
    second.wait_active()
    time.sleep(2.0)  # still crowded under the new engine: nothing to announce
    assert rig.hook_events() == ["firing"]
    rig.feed.count = CALM
    rig.sink.wait_for("/hook", 2, timeout=TIMEOUT_S)
    _wait(lambda: rig.all_sent(4), "the resolved notifications recorded as sent")
    time.sleep(1.0)
    rig.feed.stop()
    assert second.terminate() == 0, second.log_tail()

    assert rig.hook_events() == ["firing", "resolved"]
    assert [(m.alert_key, m.state) for m in rig.topic.received] == [
        (KEY, "firing"),
        (KEY, "resolved"),
    ]
    assert rig.notifications() == [
        ("mqtt", "firing", "sent", 1),
        ("hook", "firing", "sent", 1),
        ("mqtt", "resolved", "sent", 1),
        ("hook", "resolved", "sent", 1),
    ]
    assert rig.query("SELECT state FROM alerts") == [("resolved",)]
    assert rig.history() == ["fired", "resolved"]


def test_killed_during_a_delivery_the_next_engine_resends_it_under_the_same_key(
    rig_factory: Callable[[float], Rig],
) -> None:
    rig = rig_factory(0.0)
    rig.sink.hang.add("/hook")  # the receiver has the request but has not answered yet
    first = rig.engine()
    first.wait_active()
    rig.feed.start()
    rig.sink.wait_for("/hook", 1, timeout=TIMEOUT_S)
    # The MQTT copy went out beside it; once recorded, the only open delivery is the webhook's.
    _wait(lambda: ("mqtt", "firing", "sent", 1) in rig.notifications(), "the MQTT copy recorded")
    first.kill()
    assert ("hook", "firing", "queued", 0) in rig.notifications()

    rig.sink.hang.discard("/hook")
    rig.sink.release()
    second = rig.engine()
    second.wait_active()
    rig.sink.wait_for("/hook", 2, timeout=TIMEOUT_S)
    _wait(lambda: rig.all_sent(2), "the resent notification recorded as sent")
    time.sleep(2.0)
    rig.feed.stop()
    assert second.terminate() == 0, second.log_tail()

    # Not confirmed, so sent again (at least once); the repeat is recognisable as one.
    first_try, resent = rig.sink.on("/hook")
    assert first_try.body == resent.body and resent.body["event"] == "firing"
    [(notification_key,)] = rig.query(
        "SELECT payload->>'id' FROM notifications WHERE channel_id = 'hook'"
    )
    assert resent.body["id"] == notification_key
    assert first_try.headers["Idempotency-Key"] == resent.headers["Idempotency-Key"]
    assert resent.headers["Idempotency-Key"] == notification_key
    assert len({r.headers["Idempotency-Key"] for r in rig.sink.on("/hook")}) == 1
    assert [(m.alert_key, m.state) for m in rig.topic.received] == [(KEY, "firing")]
    assert rig.notifications() == [("mqtt", "firing", "sent", 1), ("hook", "firing", "sent", 1)]
    assert rig.history() == ["fired"]
