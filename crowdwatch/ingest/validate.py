"""Check one MQTT message against the message contract and the district config.

Every message ends as exactly one of: :class:`Accepted` (to be written), :class:`Rejected`
(to ``dead_letters`` with the reason), or nothing (an ``available: online`` notice, which
carries no information the status messages do not).  Nothing here raises: a bad payload is
data, not an error of the service, whatever the decoder throws at it.

A payload over :data:`~crowdwatch.contracts.messages.MAX_PAYLOAD_BYTES` is not held whole:
its :class:`Envelope` keeps the first :data:`KEPT_PAYLOAD_BYTES`, its size and its SHA-256
(:meth:`Envelope.received`), and it is rejected unread.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import assert_never

from crowdwatch.contracts.config import CrowdwatchConfig
from crowdwatch.contracts.errors import MessageError
from crowdwatch.contracts.messages import (
    AVAILABLE_OFFLINE,
    AVAILABLE_ONLINE,
    MAX_FUTURE,
    MAX_PAYLOAD_BYTES,
    CameraState,
    CountMessage,
    StatusMessage,
    TopicKind,
    clipped,
    decode_counts,
    decode_status,
    new_message_id,
    parse_camera_topic,
)
from crowdwatch.ingest.clock import ClockSkew

logger = logging.getLogger(__name__)

KEPT_PAYLOAD_BYTES = 8192
"""How much of a payload a dead letter keeps (with its full size and SHA-256): enough to see
what was sent, not enough for a hostile sender to fill the database or the ingest's memory."""

MAX_AGE = timedelta(days=7)
"""A timestamp older than this is a replay or a wrong clock, not a late message."""

OFFLINE_DETAIL = "available: offline"


@dataclass(frozen=True, slots=True)
class Envelope:
    """One MQTT message as received, before any parsing."""

    topic: str
    payload: bytes
    received_at: datetime
    """UTC time the ingest received it."""
    retained: bool = False
    """The broker replayed a stored retained value because we subscribed (MQTT retain flag)."""
    cut_from: int | None = None
    """The payload's real size when ``payload`` is only its first bytes (too big to hold)."""
    cut_sha256: str | None = None
    """The SHA-256 of the whole payload when it was cut."""

    @classmethod
    def received(
        cls, topic: str, payload: bytes, received_at: datetime, *, retained: bool = False
    ) -> Envelope:
        """An envelope that holds at most :data:`KEPT_PAYLOAD_BYTES` of a payload too big to be
        a message, so that the queue of received messages stays small whatever is sent."""
        if len(payload) <= MAX_PAYLOAD_BYTES:
            return cls(topic, payload, received_at, retained)
        return cls(
            topic,
            payload[:KEPT_PAYLOAD_BYTES],
            received_at,
            retained,
            cut_from=len(payload),
            cut_sha256=hashlib.sha256(payload).hexdigest(),
        )

    @property
    def size(self) -> int:
        """The size of the payload as sent, in bytes."""
        return len(self.payload) if self.cut_from is None else self.cut_from

    def sha256(self) -> str:
        """The SHA-256 (hex) of the payload as sent."""
        return self.cut_sha256 or hashlib.sha256(self.payload).hexdigest()


@dataclass(frozen=True, slots=True)
class Accepted:
    envelope: Envelope
    message: CountMessage | StatusMessage


@dataclass(frozen=True, slots=True)
class Rejected:
    envelope: Envelope
    reason: str


@dataclass(frozen=True, slots=True)
class _CameraIds:
    zones: frozenset[str]
    lines: frozenset[str]


