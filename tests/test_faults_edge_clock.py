"""Edge boxes whose clocks are minutes off, counting real video into the real broker and ingest.

Three cameras of one site, each worker with its own wall clock (``CameraWorker(clock=...)``):

=====  ==============  ===================================================================
cam1   7 min ahead     beyond the ingest's 5 min: every message in ``dead_letters``, the
                       reason naming clock skew; no count silently dropped
cam2   2 min ahead     accepted, dated 2 min ahead; skew -120 s reported and warned about
cam3   4 min behind    accepted, dated 4 min back; skew +240 s reported and warned about
=====  ==============  ===================================================================

The skew is read where operators read it: the ingest's Prometheus ``/metrics`` endpoint
(``crowdwatch_ingest_clock_skew_seconds{site,camera}``) and its log.  The first tests check
the skew figure itself on hand-made receive times (no services).
"""

from __future__ import annotations

import copy
import logging
import re
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from factories import config_dict, make_config, site_dict
from prometheus_client.parser import text_string_to_metric_families
from services.waiting import wait_until

from crowdwatch.contracts.config import CrowdwatchConfig, MqttConfig
from crowdwatch.contracts.messages import decode_counts, decode_status, utc_now
from crowdwatch.edge.detector import OnnxYoloDetector
from crowdwatch.edge.service import mqtt_publisher
from crowdwatch.edge.source import open_camera
from crowdwatch.edge.worker import CameraWorker, Publish
from crowdwatch.ingest import IngestService
from crowdwatch.ingest.clock import ClockSkew
from crowdwatch.ingest.metrics import IngestMetrics, prometheus_text
from crowdwatch.mqtt.client import MqttClient
from crowdwatch.storage.migrate import upgrade

OFFSETS = {
    "cam1": timedelta(minutes=7),
    "cam2": timedelta(minutes=2),
    "cam3": -timedelta(minutes=4),
}
"""Each camera's edge clock minus the true time."""
SKEW_WINDOW_S = 3.0
"""The ingest's skew window here (60 s in service): how long a camera is behind before the
warning."""
MESSAGES = 6
"""Count messages per camera (one a second) before the check."""
DELAY_S = 3.0
"""Transport delay allowed on top of the clock offset (a loaded test machine)."""
TIMEOUT_S = 60.0


T0 = datetime(2026, 10, 1, 2, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def clock_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "crowdwatch.ingest.clock" and r.levelname == "WARNING"
    ]


def test_a_backlog_is_not_a_slow_clock_but_a_clock_behind_is_warned_about_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="crowdwatch.ingest.clock")
    skew = ClockSkew(window_s=60.0)
    # Ten minutes of spooled counts arrive at once, then fresh ones: the figure is the
    # freshest lateness, and nothing is logged.
    for i in range(50):
        skew.observe("stop-a", "cam1", at(-600 + 12 * i), at(0.001 * i))
    for i in range(1, 90):
        skew.observe("stop-a", "cam1", at(i), at(i + 0.2))
    assert skew.skews() == {("stop-a", "cam1"): pytest.approx(0.2)}
    assert clock_warnings(caplog) == []
    # The clock falls 4 min behind: in the figure once the good samples left the window,
    # warned about when it stayed so for another window.
    for i in range(90, 230):
        figure = skew.observe("stop-a", "cam1", at(i - 240), at(i + 0.2))
        assert figure == pytest.approx(0.2 if i < 150 else 240.2)
        assert bool(clock_warnings(caplog)) is (i >= 210)
    [warning] = clock_warnings(caplog)
    assert warning.startswith("camera stop-a/cam1: clock skew: its messages arrive 240 s after")
    # Fixed (NTP): the figure follows at once (the smallest lateness), and the log says so.
    for i in range(230, 240):
        skew.observe("stop-a", "cam1", at(i), at(i + 0.1))
    assert skew.skews()[("stop-a", "cam1")] == pytest.approx(0.1)
    assert "camera stop-a/cam1: clock skew back to 0.1 s" in caplog.messages


