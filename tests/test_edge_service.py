"""run_edge: camera selection, start-up failures, and a real run against the test mosquitto."""

from __future__ import annotations

import queue
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from factories import config_dict, make_config, site_dict
from services import MqttBroker

from crowdwatch.contracts.config import CrowdwatchConfig, MqttConfig
from crowdwatch.contracts.errors import ConfigError, ModelError, SourceError
from crowdwatch.contracts.messages import (
    CameraState,
    TopicKind,
    camera_topic,
    decode_counts,
    decode_status,
)
from crowdwatch.edge.service import run_edge, select_cameras
from crowdwatch.mqtt.client import MqttClient

TIMEOUT_S = 60.0


def district(video: str, *, loop: bool = False, **overrides: object) -> CrowdwatchConfig:
    """Two sites: stop-a with a real camera, stop-b simulated."""
    real = site_dict("stop-a", source=video)
    real["cameras"][0]["loop"] = loop
    return make_config(config_dict(real, site_dict("stop-b")), **overrides)


@pytest.mark.parametrize(
    ("keys", "expected", "error"),
    [
        (None, ["stop-a/cam1"], None),
        (["stop-a/cam1"], ["stop-a/cam1"], None),
        (["stop-a/cam9"], None, "unknown camera 'stop-a/cam9'.*real cameras: stop-a/cam1"),
        (["cam1"], None, "unknown camera 'cam1'"),
        (["stop-b/cam1"], None, "camera 'stop-b/cam1' has source 'simulated'"),
        ([], None, "the list of camera keys is empty"),
    ],
    ids=["all-real", "one-key", "unknown-camera", "not-a-key", "simulated", "empty"],
)
def test_select_cameras(
    keys: list[str] | None, expected: list[str] | None, error: str | None
) -> None:
    config = district("/video/walkway.avi")
    if error is not None:
        with pytest.raises(ConfigError, match=error):
            select_cameras(config, keys)
        return
    assert [f"{s.id}/{c.id}" for s, c in select_cameras(config, keys)] == expected


def test_a_config_of_simulated_cameras_has_nothing_to_run() -> None:
    with pytest.raises(ConfigError, match="every camera in the config has source 'simulated'"):
        select_cameras(make_config(), None)


def test_unknown_key_fails_before_anything_starts() -> None:
    with pytest.raises(ConfigError, match="stop-z/cam1"):
        run_edge(district("/video/walkway.avi"), ["stop-z/cam1"], threading.Event())


