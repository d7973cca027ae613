"""The alert engine's door for count messages arriving over MQTT.

::

    paho thread ── offer(payload) ──► queue of (payload, receive time) ──► take(wait)
    (a payload over MAX_PAYLOAD_BYTES,      (bounded; the periodic tick    decode each alone,
     or one that finds the queue full,       reads zone_latest anyway)     ts as of its arrival
     is dropped here, never queued)

Whatever arrives, :meth:`CountInbox.take` returns only valid messages: a payload the contract
refuses (any bytes, any number, any nesting) or a ``ts`` more than
:data:`~crowdwatch.contracts.messages.MAX_FUTURE` ahead of its arrival is that payload's fault:
it is counted in :attr:`CountInbox.refused`, its reason logged (at most one line a minute, so
a flood cannot fill the log), and the others of its batch are evaluated.  The ingest keeps
the refused payloads as dead letters; the engine only leaves them out.  A ``ts`` ahead of the
arrival within the limit is taken as the arrival time
(:func:`~crowdwatch.contracts.messages.as_of`), as ``zone_latest`` does, so such a message
cannot hide the messages after it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from crowdwatch.contracts.errors import MessageError
from crowdwatch.contracts.messages import (
    MAX_FUTURE,
    MAX_PAYLOAD_BYTES,
    CountMessage,
    as_of,
    clipped,
    decode_counts,
)

logger = logging.getLogger(__name__)

QUEUE_SIZE = 20_000
"""Payloads held at most; more are dropped (the next tick reads what ingest stored)."""

REPORT_EVERY_S = 60.0
"""At most one log line about refused payloads this often."""


class CountInbox:
    """Count payloads from the MQTT thread to the engine's loop (thread-safe).

    Args:
        clock: the current UTC time (tests); the wall clock by default.
        maxsize: payloads held at most.

    Example:
        >>> inbox = CountInbox()
        >>> inbox.offer(b"[[[")
        >>> inbox.take(0.0), inbox.refused
        ([], 1)
    """

    def __init__(
        self, clock: Callable[[], datetime] | None = None, maxsize: int = QUEUE_SIZE
    ) -> None:
        self._clock = clock or (lambda: datetime.now(UTC))
        self._queue: queue.Queue[tuple[bytes, datetime]] = queue.Queue(maxsize=maxsize)
        self._lock = threading.Lock()
        self.refused = 0
        """Payloads left out since start (not a valid count message, too big, ts too far
        ahead, or no room)."""
        self._unreported = 0
        self._last_reason = ""
        self._reported_at = float("-inf")

    def offer(self, payload: bytes) -> None:
        """Queue one payload with its receive time (called on paho's network thread)."""
        if len(payload) > MAX_PAYLOAD_BYTES:
            # Dropped before it is held: a huge payload must not sit in the engine's memory.
            self._refuse(
                f"payload is {len(payload)} bytes, more than the {MAX_PAYLOAD_BYTES} a message "
                "may be"
            )
            return
        try:
            self._queue.put_nowait((payload, self._clock()))
        except queue.Full:
            # Never block paho's thread (its keepalive): the engine is behind, and the
            # periodic tick still evaluates what ingest stored.
            self._refuse(f"the engine is behind: {self._queue.maxsize} payloads wait already")

    def take(self, wait: float, limit: int = 2000) -> list[CountMessage]:
        """The valid count messages waiting (from at most ``limit`` payloads), after waiting
        up to ``wait`` seconds for one; each ``ts`` as of the message's arrival."""
        self._report_if_due()
        try:
            first = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
        except queue.Empty:
            return []
        received = [first]
        while len(received) < limit:
            try:
                received.append(self._queue.get_nowait())
            except queue.Empty:
                break
        messages = []
        for payload, received_at in received:
            message = self._decode(payload, received_at)
            if message is not None:
                messages.append(message)
        return messages

    def _decode(self, payload: bytes, received_at: datetime) -> CountMessage | None:
        try:
            message = decode_counts(payload)
        except MessageError as exc:
            self._refuse(str(exc))
            return None
        except Exception as exc:
            # The decoder raises only MessageError; anything else is still this payload's
            # fault, and must not end alerting.
            logger.exception("decoding a count payload failed")
            self._refuse(f"could not be decoded: {type(exc).__name__}: {exc}")
            return None
        if message.ts > received_at + MAX_FUTURE:
            self._refuse(
                f"clock skew: {message.site_id}/{message.camera_id} ts {message.ts.isoformat()} "
                f"is more than {MAX_FUTURE} ahead of its arrival"
            )
            return None
        if message.ts > received_at:
            return message.model_copy(update={"ts": as_of(message.ts, received_at)})
        return message

    def _refuse(self, reason: str) -> None:
        with self._lock:
            self.refused += 1
            self._unreported += 1
            self._last_reason = clipped(reason, 300)
        self._report_if_due()

    def _report_if_due(self) -> None:
        # The first refusal at once, then what accumulated, at most once a minute.
        with self._lock:
            now = time.monotonic()
            if not self._unreported or now - self._reported_at < REPORT_EVERY_S:
                return
            count, self._unreported, self._reported_at = self._unreported, 0, now
            last = self._last_reason
        logger.warning(
            "left out %d count payload(s) that are not valid messages (ingest keeps them as "
            "dead letters); the last: %s",
            count,
            last,
        )