def test_a_clock_ahead_is_warned_about_at_once_and_the_figure_is_exported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    skew = ClockSkew(max_future_s=300.0)
    for i in range(10):
        skew.observe("stop-a", "cam1", at(i + 420), at(i + 0.3))
        skew.observe("stop-a", "cam2", at(i + 90), at(i + 0.3))
    assert skew.skews() == {
        ("stop-a", "cam1"): pytest.approx(-419.7),
        ("stop-a", "cam2"): pytest.approx(-89.7),
    }
    cam1, cam2 = clock_warnings(caplog)
    assert cam1.startswith("camera stop-a/cam1: clock skew: its clock is 420 s ahead")
    assert "its messages go to dead_letters (more than 300 s ahead)" in cam1
    assert cam2.startswith("camera stop-a/cam2: clock skew: its clock is 90 s ahead")
    assert "its counts are dated in the future (refused beyond 300 s)" in cam2
    text = prometheus_text(IngestMetrics().snapshot(clock_skew=skew.skews()), "w1")
    (family,) = [
        f
        for f in text_string_to_metric_families(text)
        if f.name == "crowdwatch_ingest_clock_skew_seconds"
    ]
    assert family.type == "gauge"
    assert {(s.labels["site"], s.labels["camera"], s.labels["worker"]) for s in family.samples} == {
        ("stop-a", "cam1", "w1"),
        ("stop-a", "cam2", "w1"),
    }
    cam1_skew = next(s.value for s in family.samples if s.labels["camera"] == "cam1")
    assert cam1_skew == pytest.approx(-419.7)


@dataclass
class Produced:
    """Every count message id a worker produced, then handed on to the broker."""

    publish: Publish
    ids: list[str] = field(default_factory=list)

    def __call__(self, topic: str, payload: bytes, retain: bool) -> None:
        if topic.endswith("/counts"):
            self.ids.append(decode_counts(payload).message_id)
        self.publish(topic, payload, retain)


def skewed_clock(offset: timedelta) -> Callable[[], datetime]:
    return lambda: utc_now() + offset


def district(video: Path, mqtt: MqttConfig) -> CrowdwatchConfig:
    site = site_dict("stop-a", source=str(video))
    template = site["cameras"][0]
    template.update(loop=True, realtime=True)
    cameras = []
    for n, camera_id in enumerate(OFFSETS, start=1):
        camera = copy.deepcopy(template)
        camera["id"] = camera_id
        camera["zones"][0]["id"] = f"platform-{n}"
        cameras.append(camera)
    site["cameras"] = cameras
    return make_config(
        config_dict(site), mqtt=mqtt.model_dump(), edge={"interval_s": 1.0, "detect_every": 5}
    )


