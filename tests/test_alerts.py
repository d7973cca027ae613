"""The alert engine: pure rule evaluation (table-driven), then the engine on real DB + broker."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from factories import config_dict, make_config, site_dict
from test_queries import put_status, put_zone

from crowdwatch.analytics.engine import AlertEngine, run_alerts
from crowdwatch.analytics.evaluator import AlertEvaluator
from crowdwatch.analytics.readings import ZoneReading, ZoneStatus, zone_readings
from crowdwatch.analytics.rules import alert_key, rule_applies
from crowdwatch.analytics.summaries import firing_text, resolved_text
from crowdwatch.contracts.config import (
    AlertMetric,
    AlertRule,
    CrowdwatchConfig,
    LocalizedName,
    MqttConfig,
)
from crowdwatch.contracts.errors import BrokerError
from crowdwatch.contracts.messages import AlertMessage, alert_topic, decode_alert
from crowdwatch.mqtt.client import MqttClient
from crowdwatch.storage.migrate import upgrade
from crowdwatch.storage.queries import (
    CameraStatusRow,
    ZoneLatest,
    active_alerts,
    firing_alert,
    recent_alerts,
)

T0 = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
CONFIG = make_config()  # one bus stop "stop-a", zone "platform", capacity 50
SITE = CONFIG.sites[0]
ZONE = SITE.cameras[0].zones[0]
KEY = "stop-a/platform/crowded"


def reading(count: int | None) -> ZoneReading:
    status = ZoneStatus.OK if count is not None else ZoneStatus.STALE
    return ZoneReading(SITE, "cam1", ZONE, status, count, T0, 0.0)


def rule(**overrides: Any) -> AlertRule:
    fields: dict[str, Any] = {"id": "crowded", "metric": "occupancy_ratio", "fire_at": 0.8}
    fields.update(overrides)
    return AlertRule.model_validate(fields)


# Each step: (seconds after T0, people in the 50-person zone or None for no data).
# Expected: the transition state at each step ("" for none).
EVALUATION_CASES = [
    ("fires at the threshold", rule(), [(0, 40)], ["firing"]),
    ("stays quiet below it", rule(), [(0, 39)], [""]),
    ("no re-fire while firing", rule(), [(0, 45), (5, 50)], ["firing", ""]),
    (
        "hysteresis: resolves only below clear_at",
        rule(clear_at=0.5),
        [(0, 45), (5, 30), (10, 25), (15, 24)],
        ["firing", "", "", "resolved"],
    ),
    ("clear_at defaults to fire_at", rule(), [(0, 40), (5, 39)], ["firing", "resolved"]),
    (
        "pending period before firing",
        rule(for_s=60),
        [(0, 45), (30, 45), (60, 45), (65, 45)],
        ["", "", "firing", ""],
    ),
    (
        "a dip restarts the pending period",
        rule(for_s=60),
        [(0, 45), (30, 30), (60, 45), (90, 45), (120, 45)],
        ["", "", "", "", "firing"],
    ),
    ("no data never fires", rule(), [(0, None)], [""]),
    (
        "no data never resolves",
        rule(clear_at=0.5),
        [(0, 45), (5, None), (10, None), (15, 10)],
        ["firing", "", "", "resolved"],
    ),
    (
        "no data restarts the pending period",
        rule(for_s=60),
        [(0, 45), (30, None), (60, 45), (90, 45)],
        ["", "", "", ""],
    ),
    ("people metric", rule(metric="people", fire_at=30), [(0, 29), (5, 30)], ["", "firing"]),
]


@pytest.mark.parametrize(
    ("alert_rule", "steps", "expected"),
    [pytest.param(r, s, e, id=name) for name, r, s, e in EVALUATION_CASES],
)
def test_evaluation(
    alert_rule: AlertRule, steps: list[tuple[int, int | None]], expected: list[str]
) -> None:
    evaluator = AlertEvaluator([alert_rule])
    states = []
    for offset, count in steps:
        transitions = evaluator.evaluate([reading(count)], T0 + timedelta(seconds=offset))
        assert len(transitions) <= 1
        states.append(transitions[0].state if transitions else "")
        for t in transitions:
            assert t.key == KEY
    assert states == expected


def test_a_restored_firing_key_is_not_notified_again() -> None:
    evaluator = AlertEvaluator([rule(clear_at=0.5)])
    evaluator.restore([KEY])

    assert evaluator.evaluate([reading(45)], T0) == []
    assert [t.state for t in evaluator.evaluate([reading(10)], T0)] == ["resolved"]


def test_revert_lets_the_next_evaluation_retry() -> None:
    evaluator = AlertEvaluator([rule(for_s=60)])
    evaluator.evaluate([reading(45)], T0)
    [fired] = evaluator.evaluate([reading(45)], T0 + timedelta(seconds=60))

    evaluator.revert(fired)

    assert KEY not in evaluator.firing
    [again] = evaluator.evaluate([reading(45)], T0 + timedelta(seconds=65))
    assert again.state == "firing" and again.pending_since == T0


def test_transition_message_follows_the_contract() -> None:
    evaluator = AlertEvaluator([rule(severity="critical")])
    [transition] = evaluator.evaluate([reading(45)], T0)

    message = transition.message()

    assert isinstance(message, AlertMessage)
    assert (message.alert_key, message.site_id, message.zone_id, message.rule_id) == (
        KEY,
        "stop-a",
        "platform",
        "crowded",
    )
    assert (message.state, message.severity, message.value, message.threshold) == (
        "firing",
        "critical",
        0.9,
        0.8,
    )
    assert message.summary_zh == "甲站 候车区: 45 人, 达到容量的 90% (阈值 80%)"
    assert message.summary_en == "Stop A platform: 45 people, 90% of capacity (threshold 80%)"


XIWAN = LocalizedName(zh="西湾总站", en="Xiwan Terminus")
WAITING = LocalizedName(zh="候车区", en="Waiting area")


@pytest.mark.parametrize(
    ("text", "zh", "en"),
    [
        (
            firing_text(XIWAN, WAITING, AlertMetric.OCCUPANCY_RATIO, 85, 80, 0.85),
            "西湾总站 候车区: 85 人, 达到容量的 106% (阈值 85%)",
            "Xiwan Terminus waiting area: 85 people, 106% of capacity (threshold 85%)",
        ),
        (
            firing_text(XIWAN, WAITING, AlertMetric.PEOPLE, 85, 80, 80),
            "西湾总站 候车区: 85 人, 达到容量的 106% (阈值 80 人)",
            "Xiwan Terminus waiting area: 85 people, 106% of capacity (threshold 80 people)",
        ),
        (
            resolved_text(XIWAN, WAITING, AlertMetric.OCCUPANCY_RATIO, 40, 80, 0.6),
            "已解除 西湾总站 候车区: 40 人, 容量的 50% (低于 60%)",
            "Cleared: Xiwan Terminus waiting area: 40 people, 50% of capacity (below 60%)",
        ),
    ],
)
def test_summaries_read_at_a_glance(text: Any, zh: str, en: str) -> None:
    assert (text.zh, text.en) == (zh, en)


def _site(site_id: str, kind: str) -> dict[str, Any]:
    site = site_dict(site_id)
    site["kind"] = kind
    return site


@pytest.mark.parametrize(
    ("kinds", "sites", "site_id", "kind", "applies"),
    [
        ([], [], "stop-a", "bus_stop", True),
        (["beach"], [], "stop-a", "bus_stop", False),
        (["beach", "bus_stop"], [], "stop-a", "bus_stop", True),
        ([], ["beach-a"], "stop-a", "bus_stop", False),
        ([], ["stop-a"], "stop-a", "bus_stop", True),
        (["bus_stop"], ["beach-a"], "beach-a", "beach", False),
    ],
)
def test_rule_scope(
    kinds: list[str], sites: list[str], site_id: str, kind: str, applies: bool
) -> None:
    config = make_config(config_dict(_site("stop-a", "bus_stop"), _site("beach-a", "beach")))
    alert_rule = rule(site_kinds=kinds, sites=sites)
    assert rule_applies(alert_rule, config.site(site_id)) is applies


def test_alert_key() -> None:
    assert alert_key("beach-moon", "north", "beach-full") == "beach-moon/north/beach-full"


NOW = T0 + timedelta(hours=1)


@pytest.mark.parametrize(
    ("age_s", "camera_state", "status", "count"),
    [
        (10, None, ZoneStatus.OK, 12),
        (10, "online", ZoneStatus.OK, 12),
        (121, "online", ZoneStatus.STALE, None),
        (10, "offline", ZoneStatus.OFFLINE, None),
        (None, None, ZoneStatus.NO_DATA, None),
        (None, "offline", ZoneStatus.OFFLINE, None),
    ],
)
def test_zone_readings_classify_freshness(
    age_s: int | None, camera_state: str | None, status: ZoneStatus, count: int | None
) -> None:
    zones = []
    if age_s is not None:
        zones.append(
            ZoneLatest("stop-a", "platform", "cam1", NOW - timedelta(seconds=age_s), 12, 12, 12)
        )
    cameras = []
    if camera_state is not None:
        cameras.append(CameraStatusRow("stop-a", "cam1", NOW, camera_state, 0, 0, 0, ""))

    [zone] = zone_readings(CONFIG, zones, cameras, NOW)  # stale_after_s defaults to 120

    assert (zone.status, zone.count) == (status, count)
    assert zone.capacity == 50


# The engine against the real database and broker.


def engine_config(db_url: str, mqtt: MqttConfig, **rule_fields: Any) -> CrowdwatchConfig:
    raw = config_dict(site_dict("stop-a"), site_dict("stop-b"))
    raw["alerts"] = {
        "evaluate_every_s": 0.1,
        "stale_after_s": 60,
        "rules": [{"id": "crowded", "metric": "occupancy_ratio", "fire_at": 0.8, **rule_fields}],
    }
    raw["database"] = {"url": db_url}
    raw["mqtt"] = mqtt.model_dump()
    return make_config(raw)


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url, autocommit=True) as connection:
        yield connection


class AlertInbox:
    """A real MQTT subscriber to every alert topic of the test prefix."""

    def __init__(self, mqtt: MqttConfig) -> None:
        self._client = MqttClient(mqtt, client_id=f"test-inbox-{uuid.uuid4().hex[:8]}")
        self._messages: list[AlertMessage] = []
        self._arrived = threading.Condition()
        self._client.subscribe(alert_topic(mqtt.topic_prefix, "+"), self._on_message)
        self._client.connect()

    def _on_message(self, topic: str, payload: bytes) -> None:
        with self._arrived:
            self._messages.append(decode_alert(payload))
            self._arrived.notify_all()

    def wait_for(self, n: int, timeout: float = 10) -> list[AlertMessage]:
        with self._arrived:
            self._arrived.wait_for(lambda: len(self._messages) >= n, timeout)
            return list(self._messages)

    def close(self) -> None:
        self._client.close()


@pytest.fixture
def inbox(mqtt_config: MqttConfig) -> Iterator[AlertInbox]:
    box = AlertInbox(mqtt_config)
    try:
        yield box
    finally:
        box.close()


def test_engine_fires_once_and_survives_a_restart(
    db_url: str, mqtt_config: MqttConfig, conn: psycopg.Connection, inbox: AlertInbox
) -> None:
    config = engine_config(db_url, mqtt_config, clear_at=0.5)
    upgrade(db_url, config)
    now = datetime.now(UTC)
    put_zone(conn, "stop-a", "platform", 45, now)  # 90% of 50: crowded
    put_zone(conn, "stop-b", "platform", 10, now)  # 20%: fine

    stop = threading.Event()
    worker = threading.Thread(target=run_alerts, args=(config, stop), name="alerts")
    worker.start()
    try:
        [message] = inbox.wait_for(1)
    finally:
        stop.set()
        worker.join(timeout=20)
    assert not worker.is_alive()

    assert (message.alert_key, message.state, message.value) == (KEY, "firing", 0.9)
    row = firing_alert(conn, KEY)
    assert row is not None and row.summary_en == message.summary_en

    # A restarted engine reads the firing alert from the database and stays quiet ...
    sent: list[tuple[str, bytes]] = []
    engine = AlertEngine(config, db_url, lambda topic, payload: sent.append((topic, payload)))
    try:
        assert engine.tick() == []
        assert sent == []
        # ... until the zone clears below clear_at.
        put_zone(conn, "stop-a", "platform", 20, datetime.now(UTC))
        [resolved] = engine.tick()
    finally:
        engine.close()

    assert resolved.state == "resolved"
    [(topic, payload)] = sent
    assert topic == alert_topic(mqtt_config.topic_prefix, "stop-a")
    assert decode_alert(payload).state == "resolved"
    assert active_alerts(conn) == []
    assert [a.state for a in recent_alerts(conn)] == ["resolved"]
    assert len(inbox.wait_for(1)) == 1, "the restart must not re-notify"


@pytest.mark.parametrize(
    ("age_s", "camera_state"),
    [pytest.param(300, "online", id="stale"), pytest.param(1, "offline", id="camera-offline")],
)
def test_engine_treats_stale_and_offline_as_no_data(
    db_url: str, mqtt_config: MqttConfig, conn: psycopg.Connection, age_s: int, camera_state: str
) -> None:
    config = engine_config(db_url, mqtt_config)
    upgrade(db_url, config)
    now = datetime.now(UTC)
    put_zone(conn, "stop-a", "platform", 50, now - timedelta(seconds=age_s))
    put_status(conn, "stop-a", "cam1", camera_state, now)
    sent: list[tuple[str, bytes]] = []
    engine = AlertEngine(config, db_url, lambda topic, payload: sent.append((topic, payload)))
    try:
        assert engine.tick(now) == []
    finally:
        engine.close()
    assert sent == []
    assert active_alerts(conn) == []


def test_engine_redelivers_an_unacknowledged_alert(
    db_url: str, mqtt_config: MqttConfig, conn: psycopg.Connection
) -> None:
    config = engine_config(db_url, mqtt_config)
    upgrade(db_url, config)
    put_zone(conn, "stop-a", "platform", 45, datetime.now(UTC))
    attempts: list[bytes] = []

    def flaky_publish(topic: str, payload: bytes) -> None:
        attempts.append(payload)
        if len(attempts) == 1:
            raise BrokerError("broker did not acknowledge (test)")

    engine = AlertEngine(config, db_url, flaky_publish)
    try:
        [fired] = engine.tick()
        engine.tick()
    finally:
        engine.close()

    assert fired.state == "firing"
    assert len(attempts) == 2
    assert attempts[0] == attempts[1], "a redelivery keeps the same message_id"
    assert len(active_alerts(conn)) == 1