class MessageValidator:
    """Validates messages of one topic prefix against the cameras of a config.

    Args:
        config: the district config; its sites and cameras are the only ones accepted.
        max_future: how far ahead of the receive time a timestamp may be.
        max_age: how far behind the receive time a timestamp may be.
        clock_skew: where each fresh (not retained) count and status message's receive time
            minus ``ts`` is recorded, refused ones included; ``None``: not measured.
    """

    def __init__(
        self,
        config: CrowdwatchConfig,
        *,
        max_future: timedelta = MAX_FUTURE,
        max_age: timedelta = MAX_AGE,
        clock_skew: ClockSkew | None = None,
    ) -> None:
        self._prefix = config.mqtt.topic_prefix
        self._skew = clock_skew
        self._max_future = max_future
        self._max_age = max_age
        self._cameras = {
            (site.id, cam.id): _CameraIds(
                zones=frozenset(z.id for z in cam.zones),
                lines=frozenset(line.id for line in cam.lines),
            )
            for site, cam in config.cameras()
        }

    def validate(self, envelope: Envelope) -> Accepted | Rejected | None:
        """Classify one message.

        Args:
            envelope: the raw message.

        Returns:
            ``Accepted`` with the parsed message, ``Rejected`` with the reason, or ``None``
            for a message with nothing to store (``available: online``).
        """
        try:
            return self._validate(envelope)
        except MessageError as exc:
            return Rejected(envelope, clipped(str(exc)))
        except Exception as exc:
            # The contract's decoders raise only MessageError; anything else is a bug met on
            # this one payload, and still this payload's fault, not the batch's.
            logger.exception("validating a message from %s failed", clipped(envelope.topic, 200))
            return Rejected(
                envelope, clipped(f"could not be validated: {type(exc).__name__}: {exc}")
            )

    def _validate(self, envelope: Envelope) -> Accepted | None:
        if envelope.cut_from is not None:
            raise MessageError(
                f"payload is {envelope.cut_from} bytes, more than the {MAX_PAYLOAD_BYTES} a "
                f"message may be (its first {len(envelope.payload)} bytes are kept)"
            )
        site_id, camera_id, kind = parse_camera_topic(self._prefix, envelope.topic)
        camera = self._cameras.get((site_id, camera_id))
        if camera is None:
            raise MessageError(f"unknown camera {site_id}/{camera_id} (not in the config)")
        message: CountMessage | StatusMessage
        # Exhaustive: a new topic kind fails mypy here instead of being decoded as a status.
        match kind:
            case TopicKind.AVAILABLE:
                return self._availability(envelope, site_id, camera_id)
            case TopicKind.COUNTS:
                message = decode_counts(envelope.payload)
            case TopicKind.STATUS:
                message = decode_status(envelope.payload)
            case _:
                assert_never(kind)
        if (message.site_id, message.camera_id) != (site_id, camera_id):
            raise MessageError(
                f"payload names camera {message.site_id}/{message.camera_id} but was published "
                f"on the topic of {site_id}/{camera_id}"
            )
        if self._skew is not None and not envelope.retained:
            # A retained value is as old as it is, whatever the edge clock says.
            self._skew.observe(site_id, camera_id, message.ts, envelope.received_at)
        self._check_time(message.ts, envelope.received_at, f"{site_id}/{camera_id}")
        if isinstance(message, CountMessage):
            _check_ids("zone", [z.zone_id for z in message.zones], camera.zones, camera_id)
            _check_ids("line", [x.line_id for x in message.lines], camera.lines, camera_id)
        return Accepted(envelope, message)

    def _availability(self, envelope: Envelope, site_id: str, camera_id: str) -> Accepted | None:
        text = envelope.payload.decode("utf-8", errors="replace").strip()
        if text == AVAILABLE_ONLINE:
            # The worker's status messages say more (fps, detail); "online" adds nothing.
            return None
        if text != AVAILABLE_OFFLINE:
            raise MessageError(f"expected 'online' or 'offline', got {text[:50]!r}")
        # Usually the broker publishing the worker's Last Will: the camera has no data now,
        # which must show as "offline", never as 0 people.  The receive time is only a
        # provisional ts: the service dates the notice (see crowdwatch.ingest.offline).
        status = StatusMessage(
            message_id=new_message_id(),
            site_id=site_id,
            camera_id=camera_id,
            ts=envelope.received_at,
            state=CameraState.OFFLINE,
            detail=OFFLINE_DETAIL,
        )
        return Accepted(envelope, status)

    def _check_time(self, ts: datetime, received_at: datetime, camera: str) -> None:
        if ts > received_at + self._max_future:
            ahead_s = (ts - received_at).total_seconds()
            raise MessageError(
                f"clock skew: ts {ts.isoformat()} is {ahead_s:.0f} s ahead of the receive time "
                f"{received_at.isoformat()}, more than the {self._max_future} allowed: the "
                f"clock of camera {camera}'s edge box is wrong; fix its time sync (NTP)"
            )
        if ts < received_at - self._max_age:
            raise MessageError(
                f"ts {ts.isoformat()} is more than {self._max_age} before the receive "
                f"time {received_at.isoformat()}"
            )


def _check_ids(what: str, ids: list[str], known: frozenset[str], camera_id: str) -> None:
    unknown = sorted(set(ids) - known)
    if unknown:
        raise MessageError(f"unknown {what} id(s) {unknown} for camera {camera_id!r}")
    if len(ids) != len(set(ids)):
        raise MessageError(f"a {what} id appears twice in one message")