def skews(port: int) -> dict[str, float]:
    """camera -> crowdwatch_ingest_clock_skew_seconds, from the live /metrics endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    # Read with Prometheus' own parser: the label order of an exposition is not part of it.
    return {
        sample.labels["camera"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "crowdwatch_ingest_clock_skew_seconds"
        for sample in family.samples
    }


@pytest.fixture
def ingest(db_url: str, mqtt_config: MqttConfig, shared_dir: Path) -> Iterator[IngestService]:
    config = district(shared_dir / "data" / "pets2009_s2l1" / "vtest.avi", mqtt_config)
    upgrade(db_url, config)
    service = IngestService(
        config,
        db_url,
        client_id=f"test-clock-{uuid.uuid4().hex[:8]}",
        batch_interval_s=0.1,
        metrics_port=0,
        skew_window_s=SKEW_WINDOW_S,
    )
    service.start()
    try:
        yield service
    finally:
        service.stop()


@pytest.mark.data
@pytest.mark.e2e
@pytest.mark.faults
def test_edge_clocks_minutes_off_are_refused_or_accepted_and_always_reported(
    ingest: IngestService,
    db_url: str,
    mqtt_config: MqttConfig,
    shared_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = district(shared_dir / "data" / "pets2009_s2l1" / "vtest.avi", mqtt_config)
    model = shared_dir / "models" / "yolo11n_coco_640.onnx"
    produced: dict[str, Produced] = {}
    stop = threading.Event()
    threads: list[threading.Thread] = []
    with ExitStack() as stack:
        for camera in config.sites[0].cameras:
            client = MqttClient(config.mqtt, f"test-clock-{camera.id}-{uuid.uuid4().hex[:6]}")
            client.connect()
            stack.callback(client.close)
            produced[camera.id] = Produced(mqtt_publisher(client))
            source = stack.enter_context(open_camera(camera))
            worker = CameraWorker(
                "stop-a",
                camera,
                source,
                OnnxYoloDetector(model, threads=1),
                produced[camera.id],
                topic_prefix=config.mqtt.topic_prefix,
                interval_s=config.edge.interval_s,
                detect_every=config.edge.detect_every,
                clock=skewed_clock(OFFSETS[camera.id]),
            )
            threads.append(threading.Thread(target=worker.run, args=(stop,), name=camera.id))
        for thread in threads:
            thread.start()
        try:
            deadline = time.monotonic() + TIMEOUT_S
            while min(len(p.ids) for p in produced.values()) < MESSAGES:
                assert time.monotonic() < deadline, "the workers did not count"
                assert all(t.is_alive() for t in threads), "a worker ended"
                time.sleep(0.2)
        finally:
            stop.set()
            for thread in threads:
                thread.join(TIMEOUT_S)
    assert not any(t.is_alive() for t in threads)

    # The broker acknowledged every publish; its delivery to the ingest may still be under way.
    accepted = {m for camera_id in ("cam2", "cam3") for m in produced[camera_id].ids}

    def all_arrived() -> bool:
        # By message id, not by number: a dead letter written twice (a redelivery) must not
        # stand in for one still on its way.
        assert ingest.flush()
        with psycopg.connect(db_url) as conn:
            written = {str(r[0]) for r in conn.execute("SELECT message_id FROM zone_counts")}
            letters = conn.execute("SELECT topic, payload FROM dead_letters").fetchall()
        dead = {
            (decode_counts(p) if t.endswith("/counts") else decode_status(p)).message_id
            for t, p in letters
        }
        return accepted <= written and set(produced["cam1"].ids) <= dead

    wait_until(all_arrived, timeout_s=15.0)

    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT camera_id, message_id, count(*), min(received_at - ts) FROM zone_counts "
            "GROUP BY 1, 2"
        ).fetchall()
        letters = conn.execute("SELECT topic, payload, reason FROM dead_letters").fetchall()
    stored = {str(m): (str(c), int(n), lag) for c, m, n, lag in rows}

    # cam1, 7 min ahead: nothing written, every message kept as a dead letter saying why.
    assert all(topic.split("/")[-2] == "cam1" for topic, _, _ in letters)
    refused = {
        (decode_counts(p) if t.endswith("/counts") else decode_status(p)).message_id: r
        for t, p, r in letters
    }
    assert set(produced["cam1"].ids) <= set(refused)
    for reason in refused.values():
        assert reason.startswith("clock skew: ts ") and " ahead of the receive time " in reason
        assert "camera stop-a/cam1's edge box is wrong" in reason
    assert not set(produced["cam1"].ids) & set(stored)

    # cam2 and cam3: every count written once, dated by their clocks.
    for camera_id in ("cam2", "cam3"):
        ids = produced[camera_id].ids
        assert {m: stored[m][:2] for m in ids if m in stored} == dict.fromkeys(ids, (camera_id, 1))
        offset = OFFSETS[camera_id]
        for message_id in ids:
            lag = stored[message_id][2]
            assert -offset <= lag < -offset + timedelta(seconds=DELAY_S), (camera_id, lag)

    # The figure: receive time minus ts, i.e. minus the offset, plus a little transport delay.
    assert ingest.metrics_port is not None
    figures = skews(ingest.metrics_port)
    assert set(figures) == set(OFFSETS)
    for camera_id, offset in OFFSETS.items():
        assert -offset.total_seconds() <= figures[camera_id] < -offset.total_seconds() + DELAY_S

    warnings = clock_warnings(caplog)
    assert len(warnings) == 3, warnings
    cam1, cam2, cam3 = (
        next(w for w in warnings if w.startswith(f"camera stop-a/{c}: clock skew:"))
        for c in OFFSETS
    )
    assert "dead_letters" in cam1 and "dated in the future" in cam2 and "behind" in cam3
    for camera_id, warning in zip(OFFSETS, (cam1, cam2, cam3), strict=True):
        found = re.search(r"its clock is (\d+) s ahead|messages arrive (\d+) s after", warning)
        assert found is not None, warning
        said = float(found.group(1) or found.group(2))
        expected = abs(OFFSETS[camera_id].total_seconds())
        assert expected - DELAY_S <= said <= expected + DELAY_S, warning
