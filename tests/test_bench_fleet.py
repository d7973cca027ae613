"""The load bench's fleet: pre-encoded payloads the ingest reads as the messages meant, and
the bare MQTT 5 writer that publishes them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from services.waiting import wait_until

from crowdwatch.bench._fleet import Template, fleet_cameras
from crowdwatch.bench._load import bench_district
from crowdwatch.bench._wire import WirePublisher, varint
from crowdwatch.contracts.config import MqttConfig
from crowdwatch.contracts.messages import CameraState, decode_counts, decode_status
from crowdwatch.mqtt.client import MqttClient


def test_every_camera_gets_valid_counts_and_status_with_the_filled_ts_and_id() -> None:
    config = bench_district(23, 3, MqttConfig(topic_prefix="fleet"), "postgresql://x/y")
    cameras = fleet_cameras(config)
    assert len(cameras) == 23
    ts = datetime(2026, 12, 7, 10, 1, 2, 345678, tzinfo=UTC)
    stamp = b"2026-12-07T10:01:02.345678Z"
    for n, ((site, camera), fleet) in enumerate(zip(config.cameras(), cameras, strict=True)):
        assert fleet.counts_topic == f"fleet/v1/{site.id}/{camera.id}/counts"
        counts = decode_counts(fleet.counts.fill(stamp, f"id-count-{n:04d}".encode()))
        assert (counts.site_id, counts.camera_id, counts.ts) == (site.id, camera.id, ts)
        assert counts.message_id == f"id-count-{n:04d}"
        assert [z.zone_id for z in counts.zones] == [z.id for z in camera.zones]
        assert counts.interval_s == config.edge.interval_s
        status = decode_status(fleet.status.fill(stamp, f"id-status-{n:04d}".encode()))
        assert (status.camera_id, status.ts, status.state) == (camera.id, ts, CameraState.ONLINE)
        assert status.message_id == f"id-status-{n:04d}"


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b'{"ts":"2000-01-01T00:00:00.123456Z"}', "fleet-message-id-placeholder"),
        (b'{"message_id":"fleet-message-id-placeholder"}', "2000-01-01T00:00:00.123456Z"),
    ],
)
def test_a_payload_without_both_placeholders_is_refused(payload: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Template.of(payload)


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16_383, b"\xff\x7f"),
     (16_384, b"\x80\x80\x01"), (268_435_455, b"\xff\xff\xff\x7f")],
)  # fmt: skip
def test_mqtt_variable_byte_integers(value: int, encoded: bytes) -> None:
    assert varint(value) == encoded


def test_the_wire_publisher_delivers_qos1_messages_in_order_to_a_real_broker(
    mqtt_config: MqttConfig,
) -> None:
    topic = f"{mqtt_config.topic_prefix}/wire"
    received: list[bytes] = []
    subscriber = MqttClient(mqtt_config, "test-wire-sub")
    subscriber.connect()
    try:
        subscriber.subscribe(topic, lambda _t, payload: received.append(payload))
        wire = WirePublisher(mqtt_config.host, mqtt_config.port, "test-wire-pub")
        try:
            # More than mosquitto's default Receive Maximum, so the writer waits for PUBACKs.
            payloads = [f"message {i}".encode() * (1 + i % 50) for i in range(300)]
            prefix = WirePublisher.prefix(topic)
            wire.publish([(prefix, p) for p in payloads[:150]])
            wire.publish([(prefix, p) for p in payloads[150:]])
            assert wait_until(lambda: wire.acked == 300 and len(received) == 300)
            assert wire.failed is None
        finally:
            wire.close()
    finally:
        subscriber.close()
    assert received == payloads
