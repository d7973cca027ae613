"""A fleet of simulated cameras in one process, cheap enough not to eat the machine it loads.

``crowdwatch simulate`` builds every message from its curves through pydantic (a model, its
validation, its JSON) and publishes with a wait for each PUBACK: about 0.17 ms of CPU per
message, so at a few thousand cameras the simulators take the cores the bench measures. Here
each camera's count and status payloads are encoded once, with the same contract
(:func:`crowdwatch.contracts.messages.encode`), and cut around their ``ts`` and
``message_id``; each message is those cuts joined with a fresh timestamp and id, published at
QoS 1 without waiting (paho keeps up to 1000 in flight). The counts stay at the camera's
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

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

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


def run_fleet(config: CrowdwatchConfig, stop: threading.Event) -> int:
    """Publish for every simulated camera until ``stop`` is set; the messages published."""
    cameras = fleet_cameras(config)
    mqtt = config.mqtt
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"bench-fleet-{uuid.uuid4().hex[:10]}",
        protocol=paho.MQTTv5,
    )
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(mqtt.host, mqtt.port, keepalive=mqtt.keepalive_s)
    client.loop_start()
    published = 0
    try:
        for cam in cameras:
            client.publish(cam.available_topic, AVAILABLE_ONLINE.encode(), qos=1, retain=True)
        interval = config.edge.interval_s
        step = interval / max(1, len(cameras))
        due = time.monotonic()
        while not stop.is_set():
            for cam in cameras:
                delay = due - time.monotonic()
                if delay > 0 and stop.wait(delay):
                    return published
                # One clock read and id per message: the rest of the payload is ready.
                ts = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()
                client.publish(
                    cam.counts_topic, cam.counts.fill(ts, str(uuid.uuid4()).encode()), qos=1
                )
                client.publish(
                    cam.status_topic,
                    cam.status.fill(ts, str(uuid.uuid4()).encode()),
                    qos=1,
                    retain=True,
                )
                published += 2
                # Pace by deadline; after a stall skip ahead rather than publish a burst.
                due = max(due + step, time.monotonic() - interval)
    finally:
        client.disconnect()
        client.loop_stop()
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
