"""Hostile count messages against the real processes: ``crowdwatch ingest`` and two
``crowdwatch alerts`` (active and standby), as the demo runs them, on the real broker and
database.

Between valid messages of two sites, every payload of tests/hostile.py is published (a
``frames`` of 5000 digits, a 4301-digit float, nesting 100000 deep, NUL and lone surrogates,
a 1 MiB+ payload, ...).  Afterwards all three processes still run, the valid messages before
and after are in ``zone_counts``, each hostile one is in ``dead_letters`` with its reason,
and the engine still fires on the valid counts that follow.  The standby speaks MQTT 3.1.1,
as the demo's broker does, so the oversized payload reaches it (MQTT 5's Maximum Packet Size
keeps it from the other) and is dropped by its inbox.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from factories import config_dict, count_message, make_config, site_dict, write_config
from hostile import hostile_payloads
from services.components import CrowdwatchProcess

from crowdwatch.contracts.config import CrowdwatchConfig, MqttConfig
from crowdwatch.contracts.messages import CountMessage, TopicKind, camera_topic, encode
from crowdwatch.mqtt.client import MqttClient
from crowdwatch.storage.migrate import upgrade

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

TIMEOUT_S = 30.0
CROWDED = 45  # capacity 50: the rule fires at 0.8


def _district(mqtt: MqttConfig) -> CrowdwatchConfig:
    raw = config_dict(site_dict("stop-a"), site_dict("stop-b"))
    raw["alerts"] = {
        "evaluate_every_s": 0.2,
        "lease_s": 4.0,
        "rules": [{"id": "crowded", "metric": "occupancy_ratio", "fire_at": 0.8, "clear_at": 0.5}],
    }
    return make_config(raw, mqtt=mqtt.model_dump())


def _wait(condition: Callable[[], object], what: str, procs: list[CrowdwatchProcess]) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        for proc in procs:
            assert proc.poll() is None, f"a process exited while waiting for {what}:\n" + (
                proc.log_tail()
            )
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


class District:
    """The processes under test, the test's publisher, and the database they share."""

    def __init__(self, db_url: str, mqtt: MqttConfig, tmp_path: Path) -> None:
        self.db_url = db_url
        self.config = _district(mqtt)
        upgrade(db_url, self.config)
        v5 = write_config(self.config, tmp_path / "district.yaml")
        v311 = self.config.model_copy(
            update={"mqtt": mqtt.model_copy(update={"protocol": "3.1.1"})}
        )
        env = {"CROWDWATCH_DATABASE_URL": db_url}
        self.ingest = CrowdwatchProcess(
            ["ingest", "--config", str(v5)], tmp_path / "ingest.log", env=env
        )
        self.engines = [
            CrowdwatchProcess(
                ["alerts", "--config", str(path)], tmp_path / f"alerts-{n}.log", env=env
            )
            for n, path in enumerate((v5, write_config(v311, tmp_path / "district-311.yaml")))
        ]
        self.procs = [self.ingest, *self.engines]
        self.publisher = MqttClient(mqtt, f"test-hostile-{uuid.uuid4().hex[:8]}")
        self.prefix = mqtt.topic_prefix

    def start(self) -> None:
        for proc in self.procs:
            proc.start()
        self.publisher.connect()

    def close(self) -> None:
        self.publisher.close()
        for proc in self.procs:
            proc.terminate()

    def topic(self, site: str) -> str:
        return camera_topic(self.prefix, site, "cam1", TopicKind.COUNTS)

    def publish(self, message: CountMessage) -> None:
        self.publisher.publish(self.topic(message.site_id), encode(message))

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.db_url) as conn:
            return list(conn.execute(sql).fetchall())

    def stored(self) -> set[str]:
        return {str(r[0]) for r in self.query("SELECT message_id FROM zone_counts")}

    def engines_ready(self) -> bool:
        # Both engines log their start once connected and subscribed.
        return all(
            "alert engine" in p.log_tail(200) and "started" in p.log_tail(200) for p in self.engines
        )


@pytest.fixture
def district(db_url: str, mqtt_config: MqttConfig, tmp_path: Path) -> Iterator[District]:
    made = District(db_url, mqtt_config, tmp_path)
    try:
        made.start()
        yield made
    finally:
        made.close()


def test_hostile_messages_leave_ingest_and_both_engines_running_and_their_neighbours_stored(
    district: District,
) -> None:
    procs = district.procs
    _wait(district.engines_ready, "both alert engines to start", procs)
    # The ingest subscribes after its migration: publish until a probe is stored.
    probes: list[str] = []

    def probe_stored() -> bool:
        message = count_message(site_id="stop-a", count=1)
        probes.append(message.message_id)
        district.publish(message)
        time.sleep(0.3)
        return bool(district.stored() & set(probes))

    _wait(probe_stored, "the ingest to store a first message", procs)
    _wait(lambda: district.query("SELECT 1 FROM alert_engine_lease"), "an active engine", procs)

    now = datetime.now(UTC)
    hostile = hostile_payloads(now)
    before = [count_message(site_id=s, count=2, ts=now) for s in ("stop-a", "stop-b")]
    for message in before:
        district.publish(message)
    for h in hostile:
        district.publisher.publish(
            camera_topic(district.prefix, "stop-a", "cam1", TopicKind(h.kind)), h.payload
        )
    after = [count_message(site_id="stop-b", count=CROWDED), count_message(site_id="stop-a")]
    for message in after:
        district.publish(message)

    wanted = {m.message_id for m in before + after}
    _wait(lambda: wanted <= district.stored(), "the valid messages in zone_counts", procs)
    _wait(
        lambda: len(district.query("SELECT 1 FROM dead_letters")) >= len(hostile),
        "the hostile messages in dead_letters",
        procs,
    )
    reasons = [str(r) for (r,) in district.query("SELECT reason FROM dead_letters ORDER BY id")]
    assert len(reasons) == len(hostile), reasons
    for h, reason in zip(hostile, reasons, strict=True):
        assert h.reason in reason, (h.name, reason)
    # The active engine still evaluates: the crowded count after the hostile ones fires.
    _wait(
        lambda: district.query(
            "SELECT 1 FROM alerts WHERE alert_key = 'stop-b/platform/crowded' AND state = 'firing'"
        ),
        "the alert on the crowded count published after the hostile ones",
        procs,
    )
    for proc in procs:
        assert proc.poll() is None, proc.log_tail()
    for engine in district.engines:
        # Each engine received them (active and standby alike) and left them out.
        assert "left out" in engine.log_tail(400), engine.log_tail()
        assert "Traceback" not in engine.log_tail(400), engine.log_tail()
    assert "Traceback" not in district.ingest.log_tail(400), district.ingest.log_tail()
