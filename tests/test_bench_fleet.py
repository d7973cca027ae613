"""The load bench's fleet: pre-encoded payloads that the ingest reads as the messages meant."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from crowdwatch.bench._fleet import Template, fleet_cameras
from crowdwatch.bench._load import bench_district
from crowdwatch.contracts.config import MqttConfig
from crowdwatch.contracts.messages import CameraState, decode_counts, decode_status


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
