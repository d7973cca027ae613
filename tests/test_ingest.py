"""The ingest service: validation rules, batch writes, and MQTT to PostgreSQL end to end."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from factories import config_dict, count_message, make_config, site_dict
from services import PgServer
from services.components import ingest_running

from crowdwatch.contracts.config import CrowdwatchConfig, DatabaseConfig, MqttConfig
from crowdwatch.contracts.errors import StorageError
from crowdwatch.contracts.messages import (
    CameraState,
    CountMessage,
    CountMethod,
    LineCount,
    StatusMessage,
    TopicKind,
    ZoneCount,
    camera_topic,
    encode,
)
from crowdwatch.ingest import IngestService
from crowdwatch.ingest.validate import Accepted, Envelope, MessageValidator, Rejected
from crowdwatch.ingest.writer import BatchWriter
from crowdwatch.mqtt.client import MqttClient
from crowdwatch.storage.migrate import upgrade

DELIVERY_TIMEOUT_S = 10.0
NOW = datetime(2026, 10, 1, 8, 0, tzinfo=UTC)


def _district(mqtt: MqttConfig | None = None) -> CrowdwatchConfig:
    site = site_dict("stop-a")
    site["cameras"][0]["lines"] = [
        {
            "id": "gate",
            "name": {"zh": "闸口", "en": "Gate"},
            "start": [380, 100],
            "end": [380, 576],
            "in_direction": [1, 0],
        }
    ]
    platform = site["cameras"][0]["zones"][0]
    kerb = {**platform, "id": "kerb", "name": {"zh": "路边", "en": "Kerb"}}
    site["cameras"][0]["zones"] = [platform, kerb]
    overrides: dict[str, Any] = {"mqtt": mqtt.model_dump()} if mqtt else {}
    return make_config(config_dict(site), **overrides)


def _topic(kind: TopicKind, site: str = "stop-a", camera: str = "cam1", prefix: str = "t") -> str:
    return camera_topic(prefix, site, camera, kind)


def _counts_payload(**changes: Any) -> bytes:
    data = json.loads(encode(count_message(ts=NOW)))
    data.update(changes)
    return json.dumps(data).encode()


# --- validation, no services -------------------------------------------------------------

VALIDATION_CASES = [
    # (name, topic kind, topic site, payload, expected reason fragment or None if accepted)
    ("valid counts", TopicKind.COUNTS, "stop-a", _counts_payload(), None),
    ("not json", TopicKind.COUNTS, "stop-a", b"{nope", "not UTF-8 JSON"),
    ("wrong schema", TopicKind.COUNTS, "stop-a", _counts_payload(schema="x/9"), "schema"),
    ("unknown site", TopicKind.COUNTS, "stop-zz", _counts_payload(site_id="stop-zz"), "unknown"),
    ("topic mismatch", TopicKind.COUNTS, "stop-a", _counts_payload(camera_id="cam9"), "topic"),
    (
        "unknown zone",
        TopicKind.COUNTS,
        "stop-a",
        _counts_payload(zones=[{"zone_id": "roof", "count": 1, "count_max": 1, "count_mean": 1}]),
        "unknown zone",
    ),
    (
        "unknown line",
        TopicKind.COUNTS,
        "stop-a",
        _counts_payload(lines=[{"line_id": "door", "in_count": 1, "out_count": 0}]),
        "unknown line",
    ),
    (
        "negative count",
        TopicKind.COUNTS,
        "stop-a",
        _counts_payload(
            zones=[{"zone_id": "platform", "count": -1, "count_max": 0, "count_mean": 0}]
        ),
        "zones.0.count",
    ),
    (
        "from the future",
        TopicKind.COUNTS,
        "stop-a",
        _counts_payload(ts=(NOW + timedelta(minutes=6)).isoformat()),
        "ahead",
    ),
    (
        "too old",
        TopicKind.COUNTS,
        "stop-a",
        _counts_payload(ts=(NOW - timedelta(days=8)).isoformat()),
        "before",
    ),
    (
        "status",
        TopicKind.STATUS,
        "stop-a",
        encode(StatusMessage(site_id="stop-a", camera_id="cam1", ts=NOW, state=CameraState.ONLINE)),
        None,
    ),
    ("counts on status topic", TopicKind.STATUS, "stop-a", _counts_payload(), "schema"),
    ("available garbage", TopicKind.AVAILABLE, "stop-a", b"maybe", "'online' or 'offline'"),
]


@pytest.mark.parametrize(
    ("kind", "site", "payload", "reason"),
    [case[1:] for case in VALIDATION_CASES],
    ids=[case[0] for case in VALIDATION_CASES],
)
def test_validation(kind: TopicKind, site: str, payload: bytes, reason: str | None) -> None:
    validator = MessageValidator(_district(MqttConfig(topic_prefix="t")))
    envelope = Envelope(_topic(kind, site), payload, received_at=NOW)

    result = validator.validate(envelope)

    if reason is None:
        assert isinstance(result, Accepted)
    else:
        assert isinstance(result, Rejected)
        assert reason in result.reason


def test_available_offline_becomes_an_offline_status_and_online_is_ignored() -> None:
    validator = MessageValidator(_district(MqttConfig(topic_prefix="t")))
    topic = _topic(TopicKind.AVAILABLE)

    offline = validator.validate(Envelope(topic, b"offline", received_at=NOW))
    online = validator.validate(Envelope(topic, b"online", received_at=NOW))

    assert isinstance(offline, Accepted)
    assert isinstance(offline.message, StatusMessage)
    assert (offline.message.state, offline.message.ts) == (CameraState.OFFLINE, NOW)
    assert online is None


# --- batch writer on the real database -------------------------------------------------


@pytest.fixture
def migrated(db_url: str) -> str:
    upgrade(db_url, _district())
    return db_url


def _accepted(message: CountMessage | StatusMessage) -> Accepted:
    kind = TopicKind.COUNTS if isinstance(message, CountMessage) else TopicKind.STATUS
    return Accepted(Envelope(_topic(kind), encode(message), datetime.now(UTC)), message)


def _rows(url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


def test_writer_reconnects_after_the_connection_is_killed(
    migrated: str, pg_server: PgServer
) -> None:
    writer = BatchWriter(migrated)
    try:
        writer.write([_accepted(count_message(count=1))])
        with psycopg.connect(pg_server.admin_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (psycopg.conninfo.conninfo_to_dict(migrated)["dbname"],),
            )
        batch = [_accepted(count_message(count=2))]
        with pytest.raises(StorageError, match="cannot write batch"):
            writer.write(batch)
        result = writer.write(batch)  # the same batch again, on a new connection
    finally:
        writer.close()
    assert result.rows_written == 1
    assert _rows(migrated, "SELECT count FROM zone_counts ORDER BY count") == [(1,), (2,)]


def test_writer_turns_a_row_the_database_refuses_into_a_dead_letter(migrated: str) -> None:
    good = count_message(count=4)
    # Built without validation, as a contract bug would let through: the CHECK refuses it.
    bad_zone = ZoneCount.model_construct(zone_id="platform", count=-5, count_max=0, count_mean=0.0)
    bad = good.model_copy(update={"message_id": str(uuid.uuid4()), "zones": [bad_zone]})
    writer = BatchWriter(migrated)
    try:
        result = writer.write([_accepted(good), _accepted(bad)])
    finally:
        writer.close()
    assert (result.rows_written, result.dead_letters) == (1, 1)
    assert _rows(migrated, "SELECT count FROM zone_counts") == [(4,)]
    [(reason,)] = _rows(migrated, "SELECT reason FROM dead_letters")
    assert "database refused" in reason


# --- the service, MQTT to PostgreSQL -----------------------------------------------------


@pytest.fixture
def district(mqtt_config: MqttConfig) -> CrowdwatchConfig:
    return _district(mqtt_config)


@pytest.fixture
def publisher(mqtt_config: MqttConfig) -> Iterator[MqttClient]:
    client = MqttClient(mqtt_config, f"test-pub-{uuid.uuid4().hex[:8]}")
    client.connect()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def service(
    migrated: str, district: CrowdwatchConfig, publisher: MqttClient
) -> Iterator[IngestService]:
    svc = IngestService(
        district, migrated, client_id=f"test-ingest-{uuid.uuid4().hex[:8]}", batch_interval_s=0.05
    )
    svc.start()
    try:
        _wait_until_subscribed(svc, publisher, district.mqtt.topic_prefix)
        yield svc
    finally:
        svc.stop()


def _wait_until_subscribed(svc: IngestService, publisher: MqttClient, prefix: str) -> None:
    """SUBACK is asynchronous: probe with "online" notices (stored nowhere) until one arrives.

    One probe at a time, each given a second to arrive, so that no late probe is counted as
    one of the test's own messages afterwards.
    """
    topic = camera_topic(prefix, "stop-a", "cam1", TopicKind.AVAILABLE)
    for _ in range(int(DELIVERY_TIMEOUT_S)):
        publisher.publish(topic, b"online")
        probe_deadline = time.monotonic() + 1.0
        while time.monotonic() < probe_deadline:
            if svc.stats().messages_in:
                return
            time.sleep(0.01)
    pytest.fail("the ingest service did not receive a probe message")


def _publish_and_flush(
    svc: IngestService, publisher: MqttClient, messages: list[tuple[str, bytes]]
) -> None:
    expected = svc.stats().messages_in + len(messages)
    for topic, payload in messages:
        publisher.publish(topic, payload)
    deadline = time.monotonic() + DELIVERY_TIMEOUT_S
    while svc.stats().messages_in < expected:
        if time.monotonic() > deadline:
            pytest.fail(f"ingest received {svc.stats().messages_in} of {expected} messages")
        time.sleep(0.02)
    assert svc.flush(DELIVERY_TIMEOUT_S)


def test_counts_end_to_end(
    service: IngestService, publisher: MqttClient, migrated: str, district: CrowdwatchConfig
) -> None:
    prefix = district.mqtt.topic_prefix
    counts_topic = camera_topic(prefix, "stop-a", "cam1", TopicKind.COUNTS)
    now = datetime.now(UTC)
    valid = [
        CountMessage(
            site_id="stop-a",
            camera_id="cam1",
            ts=now - timedelta(seconds=50 - 10 * i),
            interval_s=5.0,
            frames=50,
            zones=[ZoneCount(zone_id="platform", count=i, count_max=i, count_mean=float(i))],
            lines=[LineCount(line_id="gate", in_count=i, out_count=0)],
        )
        for i in range(5)
    ]
    negative = json.loads(encode(count_message(ts=now)))
    negative["zones"][0]["count"] = -1
    messages = [(counts_topic, encode(m)) for m in valid] + [
        (counts_topic, encode(valid[2])),  # a redelivery: same message id
        (counts_topic, b'{"schema": "crowdwatch.counts/1", '),
        (
            camera_topic(prefix, "stop-zz", "cam1", TopicKind.COUNTS),
            encode(count_message(site_id="stop-zz", ts=now)),
        ),
        (counts_topic, json.dumps(negative).encode()),
    ]

    _publish_and_flush(service, publisher, messages)

    assert _rows(migrated, "SELECT count, message_id FROM zone_counts ORDER BY ts") == [
        (m.zones[0].count, m.message_id) for m in valid
    ]
    assert _rows(migrated, "SELECT count(*) FROM line_counts") == [(5,)]
    assert _rows(migrated, "SELECT zone_id, count, ts FROM zone_latest") == [
        ("platform", 4, valid[4].ts)
    ]
    reasons = [r for (r,) in _rows(migrated, "SELECT reason FROM dead_letters ORDER BY id")]
    assert len(reasons) == 3
    assert "not UTF-8 JSON" in reasons[0]
    assert "unknown camera stop-zz/cam1" in reasons[1]
    assert "zones.0.count" in reasons[2]
    stats = service.stats()
    assert (stats.rows_written, stats.dead_letters) == (10, 3)


def test_an_older_message_does_not_move_latest_backwards(
    service: IngestService, publisher: MqttClient, migrated: str, district: CrowdwatchConfig
) -> None:
    topic = camera_topic(district.mqtt.topic_prefix, "stop-a", "cam1", TopicKind.COUNTS)
    now = datetime.now(UTC)
    newer = count_message(count=9, ts=now)
    older = count_message(count=2, ts=now - timedelta(minutes=3))

    _publish_and_flush(service, publisher, [(topic, encode(newer))])
    _publish_and_flush(service, publisher, [(topic, encode(older))])

    assert _rows(migrated, "SELECT count FROM zone_counts ORDER BY ts") == [(2,), (9,)]
    assert _rows(migrated, "SELECT count, ts FROM zone_latest") == [(9, newer.ts)]


def test_each_zone_count_keeps_its_method_once(
    service: IngestService, publisher: MqttClient, migrated: str, district: CrowdwatchConfig
) -> None:
    topic = camera_topic(district.mqtt.topic_prefix, "stop-a", "cam1", TopicKind.COUNTS)
    now = datetime.now(UTC)

    def message(ts: datetime, platform: CountMethod, kerb: CountMethod | None) -> CountMessage:
        return CountMessage(
            site_id="stop-a",
            camera_id="cam1",
            ts=ts,
            interval_s=5.0,
            frames=50,
            zones=[
                ZoneCount(
                    zone_id="platform", count=30, count_max=33, count_mean=29.5, method=platform
                ),
                ZoneCount(zone_id="kerb", count=4, count_max=5, count_mean=4.0, method=kerb),
            ],
        )

    first = message(now - timedelta(seconds=10), CountMethod.DENSE, CountMethod.DETECT)
    # The platform went back to boxes; the kerb's method left out, as edges before it do.
    second = message(now, CountMethod.DETECT, None)
    raw = "SELECT message_id, zone_id, method FROM zone_counts ORDER BY ts, zone_id"
    latest = "SELECT zone_id, ts, method FROM zone_latest ORDER BY zone_id"

    _publish_and_flush(service, publisher, [(topic, encode(first)), (topic, encode(first))])

    assert _rows(migrated, raw) == [
        (first.message_id, "kerb", "detect"),
        (first.message_id, "platform", "dense"),
    ]
    assert _rows(migrated, latest) == [
        ("kerb", first.ts, "detect"),
        ("platform", first.ts, "dense"),
    ]

    # With a late redelivery of the first: only the second's rows are added.
    _publish_and_flush(service, publisher, [(topic, encode(second)), (topic, encode(first))])

    assert _rows(migrated, raw) == [
        (first.message_id, "kerb", "detect"),
        (first.message_id, "platform", "dense"),
        (second.message_id, "kerb", None),
        (second.message_id, "platform", "detect"),
    ]
    assert _rows(migrated, latest) == [
        ("kerb", second.ts, None),
        ("platform", second.ts, "detect"),
    ]
    assert service.stats().rows_written == 4


def test_a_held_count_is_stored_with_its_flag_and_a_later_usable_count_clears_it(
    service: IngestService, publisher: MqttClient, migrated: str, district: CrowdwatchConfig
) -> None:
    topic = camera_topic(district.mqtt.topic_prefix, "stop-a", "cam1", TopicKind.COUNTS)
    now = datetime.now(UTC)
    implausible = (
        "implausible: 1167 people on 64 m² is 18.2 per m², more than the 6 that can stand there"
    )
    dark = "unusable frame: too dark (mean 6/255)"

    def message(ts: datetime, platform: ZoneCount, kerb: ZoneCount) -> CountMessage:
        return CountMessage(
            site_id="stop-a",
            camera_id="cam1",
            ts=ts,
            interval_s=5.0,
            frames=50,
            zones=[platform, kerb],
        )

    # An edge from before the flag existed: its payload has no count_flag keys at all.
    old = json.loads(encode(count_message(count=40, ts=now - timedelta(seconds=20))))
    assert "count_flag" in old["zones"][0]
    for zone in old["zones"]:
        del zone["count_flag"], zone["flagged_count"]
    # The edge refused both zones' newest readings and kept their last usable counts.
    held = message(
        now - timedelta(seconds=10),
        ZoneCount(
            zone_id="platform",
            count=45,
            count_max=45,
            count_mean=45.0,
            method=CountMethod.DENSE,
            count_flag=implausible,
            flagged_count=1167,
        ),
        ZoneCount(zone_id="kerb", count=3, count_max=3, count_mean=3.0, count_flag=dark),
    )
    raw = (
        "SELECT zone_id, count, count_flag, flagged_count FROM zone_counts"
        " WHERE message_id = %s ORDER BY zone_id"
    )
    latest = "SELECT zone_id, count, count_flag, flagged_count FROM zone_latest ORDER BY zone_id"

    _publish_and_flush(
        service, publisher, [(topic, json.dumps(old).encode()), (topic, encode(held))]
    )

    assert _rows(migrated, raw, (old["message_id"],)) == [("platform", 40, None, None)]
    assert _rows(migrated, raw, (held.message_id,)) == [
        ("kerb", 3, dark, None),
        ("platform", 45, implausible, 1167),
    ]
    assert _rows(migrated, latest) == [("kerb", 3, dark, None), ("platform", 45, implausible, 1167)]

    # The next interval counts again: the latest rows hold no flag, the raw rows keep theirs.
    usable = message(
        now,
        ZoneCount(zone_id="platform", count=52, count_max=55, count_mean=50.0),
        ZoneCount(zone_id="kerb", count=4, count_max=4, count_mean=4.0),
    )
    _publish_and_flush(service, publisher, [(topic, encode(usable))])

    assert _rows(migrated, latest) == [("kerb", 4, None, None), ("platform", 52, None, None)]
    assert _rows(migrated, raw, (held.message_id,))[1] == ("platform", 45, implausible, 1167)
    assert service.stats().dead_letters == 0


def test_status_then_offline_updates_camera_latest_status(
    service: IngestService, publisher: MqttClient, migrated: str, district: CrowdwatchConfig
) -> None:
    prefix = district.mqtt.topic_prefix
    status = StatusMessage(
        site_id="stop-a",
        camera_id="cam1",
        ts=datetime.now(UTC) - timedelta(seconds=5),
        state=CameraState.ONLINE,
        fps=12.5,
    )
    query = "SELECT state, fps, detail FROM camera_latest_status"

    _publish_and_flush(
        service,
        publisher,
        [(camera_topic(prefix, "stop-a", "cam1", TopicKind.STATUS), encode(status))],
    )
    assert _rows(migrated, query) == [("online", 12.5, "")]

    _publish_and_flush(
        service,
        publisher,
        [(camera_topic(prefix, "stop-a", "cam1", TopicKind.AVAILABLE), b"offline")],
    )
    assert _rows(migrated, query) == [("offline", 0.0, "available: offline")]
    assert _rows(migrated, "SELECT state FROM camera_status ORDER BY ts") == [
        ("online",),
        ("offline",),
    ]


def test_service_retries_a_batch_after_the_database_connection_dies(
    service: IngestService,
    publisher: MqttClient,
    migrated: str,
    district: CrowdwatchConfig,
    pg_server: PgServer,
) -> None:
    topic = camera_topic(district.mqtt.topic_prefix, "stop-a", "cam1", TopicKind.COUNTS)
    _publish_and_flush(service, publisher, [(topic, encode(count_message(count=1)))])
    with psycopg.connect(pg_server.admin_url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (psycopg.conninfo.conninfo_to_dict(migrated)["dbname"],),
        )

    _publish_and_flush(service, publisher, [(topic, encode(count_message(count=2)))])

    assert _rows(migrated, "SELECT count FROM zone_counts ORDER BY count") == [(1,), (2,)]
    assert service.stats().db_errors >= 1


def test_run_ingest_upgrades_serves_and_stops(
    db_url: str, mqtt_config: MqttConfig, publisher: MqttClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CROWDWATCH_DATABASE_URL", raising=False)
    config = _district(mqtt_config).model_copy(update={"database": DatabaseConfig(url=db_url)})
    with ingest_running(config, "test-run-ingest") as errors:
        # The same message again and again: stored once, whenever the subscription is ready.
        message = encode(count_message(count=6))
        topic = camera_topic(mqtt_config.topic_prefix, "stop-a", "cam1", TopicKind.COUNTS)
        deadline = time.monotonic() + DELIVERY_TIMEOUT_S
        while not errors and time.monotonic() < deadline:
            publisher.publish(topic, message)
            if _has_table(db_url, "zone_counts") and _rows(db_url, "SELECT 1 FROM zone_counts"):
                break
            time.sleep(0.1)
    assert errors == []
    assert _rows(db_url, "SELECT count FROM zone_counts") == [(6,)]
    assert _rows(db_url, "SELECT site_id FROM sites") == [("stop-a",)]


def _has_table(url: str, table: str) -> bool:
    return _rows(url, f"SELECT to_regclass('{table}') IS NOT NULL") == [(True,)]
