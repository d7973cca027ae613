"""Edge store-and-forward: the SQLite spool, the forwarder, and a broker outage on real video."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from factories import config_dict, make_config, site_dict
from services import MqttBroker

from crowdwatch.contracts.config import MqttConfig, SpoolConfig
from crowdwatch.contracts.errors import BrokerError, StorageError
from crowdwatch.contracts.messages import AVAILABLE_OFFLINE, TopicKind, camera_topic, decode_counts
from crowdwatch.edge.detector import OnnxYoloDetector
from crowdwatch.edge.service import mqtt_publisher
from crowdwatch.edge.source import open_camera
from crowdwatch.edge.spool import Spool, open_store_and_forward, spool_path
from crowdwatch.edge.worker import CameraWorker, Publish
from crowdwatch.ingest import IngestService
from crowdwatch.mqtt.client import MqttClient
from crowdwatch.storage.migrate import upgrade

OUTAGE_S = 20.0
"""How long the real test keeps the broker away (issue 8 asks 60 s; 20 s keeps CI fast)."""
TIMEOUT_S = 60.0


def payloads(spool: Spool) -> list[bytes]:
    return [m.payload for m in spool.peek(1000)]


def test_the_spool_keeps_order_and_survives_a_reopen(tmp_path: Path) -> None:
    path = spool_path(tmp_path / "spool", "stop-a", "cam1")
    spool = Spool(path, max_messages=10)
    for i in range(3):
        spool.append(f"t/{i}", f"m{i}".encode(), retain=False)
    spool.close()

    reopened = Spool(path, max_messages=10)
    try:
        assert len(reopened) == 3
        first = reopened.peek(10)[0]
        assert (first.topic, first.payload, first.retain) == ("t/0", b"m0", False)
        reopened.remove(first.seq)
        reopened.append("t/3", b"m3", retain=True)
        assert payloads(reopened) == [b"m1", b"m2", b"m3"]
        assert len(reopened) == 3
    finally:
        reopened.close()


@pytest.mark.parametrize(
    ("bound", "appended", "kept", "dropped"),
    [(3, 3, [b"m0", b"m1", b"m2"], 0), (3, 5, [b"m2", b"m3", b"m4"], 2), (1, 2, [b"m1"], 1)],
    ids=["at-bound", "past-bound", "bound-one"],
)
def test_the_spool_drops_the_oldest_only_past_its_bound(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    bound: int,
    appended: int,
    kept: list[bytes],
    dropped: int,
) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_messages=bound)
    try:
        for i in range(appended):
            spool.append("t", f"m{i}".encode(), retain=False)
        assert payloads(spool) == kept and len(spool) == len(kept)
        assert spool.dropped == dropped
    finally:
        spool.close()
    assert ("dropped the oldest" in caplog.text) == bool(dropped)


def test_an_unusable_or_corrupt_spool_is_a_clear_storage_error(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("in the way")
    with pytest.raises(StorageError, match=f"cannot open edge spool {not_a_folder}/"):
        Spool(not_a_folder / "s.sqlite", max_messages=10)
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(b"this is not a database " * 200)
    with pytest.raises(
        StorageError, match=f"cannot use edge spool {corrupt}: file is not a database"
    ):
        Spool(corrupt, max_messages=10)


@dataclass
class Broker:
    """The in-memory broker: takes messages while ``up``, refuses them (BrokerError) while not."""

    up: bool = True
    taken: list[tuple[str, bytes, bool]] = field(default_factory=list)

    def __call__(self, topic: str, payload: bytes, retain: bool) -> None:
        if not self.up:
            raise BrokerError(f"not connected to the MQTT broker, dropped a message on {topic}")
        self.taken.append((topic, payload, retain))


def test_the_forwarder_spools_while_the_broker_is_away_and_replays_in_order(
    tmp_path: Path,
) -> None:
    broker = Broker()
    config = SpoolConfig(path=str(tmp_path / "spool"), max_messages=100)
    forwarder = open_store_and_forward(broker, config, "stop-a", "cam1")
    try:
        forwarder("c", b"1", False)
        broker.up = False
        forwarder("c", b"2", False)
        forwarder("c", b"3", False)
        with pytest.raises(BrokerError):
            forwarder("s", b"status", True)  # retained: only the latest matters, not spooled
        assert forwarder.spool is not None and len(forwarder.spool) == 2
        assert forwarder.health() == "2 messages spooled for the broker"
        broker.up = True
        forwarder("c", b"4", False)
        assert [p for _, p, _ in broker.taken] == [b"1", b"2", b"3", b"4"]
        assert len(forwarder.spool) == 0 and forwarder.health() == ""
    finally:
        forwarder.close()


def test_the_spool_replays_after_a_restart_of_the_edge(tmp_path: Path) -> None:
    config = SpoolConfig(path=str(tmp_path), max_messages=100)
    broker = Broker(up=False)
    first = open_store_and_forward(broker, config, "stop-a", "cam1")
    first("c", b"1", False)
    first.close()  # the edge process stops with the broker still away

    broker.up = True
    second = open_store_and_forward(broker, config, "stop-a", "cam1")
    try:
        second("c", b"2", False)
    finally:
        second.close()
    assert [p for _, p, _ in broker.taken] == [b"1", b"2"]


def test_without_a_usable_spool_counting_goes_on_and_the_status_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    in_the_way = tmp_path / "spool"
    in_the_way.write_text("a file where the folder should be")
    broker = Broker(up=False)
    forwarder = open_store_and_forward(broker, SpoolConfig(path=str(in_the_way)), "s", "c")
    forwarder("c", b"1", False)  # does not raise: the message is counted as lost
    forwarder("c", b"2", False)
    assert forwarder.spool is None and forwarder.lost == 2
    assert forwarder.health().startswith(
        f"2 messages lost; spool error: cannot open edge spool {in_the_way}/"
    )
    assert "counting goes on without it" in caplog.text


@dataclass
class Outbox:
    """Records the id of every count message the worker produced, then hands it on."""

    publish: Publish
    produced: list[str] = field(default_factory=list)

    def __call__(self, topic: str, payload: bytes, retain: bool) -> None:
        if topic.endswith("/counts"):
            self.produced.append(decode_counts(payload).message_id)
        self.publish(topic, payload, retain)


def _wait(condition: object, what: str, timeout_s: float = TIMEOUT_S) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.mark.data
@pytest.mark.e2e
@pytest.mark.faults
def test_a_broker_outage_on_real_video_loses_and_duplicates_no_count(
    shared_dir: Path, mqtt_config: MqttConfig, mqtt_broker: MqttBroker, db_url: str, tmp_path: Path
) -> None:
    site = site_dict("stop-a", source=str(shared_dir / "data" / "pets2009_s2l1" / "vtest.avi"))
    site["cameras"][0].update(loop=True, realtime=True)
    # A plain persistent ingest subscription: mosquitto 2.0 does not restore shared ones over
    # a restart (README, "Broker restarts and shared groups").
    mqtt = mqtt_config.model_copy(update={"shared_group": None})
    config = make_config(
        config_dict(site),
        mqtt=mqtt.model_dump(),
        edge={"interval_s": 1.0, "detect_every": 3, "spool": {"path": str(tmp_path / "spool")}},
    )
    upgrade(db_url, config)
    camera = config.sites[0].cameras[0]
    ingest = IngestService(
        config, db_url, client_id=f"test-spool-{uuid.uuid4().hex[:8]}", batch_interval_s=0.1
    )
    available = camera_topic(mqtt.topic_prefix, "stop-a", "cam1", TopicKind.AVAILABLE)
    client = MqttClient(
        mqtt,
        f"test-spool-edge-{uuid.uuid4().hex[:8]}",
        will=(available, AVAILABLE_OFFLINE.encode()),
    )
    stop = threading.Event()
    ingest.start()
    try:
        client.connect()
        forwarder = open_store_and_forward(
            mqtt_publisher(client), config.edge.spool, "stop-a", "cam1"
        )
        outbox = Outbox(forwarder)
        detector = OnnxYoloDetector(shared_dir / "models" / "yolo11n_coco_640.onnx", threads=1)
        with open_camera(camera) as source:
            worker = CameraWorker(
                "stop-a",
                camera,
                source,
                detector,
                outbox,
                topic_prefix=mqtt.topic_prefix,
                interval_s=config.edge.interval_s,
                detect_every=config.edge.detect_every,
                health=forwarder.health,
            )
            edge = threading.Thread(target=worker.run, args=(stop,), name="test-spool-edge")
            edge.start()
            try:
                _wait(lambda: len(outbox.produced) >= 3, "the first count messages")
                mqtt_broker.stop()
                try:
                    time.sleep(OUTAGE_S)
                    assert edge.is_alive(), "the worker ended while the broker was away"
                    assert forwarder.spool is not None
                    assert len(forwarder.spool) >= OUTAGE_S / 2, "counts were not spooled"
                finally:
                    mqtt_broker.start()
                assert forwarder.spool is not None
                _wait(lambda: forwarder.spool is not None and not len(forwarder.spool), "replay")
                resumed = len(outbox.produced)
                _wait(lambda: len(outbox.produced) >= resumed + 2, "counts after the replay")
            finally:
                stop.set()
                edge.join(TIMEOUT_S)
            assert not edge.is_alive()
        assert forwarder.lost == 0 and forwarder.spool.dropped == 0
        forwarder.close()
        expected = set(outbox.produced)
        assert len(expected) == len(outbox.produced)

        def stored() -> dict[str, int]:
            with psycopg.connect(db_url) as conn:
                rows = conn.execute(
                    "SELECT message_id, count(*) FROM zone_counts GROUP BY 1"
                ).fetchall()
            return {str(m): int(n) for m, n in rows}

        _wait(lambda: expected <= set(stored()), "every produced count in zone_counts")
        assert stored() == dict.fromkeys(expected, 1)  # one zone: one row per message
    finally:
        stop.set()
        client.close()
        ingest.stop()
        mqtt_broker.ensure_running()
