"""Delivery details: manual acks and the retain flag, dating offline notices, metrics."""

from __future__ import annotations

import math
import queue
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from factories import config_dict, count_message, make_config, site_dict
from prometheus_client.parser import text_string_to_metric_families

from crowdwatch.contracts.config import CrowdwatchConfig, MqttConfig
from crowdwatch.contracts.messages import (
    CameraState,
    StatusMessage,
    TopicKind,
    camera_topic,
    decode_ingest_stats,
    encode,
    ingest_stats_topic,
)
from crowdwatch.ingest import IngestService
from crowdwatch.ingest.exposition import MetricsServer
from crowdwatch.ingest.metrics import IngestMetrics, prometheus_text
from crowdwatch.ingest.offline import AFTER_LAST_SIGN, LastSeen, OfflineDating
from crowdwatch.ingest.validate import Accepted, Envelope, MessageValidator
from crowdwatch.mqtt.client import Delivery, MqttClient
from crowdwatch.storage.migrate import upgrade

T0 = datetime(2026, 10, 1, 8, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=10)
CAM = ("stop-a", "cam1")
WAIT_S = 10.0

# --- dating offline notices, no services ---------------------------------------------------


def _validator() -> MessageValidator:
    return MessageValidator(
        make_config(config_dict(site_dict("stop-a")), mqtt={"topic_prefix": "t"})
    )


def _notice(retained: bool = False) -> Accepted:
    topic = camera_topic("t", *CAM, TopicKind.AVAILABLE)
    item = _validator().validate(Envelope(topic, b"offline", NOW, retained=retained))
    assert isinstance(item, Accepted)
    return item


def _status(ts: datetime) -> Accepted:
    message = StatusMessage(site_id="stop-a", camera_id="cam1", ts=ts, state=CameraState.ONLINE)
    return Accepted(
        Envelope(camera_topic("t", *CAM, TopicKind.STATUS), encode(message), NOW), message
    )


def _counts(ts: datetime) -> Accepted:
    message = count_message(ts=ts)
    return Accepted(
        Envelope(camera_topic("t", *CAM, TopicKind.COUNTS), encode(message), NOW), message
    )


DATING_CASES = [
    # (name, database knows, batch in receive order, expected ts of the notice or None = dropped)
    ("live, nothing known: receive time", LastSeen(), [_notice()], NOW),
    ("retained, nothing known: dropped", LastSeen(), [_notice(retained=True)], None),
    ("after the last status", LastSeen(status_ts=T0), [_notice()], T0 + AFTER_LAST_SIGN),
    (
        "after newer counts",
        LastSeen(status_ts=T0, counts_ts=T0 + timedelta(seconds=30)),
        [_notice(retained=True)],
        T0 + timedelta(seconds=30) + AFTER_LAST_SIGN,
    ),
    (
        "after a status earlier in the same batch",
        LastSeen(status_ts=T0),
        [_status(T0 + timedelta(minutes=1)), _notice()],
        T0 + timedelta(minutes=1) + AFTER_LAST_SIGN,
    ),
    (
        "already offline, nothing heard since: dropped",
        LastSeen(status_ts=T0 + AFTER_LAST_SIGN, status_is_notice=True, counts_ts=T0),
        [_notice()],
        None,
    ),
    (
        # The persistent-session replay: the notice sorts before the status sent after it.
        "a status that follows is newer",
        LastSeen(status_ts=T0),
        [_notice(), _status(T0 + timedelta(minutes=5))],
        T0 + AFTER_LAST_SIGN,
    ),
]


@pytest.mark.parametrize(
    ("known", "batch", "expected"),
    [case[1:] for case in DATING_CASES],
    ids=[case[0] for case in DATING_CASES],
)
def test_offline_notice_dating(
    known: LastSeen, batch: list[Accepted], expected: datetime | None
) -> None:
    dating = OfflineDating(lambda cameras: {c: known for c in cameras})

    out = dating.apply(batch)

    notices = [i for i in out if isinstance(i, Accepted) and i.envelope.payload == b"offline"]
    assert [n.message.ts for n in notices] == ([] if expected is None else [expected])
    assert len(out) == len(batch) - (expected is None)


def test_a_redelivered_notice_gets_the_same_message_id() -> None:
    dating = OfflineDating(lambda cameras: {c: LastSeen(status_ts=T0) for c in cameras})

    first, second = dating.apply([_notice()]), dating.apply([_notice()])

    assert first[0].message.message_id == second[0].message.message_id  # type: ignore[union-attr]


