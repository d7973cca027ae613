"""Connection limits of the web server: slow and idle clients cannot hold it open.

uvicorn closes a keep-alive connection that is idle *between* requests
(``timeout_keep_alive``) and bounds one request's headers (``h11_max_incomplete_event_size``),
but has no deadline for a request to arrive: a connection that sends nothing, or one header
byte a second (slowloris), stays open for ever, one file descriptor each.  Its
``limit_concurrency`` does not help either: it answers 503 only once a request has been
read.  :func:`guarded_protocol` adds what is missing, on uvicorn's own h11 protocol:

* **a request deadline**: from a connection's first moment, and from the first byte of each
  later request, the whole request (headers and body) must arrive within
  ``web.request_timeout_s``, or the connection is closed;
* **a connection cap**: at ``web.max_connections`` open connections (live streams included)
  a new one takes the place of the one that has waited longest without sending a request
  (idle, kept alive, or a slowloris), so idle sockets cannot keep a real request out; when
  every connection is busy the new one is closed at once, before it costs more than its
  accept.

:func:`open_files_budget` raises the process's open-file limit to what the cap needs and
lowers the cap to what the limit allows, so that ``accept()`` never meets EMFILE; and
:class:`AcceptStormFilter` keeps asyncio's "socket.accept() out of system resource" (which
it logs thousands of times a second while descriptors are exhausted) to one line per 10 s.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger(__name__)

RESERVED_FILES = 64
"""Descriptors kept for everything but client connections: database, logs, threads."""
MAX_HEADER_BYTES = 16 * 1024
"""The request line and headers together at most (h11's incomplete-event limit)."""
_RECEIVING = (h11.IDLE, h11.SEND_BODY)


def guarded_protocol(max_connections: int, request_timeout_s: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a request deadline and a connection cap.

    Args:
        max_connections: open connections at most; a new one past it is closed at once.
        request_timeout_s: seconds a client has to send a whole request.

    Returns:
        A protocol class for ``uvicorn.Config(http=...)``.
    """

    class GuardedH11Protocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None
        _idle_since: float | None = None
        """When it began to wait for a request (new, or kept alive after one); None: busy."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            full = len(self.connections) >= max_connections
            super().connection_made(transport)
            if full and not self._evict_one():
                _refused.note()
                transport.close()
                return
            self._arm()

        def _evict_one(self) -> bool:
            """Close the connection that has waited longest without a request, if any.

            A full server then still takes a real request: idle sockets (or a slowloris that
            never finishes one) give way to it, while busy requests and live streams stay.
            """
            idle = [
                p
                for p in self.connections
                if isinstance(p, GuardedH11Protocol) and p is not self and p._idle_since is not None
            ]
            if not idle:
                return False
            oldest = min(idle, key=lambda p: p._idle_since or 0.0)
            _evicted.note()
            oldest.transport.close()
            oldest._idle_since = None
            return True

        def data_received(self, data: bytes) -> None:
            if self.conn.their_state is h11.IDLE:
                self._arm()  # the first byte of a new request starts its deadline
            super().data_received(data)
            if self.conn.their_state not in _RECEIVING:
                self._disarm()  # the whole request is in

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            # Between requests uvicorn's keep-alive timeout takes over; the connection is
            # idle again, and the first to give way when the server is full.
            self._disarm()
            super().on_response_complete()
            if not self.transport.is_closing():
                self._idle_since = time.monotonic()

        def _arm(self) -> None:
            if self._deadline is None:
                self._deadline = self.loop.call_later(request_timeout_s, self._too_slow)
                self._idle_since = self._idle_since or time.monotonic()

        def _disarm(self) -> None:
            self._idle_since = None
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            if self.conn.their_state in _RECEIVING and not self.transport.is_closing():
                _slow.note()
                self.transport.close()

    return GuardedH11Protocol


class _Tally:
    """Counts an event and logs it at most once per ``every_s``, with how many it stands for."""

    def __init__(self, message: str, every_s: float = 10.0) -> None:
        self._message = message
        self._every_s = every_s
        self._count = 0
        self._last = float("-inf")
        self.total = 0

    def note(self) -> None:
        self._count += 1
        self.total += 1
        now = time.monotonic()
        if now - self._last >= self._every_s:
            logger.warning(self._message, self._count)
            self._count, self._last = 0, now


_refused = _Tally("web: %d connection(s) closed at once: web.max_connections busy ones open")
_evicted = _Tally("web: %d idle connection(s) closed to make room (web.max_connections)")
_slow = _Tally("web: %d connection(s) closed: no whole request within web.request_timeout_s")


def open_files_budget(max_connections: int) -> int:
    """Raise the open-file limit for ``max_connections``; the connections it then allows.

    Args:
        max_connections: the configured cap.

    Returns:
        The cap to use: ``max_connections``, or fewer when the hard limit on open files
        does not leave :data:`RESERVED_FILES` besides (logged as a warning).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + RESERVED_FILES
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            logger.warning("cannot raise the open-file limit from %d to %d", soft, target)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return max_connections
    allowed = max(1, soft - RESERVED_FILES)
    logger.warning(
        "web.max_connections %d lowered to %d: the open-file limit is %d (ulimit -n)",
        max_connections,
        allowed,
        soft,
    )
    return allowed


class AcceptStormFilter(logging.Filter):
    """Lets asyncio's accept-failure message through once per ``every_s`` seconds.

    When descriptors run out asyncio logs "socket.accept() out of system resource" with a
    traceback on every retry: 132 MB in 15 s in the probe.  One line per 10 s says the same.
    """

    def __init__(self, every_s: float = 10.0) -> None:
        super().__init__()
        self._every_s = every_s
        self._last = float("-inf")
        self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if "out of system resource" not in str(record.msg):
            return True
        now = time.monotonic()
        if now - self._last < self._every_s:
            self._dropped += 1
            return False
        record.msg = f"{record.msg} ({self._dropped} more in the last {self._every_s:.0f} s)"
        record.exc_info = None  # the same OSError every time: the line says it
        self._last, self._dropped = now, 0
        return True
