"""The live stream: one database reader shared by every open page, as Server-Sent Events.

While at least one page listens, :class:`LiveHub` reads a :class:`Snapshot` every
``web.live_poll_s`` in a worker thread and sends the state to every listener when it
changed.  A thousand phones on a beach cost the database the same four statements every two
seconds as one phone does.

The stream (``GET /api/stream``) is built for a bad phone network:

* ``retry: 3000`` then the **full state at once** on every (re)connection, so a page that
  lost its connection is whole again after the first event; there are no deltas to replay.
* a ``ping`` event every ``web.heartbeat_s`` when nothing changed, with when the figures
  were last confirmed (``as_of``): proxies keep the connection open, and the page can tell
  a quiet district from a dead connection (EventSource does not surface comments, so the
  heartbeat is a real event).
* each listener holds at most the newest state: a slow phone skips states, never queues them.
* gzip with a sync flush after every event: consecutive states are nearly identical, so
  each costs a few hundred bytes on the wire instead of tens of kilobytes.

When the database is away the events carry ``database.ok = false`` with the last good
figures and when they were read; the pages keep showing them with their age.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import zlib
from collections.abc import AsyncGenerator, Callable
from datetime import UTC, datetime
from typing import Any

import psycopg

from crowdwatch.contracts.config import CrowdwatchConfig
from crowdwatch.contracts.errors import StorageError
from crowdwatch.dashboards.snapshot import Snapshot, iso, state_json
from crowdwatch.storage.db import redact_dsn

logger = logging.getLogger(__name__)

RETRY_MS = 3000
"""How long EventSource waits before reconnecting (sent as ``retry:``)."""


def sse_frame(event: str, data: str) -> bytes:
    """One Server-Sent Event; ``data`` must be one line (compact JSON is)."""
    return f"event: {event}\ndata: {data}\n\n".encode()


def state_frame(state: dict[str, Any]) -> bytes:
    """The ``state`` event of a state: encoded once per state and shared by every listener
    (at 20,000 zones a state is megabytes; encoding it per listener cost each change
    listeners x 0.3 s of the event loop)."""
    return sse_frame("state", json.dumps(state, separators=(",", ":")))


def state_body(state: dict[str, Any]) -> bytes:
    """A state as ``GET /api/state``'s JSON body (as Starlette's ``JSONResponse`` renders)."""
    text = json.dumps(state, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.encode("utf-8")


def _signature(state: dict[str, Any]) -> str:
    """The state without what changes every read (send time, ages): equal means no news."""
    sites = [
        {**s, "age_s": None, "zones": [{**z, "age_s": None} for z in s["zones"]]}
        for s in state["sites"]
    ]
    database = {**state["database"], "as_of": None}  # sent with each ping instead
    return json.dumps(
        {**state, "generated_at": None, "database": database, "sites": sites}, sort_keys=True
    )


class LiveHub:
    """Reads the database for every listener at once and fans the state out.

    Args:
        config: the site config.
        read: reads one snapshot (blocking; runs in a worker thread); raises
            :class:`StorageError` when the database is away.
        poll_s: seconds between reads while anyone listens.
        heartbeat_s: seconds of silence before a ``ping`` event.
    """

    def __init__(
        self,
        config: CrowdwatchConfig,
        read: Callable[[datetime], Snapshot],
        poll_s: float,
        heartbeat_s: float,
    ) -> None:
        self._config = config
        self._read = read
        self._poll_s = poll_s
        self._heartbeat_s = heartbeat_s
        self._listeners: set[asyncio.Queue[bytes]] = set()
        self._snapshot: Snapshot | None = None
        self._state: dict[str, Any] | None = None
        self._frame = b""
        """``state_frame`` of ``_state``"""
        self._body: tuple[dict[str, Any], bytes] | None = None
        """``_state`` and its ``state_body``, made on the first request that needs it"""
        self._state_mono = 0.0
        self._signature = ""
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._closed = asyncio.Event()

    @property
    def listeners(self) -> int:
        return len(self._listeners)

    def close(self) -> None:
        """End every stream (the server is stopping)."""
        self._closed.set()
        self._wake.set()

    async def refresh(self) -> dict[str, Any]:
        """Read the database now, publish the state if it changed, and return it."""
        async with self._lock:
            now = datetime.now(UTC)
            ok, detail = True, None
            try:
                self._snapshot = await asyncio.to_thread(self._read, now)
            except (StorageError, psycopg.Error) as exc:
                # Every page sees this state, logged in or not: no hosts, users or passwords.
                ok, detail = False, "database unavailable"
                logger.warning("live state: database unavailable: %s", redact_dsn(str(exc)))
            state = state_json(
                self._config, self._snapshot, database_ok=ok, detail=detail, generated_at=now
            )
            self._state, self._state_mono = state, time.monotonic()
            self._frame = state_frame(state)
            signature = _signature(state)
            if signature != self._signature:
                self._signature = signature
                self._publish(self._frame)
            return state

    async def current(self) -> dict[str, Any]:
        """The newest state, read again when older than one poll (shared by all callers)."""
        if self._state is not None and time.monotonic() - self._state_mono < self._poll_s:
            return self._state
        return await self.refresh()

    async def current_body(self) -> tuple[dict[str, Any], bytes]:
        """:meth:`current` and its JSON body, rendered once per state for every request."""
        state = await self.current()
        if self._body is None or self._body[0] is not state:
            self._body = (state, state_body(state))
        return self._body

    def _publish(self, frame: bytes) -> None:
        for queue in self._listeners:
            if queue.full():  # a slow listener: the newer state replaces the unsent one
                queue.get_nowait()
            queue.put_nowait(frame)

    def _ping(self) -> dict[str, Any]:
        """The heartbeat: the time, and when the figures were last confirmed (``as_of``)."""
        database = (self._state or {}).get("database", {})
        return {
            "t": iso(datetime.now(UTC)),
            "ok": database.get("ok"),
            "as_of": database.get("as_of"),
        }

    async def run(self) -> None:
        """Read every ``poll_s`` while anyone listens; until :meth:`close`."""
        while not self._closed.is_set():
            if self._listeners:
                try:
                    await self.refresh()
                except Exception:  # keep the stream alive whatever one read did; log it
                    logger.exception("live state refresh failed")
                timeout: float | None = self._poll_s
            else:
                timeout = None  # nobody listens: sleep until someone does
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def events(self, *, gzip: bool = False) -> AsyncGenerator[bytes, None]:
        """The byte stream of one listener: retry, the full state, then changes and pings.

        Args:
            gzip: compress (the response must then carry ``Content-Encoding: gzip``).
        """
        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1)
        compressor = zlib.compressobj(6, zlib.DEFLATED, 31) if gzip else None

        def encode(frame: bytes) -> bytes:
            if compressor is None:
                return frame
            return compressor.compress(frame) + compressor.flush(zlib.Z_SYNC_FLUSH)

        yield encode(f"retry: {RETRY_MS}\n\n".encode())
        await self.current()
        # Listening starts right after that read with no await between: no change is missed
        # and the state just sent is not queued a second time.
        first = self._frame
        self._listeners.add(queue)
        self._wake.set()
        try:
            yield encode(first)
            while not self._closed.is_set():
                news = await self._next_state(queue)
                if news is not None:
                    yield encode(news)
                elif not self._closed.is_set():
                    yield encode(sse_frame("ping", json.dumps(self._ping())))
        finally:
            self._listeners.discard(queue)

    async def _next_state(self, queue: asyncio.Queue[bytes]) -> bytes | None:
        """The listener's next state frame; None after a heartbeat of silence or on close."""
        closing = asyncio.ensure_future(self._closed.wait())
        getting = asyncio.ensure_future(queue.get())
        try:
            await asyncio.wait(
                {closing, getting}, timeout=self._heartbeat_s, return_when="FIRST_COMPLETED"
            )
        finally:
            # Also when the client left and this wait was cancelled: otherwise both tasks
            # and their waiters outlive the connection, one pair per disconnect.
            closing.cancel()
            getting.cancel()
        if getting.done() and not getting.cancelled():
            return getting.result()
        return None