def test_prometheus_text_has_counters_lag_and_latency_histogram() -> None:
    metrics = IngestMetrics()
    metrics.message_in()
    metrics.batch_written(rows=1234567, dead_letters=2, latency_s=0.3, newest_ts=T0)

    text = prometheus_text(metrics.snapshot(), 'w"1')

    # Read back with Prometheus' own parser: the label escaping and numbers must survive it.
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    worker = (("worker", 'w"1'),)
    assert samples["crowdwatch_ingest_rows_written_total", worker] == 1234567
    assert samples["crowdwatch_ingest_dead_letters_total", worker] == 2
    assert samples["crowdwatch_ingest_lag_seconds", worker] >= 0
    bucket = "crowdwatch_ingest_batch_latency_seconds_bucket"
    assert samples[bucket, (("le", "0.25"), *worker)] == 0
    assert samples[bucket, (("le", "0.5"), *worker)] == 1
    assert samples[bucket, (("le", "+Inf"), *worker)] == 1
    assert samples["crowdwatch_ingest_batch_latency_seconds_sum", worker] == pytest.approx(0.3)


def test_prometheus_text_lag_is_nan_before_the_first_row() -> None:
    text = prometheus_text(IngestMetrics().snapshot(), "w1")

    lag = next(f for f in text_string_to_metric_families(text) if f.name.endswith("_lag_seconds"))
    assert math.isnan(lag.samples[0].value)


def test_metrics_endpoint_serves_only_the_samples_asked_for() -> None:
    """A scraper that polls often asks for a few samples (``name[]``, as Prometheus' clients
    take it) and does not pay for one clock-skew series per camera."""
    skews = {("s", f"c{i}"): 0.1 for i in range(3)}
    rendered: list[frozenset[str] | None] = []

    def render(names: frozenset[str] | None) -> str:
        rendered.append(names)
        return prometheus_text(IngestMetrics().snapshot(clock_skew=skews), "w1", names)

    server = MetricsServer(render)
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}/metrics"
        query = "name[]=crowdwatch_ingest_lag_seconds&name[]=crowdwatch_ingest_messages_total"
        with urllib.request.urlopen(f"{base}?{query}", timeout=5) as r:
            some = r.read().decode()
        with urllib.request.urlopen(base, timeout=5) as r:
            everything = r.read().decode()
    finally:
        server.close()
    names = {s.name for f in text_string_to_metric_families(some) for s in f.samples}
    assert names == {"crowdwatch_ingest_lag_seconds", "crowdwatch_ingest_messages_total"}
    assert rendered[0] == frozenset(names) and rendered[1] is None
    assert everything.count("crowdwatch_ingest_clock_skew_seconds{") == 3


# --- the MQTT client: retain flag and manual acks, on the real broker ----------------------


def test_delivery_shows_the_retain_flag_of_a_replay_and_not_of_a_live_message(
    mqtt_config: MqttConfig,
) -> None:
    topic = f"{mqtt_config.topic_prefix}/v1/stop-a/cam1/available"
    got: queue.Queue[Delivery] = queue.Queue()
    publisher = MqttClient(mqtt_config, f"test-pub-{uuid.uuid4().hex[:8]}")
    subscriber = MqttClient(mqtt_config, f"test-sub-{uuid.uuid4().hex[:8]}")
    publisher.connect()
    try:
        publisher.publish(topic, b"offline", retain=True)
        subscriber.subscribe_deliveries(topic, got.put)
        subscriber.connect()
        replay = got.get(timeout=WAIT_S)
        publisher.publish(topic, b"online", retain=True)
        live = got.get(timeout=WAIT_S)
        publisher.publish(topic, b"", retain=True)  # clear the retained value
    finally:
        subscriber.close()
        publisher.close()
    assert (replay.payload, replay.retain) == (b"offline", True)
    assert (live.payload, live.retain) == (b"online", False)


def test_an_unacknowledged_message_comes_back_to_the_persistent_session(
    mqtt_config: MqttConfig,
) -> None:
    topic = f"{mqtt_config.topic_prefix}/v1/stop-a/cam1/counts"
    client_id = f"test-manual-{uuid.uuid4().hex[:8]}"

    def session() -> tuple[MqttClient, queue.Queue[Delivery]]:
        got: queue.Queue[Delivery] = queue.Queue()
        client = MqttClient(mqtt_config, client_id, clean_start=False, manual_ack=True)
        client.subscribe_deliveries(topic, got.put)
        client.connect()
        return client, got

    publisher = MqttClient(mqtt_config, f"test-pub-{uuid.uuid4().hex[:8]}")
    publisher.connect()
    try:
        first, got = session()
        publisher.publish(topic, b"one")
        assert got.get(timeout=WAIT_S).payload == b"one"
        first.close()  # without an ack
        second, got = session()
        again = got.get(timeout=WAIT_S)
        second.ack(again)
        second.close()
        third, got = session()
        with pytest.raises(queue.Empty):
            got.get(timeout=1.0)  # acknowledged: not sent a third time
        third.close()
    finally:
        publisher.close()
    assert again.payload == b"one"


