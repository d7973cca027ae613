"""A lost ingest worker's share of the shared subscription, taken over by a surviving one.

Why: a broker keeps routing a share of a shared group's messages to a member whose client is
gone but whose persistent session lives on (mosquitto does until the session expires, 24 h;
EMQX's docs say the same), and that session also holds what the lost worker had received but
not acknowledged.  Without a stand-in those messages wait until a worker of the same name
connects again.

How: every worker announces itself on a retained presence topic
(:func:`~crowdwatch.contracts.messages.ingest_presence_topic`): ``online`` on each
connection, ``offline`` as its MQTT Last Will (the broker publishes it when the connection is
lost without a goodbye: a killed process at once, a cut link after 1.5 keepalives) and
``offline`` again on a clean stop (its session still gets a share while it is away).  Every
worker watches the presence of the others.  For each worker that is offline, exactly one
online worker (each computes the same choice: the online names sorted, the lost name's CRC-32
modulo their number) opens a *stand-in* connection under the lost worker's client id with
``clean_start=False``: the broker hands it the session, so the stand-in receives the queued
and unacknowledged messages and the session's share of new ones, and they are written and
acknowledged (after the commit) like the worker's own.

When the lost worker comes back, its CONNECT takes the session over and the broker closes
the stand-in's connection (mosquitto 2.0 closes it without the MQTT 5 DISCONNECT "Session
taken over", so any loss counts); the stand-in never reconnects
(:class:`~crowdwatch.mqtt.client.MqttClient` ``stand_in``), and no new one is tried for that
worker for :data:`RETRY_S` unless it is reported offline again: the worker's ``online`` can
arrive seconds later, behind a backlog of counts on the same connection, and a stand-in
started in between would take the session from its owner.  A message the stand-in
committed but could not acknowledge before it was cut off is sent again to the owner and
written once (every raw row is keyed by its message id), so the guarantee stays
exactly once in the database.  A stand-in finds no session when it has expired (a worker
retired more than the session expiry ago): it removes the empty one its CONNECT made and
clears the stale presence, so no worker tries again.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from crowdwatch.contracts.errors import BrokerError
from crowdwatch.contracts.messages import ingest_presence_topic
from crowdwatch.mqtt.client import MqttClient

logger = logging.getLogger(__name__)

ONLINE = "online"
OFFLINE = "offline"
RECHECK_S = 1.0
"""How often the stand-ins are looked at without a presence change (a grace period that
ended is acted on)."""
RETRY_S = 30.0
"""After a stand-in lost its connection, how long before another one is tried for the same
worker while it is still reported offline.  The usual cause is the owner taking its session
back (its ``online`` follows at once), and a stand-in started again at once would take the
session from the owner; a new ``offline`` (also the retained one sent again when our own
connection comes back after a broker restart) ends the wait at once."""
GRACE_S = 5.0
"""How long a worker stays offline before a stand-in takes its session: a worker that is
restarted (or a group that starts, each seeing the others' ``offline`` of their last stop)
is back within it, without a stand-in connecting and being pushed out again."""


@dataclass(frozen=True, slots=True)
class Presence:
    """One worker's retained announcement."""

    worker: str
    client_id: str
    group: str
    state: str

    def encode(self) -> bytes:
        return json.dumps(
            {"client_id": self.client_id, "group": self.group, "state": self.state}
        ).encode()

    @classmethod
    def decode(cls, worker: str, payload: bytes) -> Presence | None:
        """None for anything that is not a presence (logged, never raised)."""
        try:
            raw = json.loads(payload)
            presence = cls(worker, str(raw["client_id"]), str(raw["group"]), str(raw["state"]))
        except (ValueError, TypeError, KeyError) as exc:
            logger.warning("ignored an ingest presence for %s: %s", worker, exc)
            return None
        return presence if presence.state in (ONLINE, OFFLINE) else None


def holder(lost: str, online: set[str]) -> str:
    """The online worker that stands in for ``lost``: the same answer on every worker that
    sees the same presences, and lost workers spread over the survivors."""
    names = sorted(online)
    return names[zlib.crc32(lost.encode()) % len(names)]


StartStandIn = Callable[[str], MqttClient]
"""Connects a stand-in under a client id (raises :class:`BrokerError`)."""
Publish = Callable[[str, bytes], None]
"""Publishes a retained message (raises :class:`BrokerError`)."""


class Takeover:
    """Watches the presences and runs this worker's stand-ins on its own thread.

    Args:
        prefix: the topic prefix.
        group: the shared group; presences of other groups are ignored.
        worker: this worker's name (its presence topic level).
        start_stand_in: connects a stand-in for a client id.
        clear_presence: publishes an empty retained message to a presence topic.
        grace_s: :data:`GRACE_S`.
    """

    def __init__(
        self,
        prefix: str,
        group: str,
        worker: str,
        start_stand_in: StartStandIn,
        clear_presence: Publish,
        grace_s: float = GRACE_S,
    ) -> None:
        self._prefix = prefix
        self._group = group
        self.worker = worker
        self._start = start_stand_in
        self._clear = clear_presence
        self._grace_s = grace_s
        self._offline_since: dict[str, float] = {}
        self._events: queue.Queue[Presence | str | None] = queue.Queue()
        """A presence, a worker whose presence was cleared, or None: stop."""
        self._presence: dict[str, Presence] = {}
        self._stand_ins: dict[str, MqttClient] = {}
        self._yielded: dict[str, float] = {}
        """Workers whose stand-in lost its connection (taken over by the owner or another
        stand-in, or cut off), and when: left alone for :data:`RETRY_S` or until a new
        ``offline``."""
        self._thread = threading.Thread(target=self._run, name="ingest-takeover", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Close every stand-in (what it received and committed is acknowledged first by the
        caller's flush; the rest is redelivered to whoever takes the session next)."""
        self._events.put(None)
        if self._thread.is_alive():
            self._thread.join()

    def standing_in(self) -> list[str]:
        """The workers this one stands in for now."""
        return sorted(w for w, c in list(self._stand_ins.items()) if c.connected)

    def on_presence(self, topic: str, payload: bytes) -> None:
        """The handler of the presence subscription (paho's thread: only queues)."""
        parts = topic.split("/")
        if len(parts) != 5:
            return
        worker = parts[3]
        if not payload:
            self._events.put(worker)
            return
        presence = Presence.decode(worker, payload)
        if presence is not None and presence.group == self._group:
            self._events.put(presence)

    def _run(self) -> None:
        while True:
            try:
                event = self._events.get(timeout=RECHECK_S)
            except queue.Empty:
                event = ""
            if event is None:
                break
            if isinstance(event, Presence):
                if event.state == OFFLINE:
                    self._yielded.pop(event.worker, None)
                    self._offline_since.setdefault(event.worker, time.monotonic())
                else:
                    self._offline_since.pop(event.worker, None)
                self._presence[event.worker] = event
            elif event:
                self._presence.pop(event, None)
                self._offline_since.pop(event, None)
            try:
                self._settle()
            except Exception:
                # A bug here must not end the worker's own ingest.
                logger.exception("ingest takeover failed; retrying in %g s", RECHECK_S)
        for worker in list(self._stand_ins):
            self._release(worker)

    def _settle(self) -> None:
        online = {w for w, p in self._presence.items() if p.state == ONLINE} | {self.worker}
        due = time.monotonic() - self._grace_s
        mine = {
            w
            for w, p in self._presence.items()
            if p.state == OFFLINE
            and w != self.worker
            and self._offline_since.get(w, 0.0) <= due
            and holder(w, online) == self.worker
        }
        now = time.monotonic()
        for worker in list(self._stand_ins):
            client = self._stand_ins[worker]
            if not client.connected:
                # Never at once again: whoever took the session (most likely its owner,
                # whose online is on its way) must keep it.
                self._yielded[worker] = now
            if worker not in mine or not client.connected:
                self._release(worker)
        waiting = {w for w, at in self._yielded.items() if now - at < RETRY_S}
        for worker in sorted(mine - set(self._stand_ins) - waiting):
            self._take(self._presence[worker])

    def _take(self, lost: Presence) -> None:
        try:
            client = self._start(lost.client_id)
        except BrokerError as exc:
            if "no session to take over" in str(exc):
                logger.info("ingest %s has no session left: forgetting it", lost.worker)
                self._presence.pop(lost.worker, None)
                self._offline_since.pop(lost.worker, None)
                try:
                    self._clear(ingest_presence_topic(self._prefix, lost.worker), b"")
                except BrokerError as clear_exc:
                    logger.warning("could not clear %s's presence: %s", lost.worker, clear_exc)
            else:
                logger.warning("cannot stand in for ingest %s: %s", lost.worker, exc)
            return
        self._stand_ins[lost.worker] = client
        logger.warning(
            "ingest %s is offline: %s takes over its session %s", lost.worker, self.worker,
            lost.client_id,
        )  # fmt: skip

    def _release(self, worker: str) -> None:
        client = self._stand_ins.pop(worker)
        client.close()
        logger.info("ingest %s no longer stands in for %s", self.worker, worker)
