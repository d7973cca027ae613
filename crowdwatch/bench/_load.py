"""Load generation for the ingest benchmark: a synthetic district and publisher processes.

One paho client publishes a few thousand QoS 1 messages a second at best, so the load comes
from several processes (``multiprocessing``, spawned), each owning a slice of the cameras and
counting only what the broker acknowledged (PUBACK).
"""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from crowdwatch.contracts.config import CrowdwatchConfig, MqttConfig, parse_config
from crowdwatch.contracts.messages import (
    CountMessage,
    TopicKind,
    ZoneCount,
    camera_topic,
    encode,
    utc_now,
)

BENCH_SITE_CAMERAS = 10
"""Cameras per synthetic site."""


def bench_district(cameras: int, zones: int, mqtt: MqttConfig, db_url: str) -> CrowdwatchConfig:
    """A district of ``cameras`` simulated cameras with ``zones`` zones each.

    Args:
        cameras: how many cameras.
        zones: zones per camera.
        mqtt: broker and topic prefix.
        db_url: the database.

    Returns:
        The validated config.
    """
    polygon = [[0, 0], [100, 0], [100, 100], [0, 100]]
    sites: list[dict[str, Any]] = []
    for s in range((cameras + BENCH_SITE_CAMERAS - 1) // BENCH_SITE_CAMERAS):
        count = min(BENCH_SITE_CAMERAS, cameras - s * BENCH_SITE_CAMERAS)
        sites.append(
            {
                "id": f"beach-{s:04d}",
                "kind": "beach",
                "name": {"zh": f"海滩{s}", "en": f"Beach {s}"},
                "location": {"lat": 22.5, "lon": 114.5},
                "capacity": 500,
                "department": "culture_tourism",
                "cameras": [
                    {
                        "id": f"cam-{c:02d}",
                        "source": "simulated",
                        "frame_size": [100, 100],
                        "zones": [
                            {
                                "id": f"c{c:02d}-section-{z}",
                                "name": {"zh": f"区{z}", "en": f"Section {z}"},
                                "polygon": polygon,
                                "capacity": 100,
                            }
                            for z in range(zones)
                        ],
                    }
                    for c in range(count)
                ],
            }
        )
    return parse_config(
        {
            "district": {"id": "bench", "name": {"zh": "基准区", "en": "Bench District"}},
            "mqtt": mqtt.model_dump(),
            "database": {"url": db_url},
            "sites": sites,
        },
        origin="bench",
    )


def save_district(raw: dict[str, Any], path: Path, db_url: str, *, origin: str) -> CrowdwatchConfig:
    """Validate ``raw``, bring the schema of ``db_url`` up to date and write ``raw`` to ``path``.

    Args:
        raw: a district as :func:`bench_district` dumps it, with the benchmark's changes.
        path: the YAML file the benchmark's ``crowdwatch`` processes are started with.
        db_url: the scratch database.
        origin: what a validation error names.

    Returns:
        The validated config.
    """
    import yaml

    from crowdwatch.storage.migrate import upgrade

    config = parse_config(raw, origin=origin)
    upgrade(db_url, config)
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return config


@dataclass(frozen=True, slots=True)
class CameraSpec:
    site_id: str
    camera_id: str
    zone_ids: tuple[str, ...]


def camera_specs(config: CrowdwatchConfig) -> list[CameraSpec]:
    return [
        CameraSpec(site.id, cam.id, tuple(z.id for z in cam.zones))
        for site, cam in config.cameras()
    ]


def count_for(spec: CameraSpec, seq: int, age_s: float = 0.0) -> CountMessage:
    """A realistic message: every zone of the camera, for one 1 s interval."""
    return CountMessage(
        site_id=spec.site_id,
        camera_id=spec.camera_id,
        ts=utc_now() - timedelta(seconds=age_s),
        interval_s=1.0,
        frames=10,
        zones=[
            ZoneCount(zone_id=z, count=(seq + i) % 40, count_max=(seq + i) % 40 + 2, count_mean=7.5)
            for i, z in enumerate(spec.zone_ids)
        ],
    )


def crowded_count(spec: CameraSpec, people: int) -> CountMessage:
    """An alert probe: ``people`` in the first zone of the camera, now."""
    zone = spec.zone_ids[0]
    return CountMessage(
        site_id=spec.site_id,
        camera_id=spec.camera_id,
        ts=utc_now(),
        interval_s=1.0,
        frames=10,
        zones=[ZoneCount(zone_id=zone, count=people, count_max=people, count_mean=people)],
    )


@dataclass(frozen=True, slots=True)
class PublisherJob:
    host: str
    port: int
    prefix: str
    cameras: list[CameraSpec]
    seconds: float
    """Paced mode: one message per camera per second for this long.  0: burst mode."""
    burst: list[tuple[str, bytes, str]]
    """Burst mode: (topic, payload, message id) to publish as fast as the broker acknowledges."""
    ids_path: Path
    """Where to write the acknowledged message ids, one a line."""


_Send = Callable[[str, bytes, str], None]


class _Acks:
    """Which message ids the broker acknowledged.

    The PUBACK may come back before ``publish`` has returned the mid to us, so an early ack
    is parked in ``early``.  Never hold our lock while calling paho (paho holds its own lock
    while it calls ``on_publish``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.pending: dict[int, str] = {}
        self.early: dict[int, bool] = {}
        self.accepted: list[str] = []
        self.refused = 0

    def sent(self, mid: int, message_id: str) -> None:
        with self._lock:
            ok = self.early.pop(mid, None)
            if ok is None:
                self.pending[mid] = message_id
            elif ok:
                self.accepted.append(message_id)
            else:
                self.refused += 1

    def waiting(self) -> int:
        with self._lock:
            return len(self.pending)

    def on_publish(
        self, client: paho.Client, userdata: Any, mid: int, reason: Any, props: Any
    ) -> None:
        ok = not getattr(reason, "is_failure", False)
        with self._lock:
            message_id = self.pending.pop(mid, None)
            if message_id is None:
                self.early[mid] = ok
            elif ok:
                self.accepted.append(message_id)
            else:
                self.refused += 1


def publisher_main(job: PublisherJob) -> None:
    """Body of one publisher process (module level, so ``spawn`` can import it)."""
    acks = _Acks()
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"bench-pub-{uuid.uuid4().hex[:10]}",
        protocol=paho.MQTTv5,
    )
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.on_publish = acks.on_publish
    client.connect(job.host, job.port, keepalive=30)
    client.loop_start()

    def send(topic: str, payload: bytes, message_id: str) -> None:
        acks.sent(client.publish(topic, payload, qos=1).mid, message_id)

    try:
        if job.seconds <= 0:
            for topic, payload, message_id in job.burst:
                send(topic, payload, message_id)
        else:
            _paced(job, send)
        deadline = time.monotonic() + 30.0
        while acks.waiting() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        client.disconnect()
        client.loop_stop()
        job.ids_path.write_text("".join(f"{i}\n" for i in acks.accepted), encoding="utf-8")


def _paced(job: PublisherJob, send: _Send) -> None:
    # Spread the cameras evenly over each second, as independent edge boxes would be.
    n = len(job.cameras)
    start = time.monotonic()
    end = start + job.seconds
    seq = 0
    while True:
        for i, spec in enumerate(job.cameras):
            due = start + seq + i / n
            if due >= end:
                return
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            message = count_for(spec, seq)
            topic = camera_topic(job.prefix, spec.site_id, spec.camera_id, TopicKind.COUNTS)
            send(topic, encode(message), message.message_id)
        seq += 1


def run_publishers(jobs: list[PublisherJob]) -> list[str]:
    """Run one process per job and wait for all.

    Returns:
        Every acknowledged message id.

    Raises:
        RuntimeError: a publisher process failed.
    """
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=publisher_main, args=(job,), name="bench-publisher") for job in jobs
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    failed = [p.exitcode for p in procs if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"publisher processes failed with exit codes {failed}")
    ids: list[str] = []
    for job in jobs:
        ids.extend(job.ids_path.read_text(encoding="utf-8").split())
    return ids
