"""The MQTT message contract, version 1.

Topics (``{prefix}`` is ``mqtt.topic_prefix``, default ``crowdwatch``)::

    {prefix}/v1/{site}/{camera}/counts     CountMessage, QoS 1, not retained
    {prefix}/v1/{site}/{camera}/status     StatusMessage, QoS 1, retained (carries its own ts)
    {prefix}/v1/{site}/{camera}/available  "online" | "offline", retained; Last Will "offline"
    {prefix}/v1/alerts/{site}              AlertMessage, QoS 1, not retained
    {prefix}/v1/_ingest/{worker}/stats     IngestStatsMessage, QoS 1, retained

One count message carries every zone and line of one camera for one interval: MQTT clients
manage a few thousand messages a second, so per-zone messages would not scale to a district.
Payloads are UTF-8 JSON; every message has a ``schema`` tag, a unique ``message_id`` (the
ingest's idempotency key) and a UTC timestamp.  A consumer rejects a payload whose schema
tag it does not know rather than guessing.

Every door that decodes a payload (ingest, the alert engine) gets either a valid message or
a :class:`MessageError` naming the problem, whatever the bytes: a payload over
:data:`MAX_PAYLOAD_BYTES`, a number of any size, nesting of any depth, any Unicode.  The
decoders raise nothing else for a bad payload, so one hostile message is that message's
fault (dead-lettered, counted) and never the process's.
"""

from __future__ import annotations

import json
import sys
import uuid
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from crowdwatch.contracts.config import ID_PATTERN
from crowdwatch.contracts.errors import MessageError

TOPIC_VERSION = "v1"
COUNTS_SCHEMA: Final = "crowdwatch.counts/1"
STATUS_SCHEMA: Final = "crowdwatch.status/1"
ALERT_SCHEMA: Final = "crowdwatch.alert/1"
INGEST_STATS_SCHEMA: Final = "crowdwatch.ingest_stats/1"

MAX_PEOPLE = 100_000
"""No camera sees more people than this; a larger count is a bug or an attack."""

MAX_BIGINT = 2**63 - 1
"""The largest value a PostgreSQL ``bigint`` column (where counters are stored) holds."""

MAX_PAYLOAD_BYTES = 1024 * 1024
"""The largest payload a consumer decodes.  A count message of 1000 zones and 1000 lines (the
most it may carry) is about 300 KB; a bigger payload is refused before it is parsed, so that
it costs neither the time nor the memory of decoding it."""

MAX_PACKET_BYTES = MAX_PAYLOAD_BYTES + 64 * 1024
"""The largest MQTT packet a broker or consumer needs to take: the largest payload with room
for the topic and properties (mosquitto's ``max_packet_size``, MQTT 5's Maximum Packet Size)."""

MAX_FUTURE = timedelta(minutes=5)
"""A ``ts`` further ahead of the receive time than this is refused: the edge box's clock is
wrong.  Within it, a ``ts`` ahead of the receive time still never counts as newer than the
receive time (see :func:`as_of`), so it cannot hide the messages that follow it."""

MAX_REASON_CHARS = 500
"""A rejection reason is cut to this length: it may quote a hostile payload."""

MESSAGE_ID_PATTERN = r"^[!-~]+$"
"""Printable ASCII, no spaces: ids are UUIDs, and an id is a key in every raw table."""

WireId = Annotated[str, Field(pattern=ID_PATTERN)]


class Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_message_id() -> str:
    return str(uuid.uuid4())


