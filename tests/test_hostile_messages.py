"""One hostile MQTT message is that message's fault, at every door that decodes one.

The doors: the contract's decoders, the ingest's validator and writer (real PostgreSQL, and
the service over a real broker), and the alert engine's inbox.  Each hostile payload
(tests/hostile.py) is refused with a reason that names the problem in a few hundred
characters at most, and the valid messages around it are kept.  Also here: a ``ts`` ahead of
the receive time cannot freeze a zone's latest count, and dead letters are bounded in size
and expired by the upkeep.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from factories import config_dict, count_message, make_config, site_dict
from fuzz_strategies import ANY_CHARACTER
from hostile import Hostile, counts_doc, hostile_payloads
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crowdwatch.analytics.inbox import CountInbox
from crowdwatch.contracts.config import (
    CrowdwatchConfig,
    DatabaseConfig,
    MqttConfig,
    RetentionConfig,
)
from crowdwatch.contracts.errors import MessageError
from crowdwatch.contracts.messages import (
    MAX_PAYLOAD_BYTES,
    MAX_REASON_CHARS,
    CameraState,
    CountMessage,
    StatusMessage,
    TopicKind,
    camera_topic,
    decode_counts,
    decode_status,
    encode,
)
from crowdwatch.ingest import IngestService
from crowdwatch.ingest.offline import OfflineDating
from crowdwatch.ingest.validate import (
    KEPT_PAYLOAD_BYTES,
    Accepted,
    Envelope,
    MessageValidator,
    Rejected,
)
from crowdwatch.ingest.writer import BatchWriter
from crowdwatch.mqtt.client import MqttClient
from crowdwatch.storage.dead_letters import expire_dead_letters
from crowdwatch.storage.maintenance import maintain_once
from crowdwatch.storage.migrate import upgrade

NOW = datetime(2026, 10, 1, 8, 0, tzinfo=UTC)
HOSTILE = hostile_payloads(NOW)
IDS = [h.name for h in HOSTILE]
LONGEST_REASON = MAX_REASON_CHARS + 60
"""A reason quotes at most this much: none echoes a megabyte of input back."""


def _district(mqtt: MqttConfig | None = None) -> CrowdwatchConfig:
    overrides: dict[str, Any] = {"mqtt": mqtt.model_dump()} if mqtt else {}
    return make_config(config_dict(site_dict("stop-a"), site_dict("stop-b")), **overrides)


def _topic(kind: str, prefix: str = "t", site: str = "stop-a") -> str:
    return camera_topic(prefix, site, "cam1", TopicKind(kind))


# --- the contract's decoders ----------------------------------------------------------------


@pytest.mark.parametrize("hostile", HOSTILE, ids=IDS)
def test_a_hostile_payload_is_a_message_error_naming_the_problem(hostile: Hostile) -> None:
    decode = decode_counts if hostile.kind == "counts" else decode_status
    with pytest.raises(MessageError) as caught:
        decode(hostile.payload)
    assert hostile.reason in str(caught.value)
    assert len(str(caught.value)) <= LONGEST_REASON


def test_the_hostile_payloads_are_valid_messages_but_for_their_hostile_part() -> None:
    # Otherwise a refusal could be for a reason the test did not mean.
    assert decode_counts(json.dumps(counts_doc(NOW)).encode()).ts == NOW


# --- the ingest's validator -----------------------------------------------------------------


@pytest.mark.parametrize("hostile", HOSTILE, ids=IDS)
def test_the_ingest_rejects_each_hostile_payload_with_its_reason(hostile: Hostile) -> None:
    validator = MessageValidator(_district(MqttConfig(topic_prefix="t")))
    envelope = Envelope.received(_topic(hostile.kind), hostile.payload, NOW)

    result = validator.validate(envelope)

    assert isinstance(result, Rejected), result
    assert hostile.reason in result.reason
    assert len(result.reason) <= LONGEST_REASON


def test_a_payload_too_big_is_held_cut_with_its_size_and_digest() -> None:
    payload = b"{" + b" " * (MAX_PAYLOAD_BYTES * 2) + b"}"

    envelope = Envelope.received("t/v1/stop-a/cam1/counts", payload, NOW)

    assert len(envelope.payload) == KEPT_PAYLOAD_BYTES
    assert envelope.size == len(payload)
    assert envelope.sha256() == hashlib.sha256(payload).hexdigest()
    small = Envelope.received("t/v1/stop-a/cam1/counts", b"{}", NOW)
    assert (small.payload, small.size, small.cut_from) == (b"{}", 2, None)


# --- the alert engine's inbox ----------------------------------------------------------------


def test_the_engine_inbox_keeps_the_valid_messages_around_hostile_ones() -> None:
    inbox = CountInbox(clock=lambda: NOW)
    before = count_message(count=7, ts=NOW - timedelta(seconds=2))
    after = count_message(count=9, ts=NOW - timedelta(seconds=1))
    counts = [h for h in HOSTILE if h.kind == "counts"]

    inbox.offer(encode(before))
    for hostile in counts:
        inbox.offer(hostile.payload)
    inbox.offer(encode(after))
    taken = inbox.take(0.0)

    assert [m.message_id for m in taken] == [before.message_id, after.message_id]
    assert inbox.refused == len(counts)


def test_the_engine_inbox_takes_a_ts_ahead_of_arrival_as_the_arrival() -> None:
    inbox = CountInbox(clock=lambda: NOW)
    ahead = count_message(count=40, ts=NOW + timedelta(minutes=4))
    too_far = count_message(count=41, ts=NOW + timedelta(minutes=6))

    inbox.offer(encode(ahead))
    inbox.offer(encode(too_far))
    taken = inbox.take(0.0)

    assert [(m.message_id, m.ts) for m in taken] == [(ahead.message_id, NOW)]
    assert inbox.refused == 1


def test_the_engine_inbox_drops_what_it_has_no_room_for() -> None:
    inbox = CountInbox(clock=lambda: NOW, maxsize=2)
    for count in (1, 2, 3):
        inbox.offer(encode(count_message(count=count, ts=NOW)))

    assert [m.zones[0].count for m in inbox.take(0.0)] == [1, 2]
    assert inbox.refused == 1


# --- the writer: dead letters bounded, latest rows as of their arrival -----------------------


@pytest.fixture
def migrated(db_url: str) -> str:
    upgrade(db_url, _district())
    return db_url


def _rows(url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


def _write(url: str, items: list[Accepted | Rejected]) -> None:
    writer = BatchWriter(url)
    try:
        writer.write(items)
    finally:
        writer.close()


def _accepted(message: CountMessage | StatusMessage, received_at: datetime) -> Accepted:
    kind = "counts" if isinstance(message, CountMessage) else "status"
    return Accepted(Envelope(_topic(kind), encode(message), received_at), message)


def test_a_dead_letter_keeps_a_bounded_prefix_its_size_and_digest(migrated: str) -> None:
    big = next(h for h in HOSTILE if "size limit" in h.name)
    small = next(h for h in HOSTILE if h.name == "5000-digit frames")
    validator = MessageValidator(_district(MqttConfig(topic_prefix="t")))
    now = datetime.now(UTC)
    items = [
        validator.validate(Envelope.received(_topic(h.kind), h.payload, now)) for h in (big, small)
    ]

    _write(migrated, [i for i in items if i is not None])

    rows = _rows(
        migrated,
        "SELECT payload, payload_bytes, payload_sha256, reason FROM dead_letters ORDER BY id",
    )
    assert [(bytes(p), n, h) for p, n, h, _ in rows] == [
        (
            big.payload[:KEPT_PAYLOAD_BYTES],
            len(big.payload),
            hashlib.sha256(big.payload).hexdigest(),
        ),
        (small.payload, len(small.payload), hashlib.sha256(small.payload).hexdigest()),
    ]
    assert big.reason in rows[0][3] and small.reason in rows[1][3]


def test_text_no_column_can_hold_is_escaped_in_dead_letters_and_status(migrated: str) -> None:
    now = datetime.now(UTC)
    reason = "quoted: \x00 and \udc00 " + "r" * 2000
    status = StatusMessage(
        site_id="stop-a", camera_id="cam1", ts=now, state=CameraState.ONLINE, detail="a\x00b"
    )

    _write(
        migrated,
        [Rejected(Envelope(_topic("counts"), b"\x00\xff", now), reason), _accepted(status, now)],
    )

    [(stored,)] = _rows(migrated, "SELECT reason FROM dead_letters")
    assert stored.startswith("quoted: \\0 and \\udc00 rrr") and len(stored) <= LONGEST_REASON
    assert _rows(migrated, "SELECT detail FROM camera_status") == [("a\\0b",)]


def test_a_ts_ahead_of_its_arrival_does_not_freeze_the_zone(migrated: str) -> None:
    received = datetime.now(UTC).replace(microsecond=0)
    ahead = count_message(count=40, ts=received + timedelta(minutes=4))
    real = count_message(count=3, ts=received + timedelta(seconds=10))

    _write(migrated, [_accepted(ahead, received)])
    # Its raw row keeps the ts it was sent with; the latest row is dated when it arrived.
    assert _rows(migrated, "SELECT count, ts FROM zone_counts") == [(40, ahead.ts)]
    assert _rows(migrated, "SELECT count, ts FROM zone_latest") == [(40, received)]

    _write(migrated, [_accepted(real, received + timedelta(seconds=10))])

    assert _rows(migrated, "SELECT count, ts FROM zone_latest") == [(3, real.ts)]


def test_a_status_ahead_of_its_arrival_does_not_freeze_the_camera(migrated: str) -> None:
    received = datetime.now(UTC).replace(microsecond=0)

    def status(state: CameraState, ts: datetime) -> StatusMessage:
        return StatusMessage(site_id="stop-a", camera_id="cam1", ts=ts, state=state)

    # Both in one batch: the latest is chosen among them as of their arrival too.
    _write(
        migrated,
        [
            _accepted(status(CameraState.OFFLINE, received + timedelta(minutes=4)), received),
            _accepted(
                status(CameraState.ONLINE, received + timedelta(seconds=5)),
                received + timedelta(seconds=5),
            ),
        ],
    )

    assert _rows(migrated, "SELECT state, ts FROM camera_latest_status") == [
        ("online", received + timedelta(seconds=5))
    ]


def test_the_upkeep_expires_dead_letters_after_the_configured_days(migrated: str) -> None:
    now = datetime.now(UTC)
    old, recent = now - timedelta(days=15), now - timedelta(days=13)
    _write(
        migrated,
        [
            Rejected(Envelope(_topic("counts"), b"old", old), "old"),
            Rejected(Envelope(_topic("counts"), b"recent", recent), "recent"),
            Rejected(Envelope(_topic("counts"), b"older", now - timedelta(days=40)), "older"),
        ],
    )
    assert RetentionConfig().dead_letter_days == 14
    database = DatabaseConfig(retention=RetentionConfig(dead_letter_days=14))

    with psycopg.connect(migrated, autocommit=True) as conn:
        assert expire_dead_letters(conn, database.retention, now=now - timedelta(days=20)) == 1
        assert maintain_once(conn, database).dead_letters_expired == 1

    assert _rows(migrated, "SELECT reason FROM dead_letters") == [("recent",)]


# --- the ingest service over a real broker --------------------------------------------------


@pytest.fixture
def district(mqtt_config: MqttConfig) -> CrowdwatchConfig:
    return _district(mqtt_config)


@pytest.fixture
def publisher(mqtt_config: MqttConfig) -> Iterator[MqttClient]:
    client = MqttClient(mqtt_config, f"test-hostile-pub-{uuid.uuid4().hex[:8]}")
    client.connect()
    try:
        yield client
    finally:
        client.close()


def _ingest(district: CrowdwatchConfig, url: str) -> IngestService:
    # A long batch interval: the messages of one test are written in one batch.
    return IngestService(
        district, url, client_id=f"test-hostile-{uuid.uuid4().hex[:8]}", batch_interval_s=1.0
    )


def _through(
    service: IngestService, publisher: MqttClient, messages: list[tuple[str, bytes]]
) -> None:
    """Start ``service``, publish ``messages``, wait until they are committed, stop it."""
    service.start()
    try:
        time.sleep(0.5)  # the SUBACK
        for topic, payload in messages:
            publisher.publish(topic, payload)
        deadline = time.monotonic() + 10
        while service.stats().messages_in < len(messages) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert service.flush(10)
    finally:
        service.stop()


def test_hostile_messages_in_a_batch_cost_only_themselves(
    migrated: str, district: CrowdwatchConfig, publisher: MqttClient
) -> None:
    prefix = district.mqtt.topic_prefix
    service = _ingest(district, migrated)
    now = datetime.now(UTC)
    hostile = hostile_payloads(now)
    valid = [count_message(site_id=site, ts=now) for site in ("stop-a", "stop-b", "stop-a")]
    messages = [(_topic("counts", prefix, "stop-b"), encode(valid[1]))]
    messages.append((_topic("counts", prefix), encode(valid[0])))
    messages += [(_topic(h.kind, prefix), h.payload) for h in hostile]
    messages.append((_topic("counts", prefix), encode(valid[2])))

    _through(service, publisher, messages)

    stored = _rows(migrated, "SELECT message_id FROM zone_counts")
    assert sorted(r[0] for r in stored) == sorted(m.message_id for m in valid)
    reasons = [r for (r,) in _rows(migrated, "SELECT reason FROM dead_letters ORDER BY id")]
    assert len(reasons) == len(hostile), reasons
    for h, reason in zip(hostile, reasons, strict=True):
        assert h.reason in reason, (h.name, reason)
    assert service.stats().dead_letters == len(hostile)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    reason=st.text(ANY_CHARACTER, max_size=2000),
    detail=st.text(st.characters(exclude_categories=["Cs"]) | st.just("\x00"), max_size=500),
    payload=st.binary(max_size=KEPT_PAYLOAD_BYTES * 2),
)
def test_any_unicode_and_bytes_reach_the_tables_without_refusal(
    migrated: str, reason: str, detail: str, payload: bytes
) -> None:
    now = datetime.now(UTC)
    status = StatusMessage(
        site_id="stop-a", camera_id="cam1", ts=now, state=CameraState.ONLINE, detail=detail
    )
    writer = BatchWriter(migrated)
    try:
        result = writer.write(
            [Rejected(Envelope(_topic("counts"), payload, now), reason), _accepted(status, now)]
        )
    finally:
        writer.close()
    # Both written as they are (NUL and lone surrogates escaped), neither refused.
    assert (result.rows_written, result.dead_letters) == (1, 1)


class _DatingThatFailsOn:
    """The ingest's offline dating, with a bug that any batch holding one message triggers
    (a fake at the seam between validation and writing)."""

    def __init__(self, real: OfflineDating, poison: str) -> None:
        self._real = real
        self._poison = poison

    def apply(self, items: Sequence[Accepted | Rejected]) -> list[Accepted | Rejected]:
        for item in items:
            if isinstance(item, Accepted) and item.message.message_id == self._poison:
                raise RuntimeError("a bug met on this message")
        return self._real.apply(items)


def test_a_batch_that_fails_for_any_reason_is_written_message_by_message(
    migrated: str, district: CrowdwatchConfig, publisher: MqttClient
) -> None:
    prefix = district.mqtt.topic_prefix
    service = _ingest(district, migrated)
    now = datetime.now(UTC)
    valid = [count_message(site_id=site, ts=now) for site in ("stop-a", "stop-b")]
    poison = count_message(site_id="stop-a", count=9, ts=now)
    service._dating = _DatingThatFailsOn(service._dating, poison.message_id)  # type: ignore[assignment]

    _through(
        service,
        publisher,
        [(_topic("counts", prefix, m.site_id), encode(m)) for m in (valid[0], poison, valid[1])],
    )

    stored = {r[0] for r in _rows(migrated, "SELECT message_id FROM zone_counts")}
    assert stored == {m.message_id for m in valid}
    [(payload, reason)] = _rows(migrated, "SELECT payload, reason FROM dead_letters")
    assert bytes(payload) == encode(poison)
    assert reason == "ingest error on this message: RuntimeError: a bug met on this message"


def test_the_engine_inbox_logs_refusals_at_most_once_a_minute(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = CountInbox(clock=lambda: NOW)
    with caplog.at_level("WARNING", logger="crowdwatch.analytics.inbox"):
        for _ in range(50):
            inbox.offer(b"[[[")
        inbox.take(0.0)
        assert [r.getMessage()[:16] for r in caplog.records] == ["left out 1 count"]
        # A minute later the rest are summed up in one line, without a new refusal.
        monkeypatch.setattr("crowdwatch.analytics.inbox.REPORT_EVERY_S", 0.0)
        inbox.take(0.0)
    assert len(caplog.records) == 2
    assert caplog.records[1].getMessage().startswith("left out 49 count payload(s)")
    assert inbox.refused == 50
