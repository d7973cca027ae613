"""The MQTT message contract: round trips, and a named reason for every bad payload."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from factories import count_message, make_config

from crowdwatch.contracts.errors import MessageError
from crowdwatch.contracts.messages import (
    CountMessage,
    CountMethod,
    TopicKind,
    camera_topic,
    camera_topic_filter,
    decode_counts,
    encode,
    parse_camera_topic,
)
from crowdwatch.ingest.validate import Accepted, Envelope, MessageValidator, Rejected


def test_count_message_round_trip() -> None:
    message = count_message(count=7, ts=datetime(2026, 10, 1, 8, 0, 5, tzinfo=UTC))
    payload = encode(message)
    data = json.loads(payload)
    assert data["schema"] == "crowdwatch.counts/1"
    assert data["ts"] == "2026-10-01T08:00:05Z"
    assert decode_counts(payload) == message


def _payload(**changes: object) -> bytes:
    data = json.loads(encode(count_message()))
    data.update(changes)
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"\xff\xfe", "not UTF-8 JSON"),
        (b"{not json", "not UTF-8 JSON"),
        (b"[1, 2]", "expected a JSON object, got list"),
        (
            _payload(schema="crowdwatch.counts/9"),
            "expected schema 'crowdwatch.counts/1', got 'crowdwatch.counts/9'",
        ),
        (_payload(ts="2026-10-01T08:00:00"), "ts: Value error, timestamp must carry a time zone"),
        (
            _payload(zones=[{"zone_id": "p", "count": -1, "count_max": 0, "count_mean": 0}]),
            "zones.0.count: Input should be greater than or equal to 0",
        ),
        (
            _payload(zones=[{"zone_id": "p", "count": 10**7, "count_max": 0, "count_mean": 0}]),
            "zones.0.count: Input should be less than or equal to 100000",
        ),
        (_payload(site_id="a/b"), "site_id: String should match pattern"),
        (_payload(extra=1), "extra: Extra inputs are not permitted"),
    ],
)
def test_bad_payloads_are_named(payload: bytes, expected: str) -> None:
    with pytest.raises(MessageError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        decode_counts(payload)


def _zone_payload(**zone: object) -> bytes:
    data = json.loads(encode(count_message()))
    data["zones"][0].update(zone)
    if zone.get("method") is ...:
        del data["zones"][0]["method"]
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    ("payload", "method"),
    [
        (_zone_payload(method=...), None),  # an edge from before the field: still accepted
        (_zone_payload(method=None), None),
        (_zone_payload(method="detect"), CountMethod.DETECT),
        (_zone_payload(method="dense"), CountMethod.DENSE),
    ],
)
def test_ingest_accepts_zone_counts_with_and_without_a_method(
    payload: bytes, method: CountMethod | None
) -> None:
    validator = MessageValidator(make_config())
    topic = camera_topic("crowdwatch", "stop-a", "cam1", TopicKind.COUNTS)
    result = validator.validate(Envelope(topic, payload, datetime.now(UTC)))
    assert isinstance(result, Accepted), result
    assert isinstance(result.message, CountMessage)
    assert result.message.zones[0].method is method


def test_ingest_rejects_an_unknown_method() -> None:
    validator = MessageValidator(make_config())
    topic = camera_topic("crowdwatch", "stop-a", "cam1", TopicKind.COUNTS)
    result = validator.validate(Envelope(topic, _zone_payload(method="guess"), datetime.now(UTC)))
    assert isinstance(result, Rejected)
    assert result.reason.startswith("zones.0.method: Input should be 'detect' or 'dense'")


def test_timestamps_are_normalised_to_utc() -> None:
    payload = _payload(ts="2026-10-01T16:00:00+08:00")
    assert decode_counts(payload).ts == datetime(2026, 10, 1, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("cw/v1/stop-a/cam1/counts", ("stop-a", "cam1", TopicKind.COUNTS)),
        ("cw/v1/stop-a/cam1/available", ("stop-a", "cam1", TopicKind.AVAILABLE)),
        ("cw/v1/stop-a/cam1/video", MessageError),
        ("other/v1/stop-a/cam1/counts", MessageError),
        ("cw/v2/stop-a/cam1/counts", MessageError),
        ("cw/v1/stop-a/counts", MessageError),
    ],
)
def test_topic_parsing(topic: str, expected: object) -> None:
    if expected is MessageError:
        with pytest.raises(MessageError):
            parse_camera_topic("cw", topic)
    else:
        assert parse_camera_topic("cw", topic) == expected


def test_topic_builders_match_the_filter() -> None:
    topic = camera_topic("cw", "stop-a", "cam1", TopicKind.STATUS)
    assert topic == "cw/v1/stop-a/cam1/status"
    assert camera_topic_filter("cw", TopicKind.STATUS) == "cw/v1/+/+/status"