def clipped(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut (for reasons and logs)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


def as_of(ts: datetime, received_at: datetime) -> datetime:
    """The time a reading counts as "current" from: its ``ts``, but never after it arrived.

    A message cannot be made after it is received, so a ``ts`` ahead of the receive time is
    the edge clock running fast.  Taken as it is, such a reading would be "newer" than every
    true reading for as long as the clock is ahead, and a zone's latest count would freeze on
    it; the raw rows keep the ``ts`` as sent (it is their idempotency key), while what is
    "latest" (``zone_latest``, ``camera_latest_status``, the alert engine) uses this.

    Example:
        >>> from datetime import UTC, datetime, timedelta
        >>> now = datetime(2026, 10, 1, 8, 0, tzinfo=UTC)
        >>> as_of(now + timedelta(minutes=4), now) == now
        True
    """
    return min(ts, received_at)


def _require_utc(ts: datetime) -> datetime:
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError("timestamp must carry a time zone (UTC, e.g. 2026-10-01T08:00:00Z)")
    return ts.astimezone(UTC)


class CountMethod(StrEnum):
    """What produced a zone's ``count``."""

    DETECT = "detect"
    """people detected one by one (boxes)"""
    DENSE = "dense"
    """the crowd counter's density map summed over the zone"""


class ZoneCount(Wire):
    zone_id: WireId
    count: int = Field(ge=0, le=MAX_PEOPLE, description="people in the zone at the interval's end")
    count_max: int = Field(ge=0, le=MAX_PEOPLE, description="most people seen during the interval")
    count_mean: float = Field(ge=0, le=MAX_PEOPLE, description="mean over the interval's frames")
    # Optional, additive in v1: absent from edges that do not track or are not calibrated.
    longest_wait_s: float | None = Field(
        default=None,
        ge=0,
        le=86_400,
        description="longest time a person now in the zone has been there",
    )
    median_wait_s: float | None = Field(
        default=None,
        ge=0,
        le=86_400,
        description="median time the people now in the zone have been there",
    )
    density_per_m2: float | None = Field(
        default=None,
        ge=0,
        le=20,
        description="people per square metre (needs a ground calibration)",
    )
    peak_density_per_m2: float | None = Field(
        default=None,
        ge=0,
        le=20,
        description="most people per square metre during the interval (count_max over the "
        "zone's area; needs a ground calibration)",
    )
    vehicles: int | None = Field(
        default=None,
        ge=0,
        le=MAX_PEOPLE,
        description="motor vehicles in the zone at the interval's end (road cameras; absent "
        "where the camera counts no vehicles)",
    )
    mean_speed_kmh: float | None = Field(
        default=None,
        ge=0,
        le=300,
        description="space-mean speed of the zone's vehicles over the interval, km/h (needs a "
        "ground calibration; absent when no vehicle had a measured speed)",
    )
    vehicle_density: float | None = Field(
        default=None,
        ge=0,
        le=1000,
        description="vehicles per km per lane at the interval's end (road zones with lanes; "
        "absent elsewhere)",
    )
    queue_length_m: float | None = Field(
        default=None,
        ge=0,
        le=10_000,
        description="longest queue back from the stop line during the interval, metres "
        "(approach zones of a calibrated camera; absent elsewhere)",
    )
    method: CountMethod | None = Field(
        default=None,
        description="what produced count: detect or dense; absent from edges before it existed",
    )
    count_flag: str | None = Field(
        default=None,
        max_length=300,
        description="why the zone's newest density reading was not used as count (a frame "
        "too dark to count in, more people than the zone holds, a jump no crowd makes); count "
        "then holds the last usable reading; absent: nothing flagged",
    )
    flagged_count: int | None = Field(
        default=None,
        ge=0,
        le=MAX_PEOPLE,
        description="the implausible reading count_flag refused (absent for unusable frames)",
    )


class LineCount(Wire):
    line_id: WireId
    in_count: int = Field(ge=0, le=MAX_PEOPLE, description="crossings in the 'in' direction")
    out_count: int = Field(ge=0, le=MAX_PEOPLE, description="crossings against it")


class CountMessage(Wire):
    """People counted by one camera over one interval, every zone and line in one message."""

    schema_: Literal["crowdwatch.counts/1"] = Field(default=COUNTS_SCHEMA, alias="schema")
    message_id: str = Field(
        default_factory=new_message_id, min_length=8, max_length=64, pattern=MESSAGE_ID_PATTERN
    )
    site_id: WireId
    camera_id: WireId
    ts: datetime = Field(description="end of the interval, UTC")
    interval_s: float = Field(gt=0, le=3600)
    frames: int = Field(ge=0, le=1_000_000, description="frames analysed in the interval")
    zones: list[ZoneCount] = Field(max_length=1000)
    lines: list[LineCount] = Field(default_factory=list, max_length=1000)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    _utc = field_validator("ts")(_require_utc)


class CameraState(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    """the stream cannot be read: its zones have no data (never zero people)"""


class StatusMessage(Wire):
    """Health of one camera worker."""

    schema_: Literal["crowdwatch.status/1"] = Field(default=STATUS_SCHEMA, alias="schema")
    message_id: str = Field(
        default_factory=new_message_id, min_length=8, max_length=64, pattern=MESSAGE_ID_PATTERN
    )
    site_id: WireId
    camera_id: WireId
    ts: datetime
    state: CameraState
    fps: float = Field(default=0.0, ge=0, le=10_000)
    inference_ms: float = Field(default=0.0, ge=0, le=600_000)
    dropped_frames: int = Field(default=0, ge=0, le=MAX_BIGINT)
    detail: str = Field(default="", max_length=500)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    _utc = field_validator("ts")(_require_utc)


class AlertMessage(Wire):
    """An alert firing or resolving, as published on the alerts topic."""

    schema_: Literal["crowdwatch.alert/1"] = Field(default=ALERT_SCHEMA, alias="schema")
    message_id: str = Field(
        default_factory=new_message_id, min_length=8, max_length=64, pattern=MESSAGE_ID_PATTERN
    )
    alert_key: str = Field(description="site/zone/rule: the deduplication key")
    site_id: WireId
    zone_id: WireId | None
    rule_id: WireId
    state: Literal["firing", "resolved"]
    severity: Literal["info", "warning", "critical"]
    value: float
    threshold: float
    ts: datetime
    summary_zh: str
    summary_en: str

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    _utc = field_validator("ts")(_require_utc)


class IngestStatsMessage(Wire):
    """Counters of one ingest worker, published retained every few seconds (and at stop)."""

    schema_: Literal["crowdwatch.ingest_stats/1"] = Field(
        default=INGEST_STATS_SCHEMA, alias="schema"
    )
    worker: str = Field(description="host and worker name, as in the topic")
    ts: datetime
    state: Literal["running", "stopped"]
    messages_in: int = Field(ge=0)
    rows_written: int = Field(ge=0)
    dead_letters: int = Field(ge=0)
    batches: int = Field(ge=0)
    db_errors: int = Field(ge=0)
    queued: int = Field(ge=0, description="received, not yet committed")
    last_batch_latency_s: float = Field(ge=0)
    newest_ts_written: datetime | None = Field(description="newest count/status ts committed")
    lag_s: float | None = Field(description="ts of this message minus newest_ts_written")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    _utc = field_validator("ts")(_require_utc)


AVAILABLE_ONLINE = "online"
AVAILABLE_OFFLINE = "offline"


class TopicKind(StrEnum):
    COUNTS = "counts"
    STATUS = "status"
    AVAILABLE = "available"


def camera_topic(prefix: str, site_id: str, camera_id: str, kind: TopicKind) -> str:
    return f"{prefix}/{TOPIC_VERSION}/{site_id}/{camera_id}/{kind.value}"


def camera_topic_filter(prefix: str, kind: TopicKind) -> str:
    """Subscription filter for one kind of message from every camera."""
    return f"{prefix}/{TOPIC_VERSION}/+/+/{kind.value}"


def alert_topic(prefix: str, site_id: str) -> str:
    return f"{prefix}/{TOPIC_VERSION}/alerts/{site_id}"


def ingest_stats_topic(prefix: str, worker: str) -> str:
    """``{prefix}/v1/_ingest/{worker}/stats``: no camera filter (``+/+/KIND``) matches it."""
    return f"{prefix}/{TOPIC_VERSION}/_ingest/{worker}/stats"


def ingest_presence_topic(prefix: str, worker: str) -> str:
    """``{prefix}/v1/_ingest/{worker}/presence``: a worker's retained online/offline state
    (:mod:`crowdwatch.ingest.takeover`); no camera filter matches it."""
    return f"{prefix}/{TOPIC_VERSION}/_ingest/{worker}/presence"


def ingest_presence_filter(prefix: str) -> str:
    """Every ingest worker's presence topic."""
    return f"{prefix}/{TOPIC_VERSION}/_ingest/+/presence"


def parse_camera_topic(prefix: str, topic: str) -> tuple[str, str, TopicKind]:
    """``crowdwatch/v1/stop-a/cam1/counts`` -> ``("stop-a", "cam1", TopicKind.COUNTS)``.

    Raises:
        MessageError: the topic is not a camera topic under ``prefix``.
    """
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != prefix or parts[1] != TOPIC_VERSION:
        raise MessageError(
            f"expected topic {prefix}/{TOPIC_VERSION}/SITE/CAMERA/KIND, got {topic!r}"
        )
    try:
        kind = TopicKind(parts[4])
    except ValueError:
        raise MessageError(f"unknown message kind {parts[4]!r} in topic {topic!r}") from None
    return parts[2], parts[3], kind


def encode(message: Wire) -> bytes:
    """The JSON payload of a message (``schema`` key included, UTC ``Z`` timestamps)."""
    return message.model_dump_json(by_alias=True).encode("utf-8")


def _parse_json(payload: bytes) -> object:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise MessageError(
            f"payload is {len(payload)} bytes, more than the {MAX_PAYLOAD_BYTES} a message may be"
        )
    try:
        return json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MessageError(f"payload is not UTF-8 JSON: {clipped(str(exc))}") from None
    except RecursionError:
        # json nests by recursion: a payload of "[[[[…" would otherwise escape as a crash.
        raise MessageError("payload is nested too deeply to be a message") from None
    except ValueError as exc:
        # What is left of ValueError: Python refuses to read an integer of more than
        # sys.get_int_max_str_digits() digits (4300), a denial-of-service guard.
        if "integer string conversion" in str(exc):
            raise MessageError(
                f"payload holds an integer of more than {sys.get_int_max_str_digits()} "
                "digits: no field of a message takes one"
            ) from None
        raise MessageError(f"payload is not JSON a message can hold: {clipped(str(exc))}") from None


def _decode(payload: bytes, model: type[Wire], schema_tag: str) -> Wire:
    data = _parse_json(payload)
    if not isinstance(data, dict):
        raise MessageError(f"expected a JSON object, got {type(data).__name__}")
    tag = data.get("schema")
    if tag != schema_tag:
        shown = clipped(repr(tag), 80)
        raise MessageError(f"expected schema {schema_tag!r}, got {shown}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = clipped(".".join(str(p) for p in first["loc"]), 120)
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise MessageError(f"{loc}: {clipped(first['msg'])}{more}") from None
    except (RecursionError, ValueError, TypeError) as exc:
        # Not expected from pydantic, but a decoder's surprise is still the payload's fault.
        raise MessageError(
            f"payload could not be validated: {type(exc).__name__}: {clipped(str(exc))}"
        ) from None


_COUNTS_HEAD = b'{"schema":"crowdwatch.counts/1",'
"""How every count message :func:`encode` makes begins (pydantic writes fields in order)."""


def _decode_counts_fast(payload: bytes) -> CountMessage | None:
    """The count message, parsed and validated in one pass by pydantic-core (no ``json``
    module, no intermediate dict: about half the cost of :func:`_decode`); None when the
    payload must take the reference path.

    Only for payloads that can mean nothing else there: no larger than a message may be,
    starting with the literal schema tag (so the tag is present: the model's default cannot
    stand in for a missing one, and a ``schema_`` key cannot be taken for it), and without a
    backslash (no escaped key can spell ``schema``).  Duplicate keys resolve to the last one
    in both parsers.  Anything the fast path refuses, whatever the reason, is decoded again
    by the reference path, so a refused payload gets exactly the reference path's error.
    """
    if len(payload) > MAX_PAYLOAD_BYTES or not payload.startswith(_COUNTS_HEAD) or b"\\" in payload:
        return None
    try:
        return CountMessage.model_validate_json(payload)
    except Exception:
        return None


def decode_counts(payload: bytes) -> CountMessage:
    """Parse and validate a count message.

    A well-formed message as the edge writes it takes a fast path
    (:func:`_decode_counts_fast`); everything else, and every refusal, the reference path.

    Raises:
        MessageError: naming the first problem ("zones.0.count: ...").
    """
    fast = _decode_counts_fast(payload)
    if fast is not None:
        return fast
    message = _decode(payload, CountMessage, COUNTS_SCHEMA)
    assert isinstance(message, CountMessage)
    return message


def decode_status(payload: bytes) -> StatusMessage:
    message = _decode(payload, StatusMessage, STATUS_SCHEMA)
    assert isinstance(message, StatusMessage)
    return message


def decode_alert(payload: bytes) -> AlertMessage:
    message = _decode(payload, AlertMessage, ALERT_SCHEMA)
    assert isinstance(message, AlertMessage)
    return message


def decode_ingest_stats(payload: bytes) -> IngestStatsMessage:
    message = _decode(payload, IngestStatsMessage, INGEST_STATS_SCHEMA)
    assert isinstance(message, IngestStatsMessage)
    return message