# --- the service: replayed notices and its metrics, on the real services -------------------


@pytest.fixture
def district(mqtt_config: MqttConfig, db_url: str) -> CrowdwatchConfig:
    config = make_config(config_dict(site_dict("stop-a")), mqtt=mqtt_config.model_dump())
    upgrade(db_url, config)
    return config


@pytest.fixture
def publisher(mqtt_config: MqttConfig) -> Iterator[MqttClient]:
    client = MqttClient(mqtt_config, f"test-pub-{uuid.uuid4().hex[:8]}")
    client.connect()
    try:
        yield client
    finally:
        client.close()


def _latest_status(db_url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT state, ts FROM camera_latest_status").fetchall()


def _wait_for(predicate: object, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_an_offline_replayed_from_the_session_does_not_hide_the_camera_coming_back(
    district: CrowdwatchConfig, db_url: str, publisher: MqttClient
) -> None:
    prefix = district.mqtt.topic_prefix
    client_id = f"test-ingest-{uuid.uuid4().hex[:8]}"
    before = datetime.now(UTC) - timedelta(minutes=3)
    back = before + timedelta(minutes=2)

    def status(ts: datetime) -> bytes:
        return encode(
            StatusMessage(site_id="stop-a", camera_id="cam1", ts=ts, state=CameraState.ONLINE)
        )

    service = IngestService(district, db_url, client_id=client_id, batch_interval_s=0.05)
    service.start()
    publisher.publish(camera_topic(prefix, "stop-a", "cam1", TopicKind.STATUS), status(before))
    _wait_for(lambda: _latest_status(db_url) == [("online", before)], "the first status")
    service.stop()
    # While the ingest is away: the camera dies (Last Will) and comes back.
    publisher.publish(camera_topic(prefix, "stop-a", "cam1", TopicKind.AVAILABLE), b"offline")
    publisher.publish(camera_topic(prefix, "stop-a", "cam1", TopicKind.STATUS), status(back))
    service = IngestService(district, db_url, client_id=client_id, batch_interval_s=0.05)
    service.start()
    try:
        _wait_for(lambda: service.stats().messages_in >= 2, "the replay")
        assert service.flush(WAIT_S)
    finally:
        service.stop()

    assert _latest_status(db_url) == [("online", back)]
    with psycopg.connect(db_url) as conn:
        history = conn.execute("SELECT state, ts FROM camera_status ORDER BY ts").fetchall()
    assert history == [
        ("online", before),
        ("offline", before + AFTER_LAST_SIGN),
        ("online", back),
    ]


def test_metrics_endpoint_and_retained_stats_message(
    district: CrowdwatchConfig, db_url: str, publisher: MqttClient, mqtt_config: MqttConfig
) -> None:
    service = IngestService(
        district,
        db_url,
        client_id=f"test-ingest-{uuid.uuid4().hex[:8]}",
        batch_interval_s=0.05,
        metrics_port=0,
        stats_every_s=0.2,
    )
    service.start()
    try:
        topic = camera_topic(district.mqtt.topic_prefix, "stop-a", "cam1", TopicKind.COUNTS)
        publisher.publish(topic, encode(count_message(count=5)))
        _wait_for(lambda: service.stats().rows_written == 1, "the row")
        url = f"http://127.0.0.1:{service.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
            content_type = response.headers["Content-Type"]
        stats_topic = ingest_stats_topic(district.mqtt.topic_prefix, service.worker)
    finally:
        service.stop()
    got: queue.Queue[Delivery] = queue.Queue()
    reader = MqttClient(mqtt_config, f"test-read-{uuid.uuid4().hex[:8]}")
    reader.subscribe_deliveries(stats_topic, got.put)
    reader.connect()
    try:
        retained = decode_ingest_stats(got.get(timeout=WAIT_S).payload)
    finally:
        reader.close()

    assert content_type.startswith("text/plain; version=0.0.4")
    assert f'crowdwatch_ingest_rows_written_total{{worker="{service.worker}"}} 1' in text
    assert f'crowdwatch_ingest_acked_total{{worker="{service.worker}"}} 1' in text
    assert (retained.state, retained.rows_written, retained.worker) == (
        "stopped",
        1,
        service.worker,
    )