def test_missing_video_file_fails_at_start(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-walkway.avi"
    with pytest.raises(SourceError, match=f"video file not found: {missing}"):
        run_edge(district(str(missing)), None, threading.Event())


@pytest.mark.data
def test_a_missing_crowd_counter_fails_at_start(shared_dir: Path, tmp_path: Path) -> None:
    video = shared_dir / "data" / "pets2009_s2l1" / "vtest.avi"
    real = site_dict("stop-a", source=str(video))
    real["cameras"][0]["zones"][0]["mode"] = "auto"
    missing = tmp_path / "crowd_counter.onnx"
    config = make_config(config_dict(real), edge={"dense": {"model": str(missing)}})
    # Checked with the detector, before any broker is contacted.
    with pytest.raises(ModelError, match=f"{missing}: crowd-counter model not found"):
        run_edge(config, None, threading.Event())


@pytest.mark.data
def test_a_cameras_own_crowd_counter_is_the_one_loaded(shared_dir: Path, tmp_path: Path) -> None:
    # The shipped counter (edge.dense.model's default) exists; the camera names its adapted one.
    video = shared_dir / "data" / "pets2009_s2l1" / "vtest.avi"
    real = site_dict("stop-a", source=str(video))
    real["cameras"][0]["zones"][0]["mode"] = "dense"
    own = tmp_path / "cameras" / "stop-a" / "cam1" / "crowd_counter.onnx"
    real["cameras"][0]["dense_model"] = str(own)
    config = make_config(config_dict(real))
    with pytest.raises(ModelError, match=f"{own}: crowd-counter model not found"):
        run_edge(config, None, threading.Event())


@pytest.mark.data
def test_run_edge_publishes_counts_over_mqtt(
    shared_dir: Path, mqtt_config: MqttConfig, mqtt_broker: MqttBroker
) -> None:
    video = shared_dir / "data" / "pets2009_s2l1" / "vtest.avi"
    config = district(str(video), mqtt=mqtt_config.model_dump(), edge={"interval_s": 1.0})
    prefix = mqtt_config.topic_prefix
    received: queue.Queue[tuple[str, bytes]] = queue.Queue()
    subscriber = MqttClient(mqtt_config, client_id=f"{prefix}-watcher")
    subscriber.subscribe(f"{prefix}/#", lambda topic, payload: received.put((topic, payload)))
    subscriber.connect()
    stop = threading.Event()
    edge = threading.Thread(target=run_edge, args=(config, None, stop), name="run_edge")
    try:
        edge.start()
        seen: dict[str, list[bytes]] = {}
        counts_topic = camera_topic(prefix, "stop-a", "cam1", TopicKind.COUNTS)
        status_topic = camera_topic(prefix, "stop-a", "cam1", TopicKind.STATUS)
        while counts_topic not in seen or status_topic not in seen:
            topic, payload = received.get(timeout=TIMEOUT_S)
            seen.setdefault(topic, []).append(payload)
        stop.set()
        edge.join(TIMEOUT_S)
        assert not edge.is_alive()
    finally:
        stop.set()
        edge.join(TIMEOUT_S)
        subscriber.close()

    message = decode_counts(seen[counts_topic][0])
    assert [z.zone_id for z in message.zones] == ["platform"]
    assert message.zones[0].count_max > 0 and message.frames == 10
    available = camera_topic(prefix, "stop-a", "cam1", TopicKind.AVAILABLE)
    assert seen[available][0] == b"online"
    status = decode_status(seen[status_topic][0])
    assert status.state is CameraState.ONLINE and status.inference_ms > 0

    # After the stop the retained state says offline, for any client that looks later.
    late: queue.Queue[bytes] = queue.Queue()
    looker = MqttClient(mqtt_config, client_id=f"{prefix}-late")
    looker.subscribe(available, lambda topic, payload: late.put(payload))
    looker.connect()
    try:
        assert late.get(timeout=TIMEOUT_S) == b"offline"
    finally:
        looker.close()


@pytest.mark.data
def test_counting_survives_a_broker_restart(
    shared_dir: Path,
    mqtt_config: MqttConfig,
    mqtt_broker: MqttBroker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The broker goes away mid-run: publishes fail and are logged, counts resume after it."""
    video = shared_dir / "data" / "pets2009_s2l1" / "vtest.avi"
    config = district(
        str(video),
        loop=True,
        mqtt=mqtt_config.model_dump(),
        edge={"interval_s": 1.0, "detect_every": 5},
    )
    prefix = mqtt_config.topic_prefix
    counts_topic = camera_topic(prefix, "stop-a", "cam1", TopicKind.COUNTS)
    counts: queue.Queue[bytes] = queue.Queue()
    subscriber = MqttClient(mqtt_config, client_id=f"{prefix}-watcher")
    subscriber.subscribe(counts_topic, lambda topic, payload: counts.put(payload))
    subscriber.connect()
    stop = threading.Event()
    edge = threading.Thread(target=run_edge, args=(config, None, stop), name="run_edge")
    try:
        edge.start()
        counts.get(timeout=TIMEOUT_S)
        mqtt_broker.stop()
        deadline = time.monotonic() + TIMEOUT_S
        while "could not publish" not in caplog.text:
            assert time.monotonic() < deadline, "no publish failed while the broker was away"
            assert edge.is_alive(), "run_edge ended while the broker was away"
            time.sleep(0.1)
        mqtt_broker.start()
        restarted = datetime.now(UTC)
        after = decode_counts(counts.get(timeout=TIMEOUT_S))
        while after.ts < restarted:  # skip what was delivered before the outage
            after = decode_counts(counts.get(timeout=TIMEOUT_S))
        assert after.frames > 0 and edge.is_alive()
    finally:
        stop.set()
        edge.join(TIMEOUT_S)
        subscriber.close()
        mqtt_broker.ensure_running()
    assert not edge.is_alive()
