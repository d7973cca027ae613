"""A fleet of simulated cameras in one process, cheap enough not to eat the machine it loads.

``crowdwatch simulate`` builds every message from its curves through pydantic (a model, its
validation, its JSON) and publishes with a wait for each PUBACK: about 0.17 ms of CPU per
message, so at a few thousand cameras the simulators take the cores the bench measures. Here
each camera's count and status payloads are encoded once, with the same contract
(:func:`crowdwatch.contracts.messages.encode`), and cut around their ``ts`` and
``message_id``; each message is those cuts joined with a fresh timestamp and id, published at
QoS 1 by :class:`crowdwatch.bench._wire.WirePublisher` (ready-made packets, one write per
20 ms tick, up to the broker's Receive Maximum in flight, one connection per 250 cameras)
instead of paho, whose own cost per
publish is about what the simulator's is. The counts stay at the camera's
first values (a load bench measures the flow, not the curves); like the simulator, a camera
publishes ``available: online`` at start, then a count and a retained status every
interval, and its cameras are spread evenly over the interval as independent edge boxes are.

Run as ``python -m crowdwatch.bench._fleet CONFIG`` (``crowdwatch bench load`` starts it);
SIGTERM stops it after the current message. The config's ``edge.interval_s`` paces it.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from crowdwatch.bench._wire import WirePublisher
from crowdwatch.contracts.config import CrowdwatchConfig, load_config
from crowdwatch.contracts.messages import (
    AVAILABLE_ONLINE,
    CameraState,
    CountMessage,
    StatusMessage,
    TopicKind,
    ZoneCount,
    camera_topic,
    encode,
)

logger = logging.getLogger(__name__)

_TS = datetime(2000, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)
"""A timestamp no real message carries: found in the encoded payload and cut out."""
_ID = "fleet-message-id-placeholder"


@dataclass(frozen=True, slots=True)
class Template:
    """A payload cut around its ``ts`` and ``message_id``: ``head ts middle id tail``."""

    parts: tuple[bytes, bytes, bytes]
    ts_first: bool

    @classmethod
    def of(cls, payload: bytes) -> Template:
        """Cut an encoded message made with :data:`_TS` and :data:`_ID`.

        Raises:
            ValueError: the placeholders are not each found exactly once.
        """
        ts = _TS.strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()
        ident = _ID.encode()
        if payload.count(ts) != 1 or payload.count(ident) != 1:
            raise ValueError(f"expected one {ts!r} and one {ident!r} in {payload[:200]!r}")
        ts_at, id_at = payload.index(ts), payload.index(ident)
        first, second = (ts, ident) if ts_at < id_at else (ident, ts)
        head, _, rest = payload.partition(first)
        middle, _, tail = rest.partition(second)
        return cls((head, middle, tail), ts_first=ts_at < id_at)

    def fill(self, ts: bytes, message_id: bytes) -> bytes:
        head, middle, tail = self.parts
        if self.ts_first:
            return b"".join((head, ts, middle, message_id, tail))
        return b"".join((head, message_id, middle, ts, tail))


@dataclass(frozen=True, slots=True)
class FleetCamera:
    """One camera's topics and pre-encoded payloads."""

    counts_topic: str
    status_topic: str
    available_topic: str
    counts: Template
    status: Template


def fleet_cameras(config: CrowdwatchConfig) -> list[FleetCamera]:
    """Every simulated camera of ``config`` with its payloads encoded once.

    Each zone reports a small steady count (a tenth of its capacity, at most 5), far below any
    crowd rule, so only the bench's own probes fire alerts.
    """
    prefix = config.mqtt.topic_prefix
    cameras = []
    for site, camera in config.cameras():
        if not camera.simulated:
            continue
        zones = [
            ZoneCount(
                zone_id=z.id,
                count=(n := min(5, (z.capacity or 10) // 10)),
                count_max=n,
                count_mean=float(n),
            )
            for z in camera.zones
        ]
        count = CountMessage(
            site_id=site.id,
            camera_id=camera.id,
            ts=_TS,
            message_id=_ID,
            interval_s=config.edge.interval_s,
            frames=max(1, round(10 * config.edge.interval_s)),
            zones=zones,
        )
        status = StatusMessage(
            site_id=site.id,
            camera_id=camera.id,
            ts=_TS,
            message_id=_ID,
            state=CameraState.ONLINE,
            fps=10.0,
            detail="fleet",
        )

        def topic(kind: TopicKind, s: str = site.id, c: str = camera.id) -> str:
            return camera_topic(prefix, s, c, kind)

        cameras.append(
            FleetCamera(
                topic(TopicKind.COUNTS),
                topic(TopicKind.STATUS),
                topic(TopicKind.AVAILABLE),
                Template.of(encode(count)),
                Template.of(encode(status)),
            )
        )
    return cameras


TICK_S = 0.02
"""The fleet writes what fell due in each 20 ms in one go."""
CAMERAS_PER_CONNECTION = 250
"""Cameras sharing one broker connection. Each connection may have only the broker's Receive
Maximum unacknowledged (mosquitto: 20), so one connection for thousands of cameras is capped
at 20 messages per round trip, which a busy broker stretches; real cameras each have their own."""


def run_fleet(config: CrowdwatchConfig, stop: threading.Event) -> int:
    """Publish for every simulated camera until ``stop`` is set; the messages published.

    Raises:
        WireError: the broker refused us or a publish, or the connection broke.
    """
    cameras = fleet_cameras(config)
    mqtt = config.mqtt
    tag = uuid.uuid4().hex[:10]
    wires: list[WirePublisher] = []
    published = 0
    prefixes = [
        (
            WirePublisher.prefix(cam.counts_topic),
            WirePublisher.prefix(cam.status_topic, retain=True),
        )
        for cam in cameras
    ]
    try:
        for j in range(max(1, -(-len(cameras) // CAMERAS_PER_CONNECTION))):
            wires.append(WirePublisher(mqtt.host, mqtt.port, f"bench-fleet-{tag}-{j}"))
        online = AVAILABLE_ONLINE.encode()
        for j, wire in enumerate(wires):
            mine = cameras[j :: len(wires)]
            wire.publish([(WirePublisher.prefix(c.available_topic, True), online) for c in mine])
        interval = config.edge.interval_s
        n = len(cameras)
        start = time.monotonic()
        sent = 0  # camera slots sent since start: slot k is due at start + k * interval / n
        last_ping = start
        while not stop.wait(TICK_S):
            now = time.monotonic()
            due = int((now - start) / interval * n) + 1
            if due - sent > n:
                sent = due - n  # after a stall: one round at most, not a burst of old rounds
            ts = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()
            batches: list[list[tuple[tuple[int, bytes], bytes]]] = [[] for _ in wires]
            for k in range(sent, due):
                i = k % n
                cam, (counts_at, status_at) = cameras[i], prefixes[i]
                batch = batches[i % len(wires)]
                batch.append((counts_at, cam.counts.fill(ts, str(uuid.uuid4()).encode())))
                batch.append((status_at, cam.status.fill(ts, str(uuid.uuid4()).encode())))
            for wire, batch in zip(wires, batches, strict=True):
                wire.publish(batch)
                published += len(batch)
            sent = due
            if now - last_ping > 20:
                for wire in wires:
                    wire.ping()
                last_ping = now
    finally:
        for wire in wires:
            wire.close()
    return published


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m crowdwatch.bench._fleet CONFIG", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    config = load_config(Path(argv[0]))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    published = run_fleet(config, stop)
    logger.warning("fleet stopped after %d messages", published)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
