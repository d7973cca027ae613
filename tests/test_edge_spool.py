"""Edge store-and-forward: the SQLite spool, the forwarder, a broker outage and a full disk.

A full disk is simulated with SQLite's own limit, ``PRAGMA max_page_count`` set to the file's
current size: SQLite then fails a write that needs a new page with ``SQLITE_FULL``
("database or disk is full"), the error it gives when the disk has no space left.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from factories import config_dict, make_config, site_dict
from services import MqttBroker

from crowdwatch.contracts.config import CrowdwatchConfig, MqttConfig, SpoolConfig
from crowdwatch.contracts.errors import BrokerError, StorageError
from crowdwatch.contracts.messages import AVAILABLE_OFFLINE, TopicKind, camera_topic, decode_counts
from crowdwatch.edge.detector import OnnxYoloDetector
from crowdwatch.edge.service import mqtt_publisher
from crowdwatch.edge.source import open_camera
from crowdwatch.edge.spool import (
    QUIET_AFTER_SLOW_S,
    Spool,
    SpoolFullError,
    StoreAndForward,
    open_store_and_forward,
    spool_path,
)
from crowdwatch.edge.worker import CameraWorker, Publish
from crowdwatch.ingest import IngestService
from crowdwatch.mqtt.client import MqttClient
from crowdwatch.storage.migrate import upgrade

OUTAGE_S = 60.0
"""How long the real outage test keeps the broker away (issue 8's minute)."""
TIMEOUT_S = 60.0
NO_PAGE_LIMIT = 1_073_741_823
"""SQLite's default ``max_page_count``."""


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


class DeadLink:
    """A broker behind a link that died unnoticed: each publish waits out its PUBACK timeout."""

    def __init__(self) -> None:
        self.now = 0.0
        self.dead = True
        self.tries = 0
        self.taken: list[bytes] = []

    def clock(self) -> float:
        return self.now

    def __call__(self, topic: str, payload: bytes, retain: bool) -> None:
        self.tries += 1
        if self.dead:
            self.now += 5.0  # the client's wait for a PUBACK that never comes
            raise BrokerError(f"no PUBACK in 5 s for a message on {topic}")
        self.taken.append(payload)


def test_a_dead_link_costs_one_timeout_not_one_per_count(tmp_path: Path) -> None:
    link = DeadLink()
    spool = Spool(tmp_path / "spool.sqlite", 100)
    forwarder = StoreAndForward(link, spool, clock=link.clock)
    try:
        for i in range(10):  # a count a second for 10 s of counting time
            forwarder("c", str(i).encode(), False)
            link.now += 1.0
        # One publish waited out its timeout; the other counts went to the spool at once.
        assert link.tries == 1 and len(spool) == 10
        assert link.now == pytest.approx(15.0)
        # The interval's retained status is not spooled, nor tried while the link is quiet.
        with pytest.raises(BrokerError, match="not sent"):
            forwarder("s", b"status", True)
        assert link.tries == 1
        link.dead = False  # the client reconnects; the quiet time runs out
        link.now += QUIET_AFTER_SLOW_S
        forwarder("c", b"10", False)
        assert link.taken == [str(i).encode() for i in range(11)] and len(spool) == 0
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


def fill_up(spool: Spool) -> None:
    """The disk under the spool is full from now on (no page beyond the file's size)."""
    conn = spool._conn  # the pragma holds per connection: the spool's own
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    conn.execute(f"PRAGMA max_page_count = {pages}")


def make_room(spool: Spool) -> None:
    """Space on the disk again."""
    spool._conn.execute(f"PRAGMA max_page_count = {NO_PAGE_LIMIT}")


BIG = 5000
"""A payload this long needs new (overflow) pages: on a full spool its append always fails."""


def big(n: int) -> bytes:
    return str(n).encode().ljust(BIG, b".")


def test_a_full_disk_is_a_spool_full_error_naming_the_file_and_changes_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.sqlite"
    spool = Spool(path, max_messages=100)
    try:
        spool.append("t", big(0), retain=False)
        fill_up(spool)
        with pytest.raises(SpoolFullError, match=f"edge spool {path} is full .*disk is full"):
            spool.append("t", big(1), retain=False)
        assert len(spool) == 1 and payloads(spool) == [big(0)]
        make_room(spool)
        spool.append("t", big(2), retain=False)
        assert payloads(spool) == [big(0), big(2)] and len(spool) == 2
    finally:
        spool.close()


def test_a_full_spool_costs_counted_messages_with_one_warning_then_spools_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker = Broker(up=False)
    config = SpoolConfig(path=str(tmp_path), max_messages=100)
    forwarder = open_store_and_forward(broker, config, "stop-a", "cam1")
    assert forwarder.spool is not None
    path = forwarder.spool.path
    try:
        forwarder("c", big(0), False)
        fill_up(forwarder.spool)
        for i in range(1, 6):
            forwarder("c", big(i), False)  # never raises: counting goes on
        assert forwarder.lost == 5 and len(forwarder.spool) == 1
        assert forwarder.health().startswith(
            f"1 messages spooled for the broker; 5 messages lost; spool error: edge spool {path} "
            "is full"
        )
        make_room(forwarder.spool)
        forwarder("c", big(6), False)
        assert len(forwarder.spool) == 2
        broker.up = True
        forwarder("c", big(7), False)
    finally:
        forwarder.close()
    assert [p for _, p, _ in broker.taken] == [big(0), big(6), big(7)]
    assert forwarder.lost == 5 and forwarder.health() == "5 messages lost"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    full = [w for w in warnings if "is full" in w]
    assert len(full) == 1, "one warning when it fills, not one per message"
    assert str(path) in full[0] and "lost (and counted) until space returns" in full[0]
    assert (
        f"edge spool {path} takes messages again: 5 count messages were lost while it was full"
        in warnings
    )


def test_a_spool_that_cannot_be_trimmed_does_not_cost_messages_the_broker_takes(
    tmp_path: Path,
) -> None:
    broker = Broker(up=False)
    forwarder = open_store_and_forward(broker, SpoolConfig(path=str(tmp_path)), "stop-a", "cam1")
    assert forwarder.spool is not None
    try:
        forwarder("c", b"0", False)
        forwarder("c", b"1", False)
        forwarder.spool._conn.execute("PRAGMA query_only = ON")  # no write goes through
        broker.up = True
        forwarder("c", b"2", False)  # 0 sent but cannot be removed: 2 goes out directly
        forwarder("c", b"3", False)
        forwarder.spool._conn.execute("PRAGMA query_only = OFF")
        forwarder("c", b"4", False)
    finally:
        forwarder.close()
    # 0 went twice (its removal failed once): ingest writes a message id once.
    assert [p for _, p, _ in broker.taken] == [b"0", b"2", b"0", b"3", b"0", b"1", b"4"]
    assert forwarder.lost == 0 and len(forwarder.spool) == 0


@dataclass
class Outbox:
    """Records the id of every count message the worker produced, then hands it on.

    ``before_next``: run once in the worker's thread before the next message is handed on
    (the spool's connection is the worker's).
    """

    publish: Publish
    produced: list[str] = field(default_factory=list)
    before_next: Callable[[], None] | None = None

    def __call__(self, topic: str, payload: bytes, retain: bool) -> None:
        if topic.endswith("/counts"):
            self.produced.append(decode_counts(payload).message_id)
        action, self.before_next = self.before_next, None
        if action is not None:
            action()
        self.publish(topic, payload, retain)


def _wait(condition: object, what: str, timeout_s: float = TIMEOUT_S) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@dataclass
class EdgeRun:
    """A camera worker on real video, publishing through its spool to the real broker."""

    config: CrowdwatchConfig
    forwarder: StoreAndForward
    outbox: Outbox
    thread: threading.Thread

    @property
    def spool(self) -> Spool:
        assert self.forwarder.spool is not None
        return self.forwarder.spool

    def stored(self, db_url: str) -> dict[str, int]:
        """message id -> rows in zone_counts (one zone: one row per message)."""
        with psycopg.connect(db_url) as conn:
            rows = conn.execute(
                "SELECT message_id, count(*) FROM zone_counts GROUP BY 1"
            ).fetchall()
        return {str(m): int(n) for m, n in rows}


@contextmanager
def edge_on_real_video(
    shared_dir: Path, mqtt_config: MqttConfig, mqtt_broker: MqttBroker, db_url: str, tmp_path: Path
) -> Iterator[EdgeRun]:
    """Ingest, and a worker counting the PETS walkway (looped, real time) into the spool.

    Yields once the first count messages are out; stops the worker on exit (it must end).
    """
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
        try:
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
                    yield EdgeRun(config, forwarder, outbox, edge)
                finally:
                    stop.set()
                    edge.join(TIMEOUT_S)
                assert not edge.is_alive()
        finally:
            forwarder.close()
    finally:
        stop.set()
        client.close()
        ingest.stop()
        mqtt_broker.ensure_running()


def _replay_and_resume(run: EdgeRun) -> None:
    """The broker is back: wait for the replay and for counts after it."""
    _wait(lambda: not len(run.spool), "replay")
    resumed = len(run.outbox.produced)
    _wait(lambda: len(run.outbox.produced) >= resumed + 2, "counts after the replay")


@pytest.mark.data
@pytest.mark.e2e
@pytest.mark.faults
def test_a_broker_outage_on_real_video_loses_and_duplicates_no_count(
    shared_dir: Path, mqtt_config: MqttConfig, mqtt_broker: MqttBroker, db_url: str, tmp_path: Path
) -> None:
    with edge_on_real_video(shared_dir, mqtt_config, mqtt_broker, db_url, tmp_path) as run:
        mqtt_broker.stop()
        try:
            time.sleep(OUTAGE_S)
            assert run.thread.is_alive(), "the worker ended while the broker was away"
            assert len(run.spool) >= OUTAGE_S / 2, "counts were not spooled"
        finally:
            mqtt_broker.start()
        _replay_and_resume(run)
    assert run.forwarder.lost == 0 and run.spool.dropped == 0
    expected = set(run.outbox.produced)
    assert len(expected) == len(run.outbox.produced)
    _wait(lambda: expected <= set(run.stored(db_url)), "every produced count in zone_counts")
    assert run.stored(db_url) == dict.fromkeys(expected, 1)


@pytest.mark.data
@pytest.mark.e2e
@pytest.mark.faults
def test_a_full_disk_under_the_spool_costs_only_the_counted_messages(
    shared_dir: Path,
    mqtt_config: MqttConfig,
    mqtt_broker: MqttBroker,
    db_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with edge_on_real_video(shared_dir, mqtt_config, mqtt_broker, db_url, tmp_path) as run:
        mqtt_broker.stop()
        try:
            _wait(lambda: len(run.spool) >= 2, "counts spooled while the broker is away")
            run.outbox.before_next = lambda: fill_up(run.spool)
            _wait(lambda: run.forwarder.lost >= 3, "messages lost to the full disk")
            assert run.thread.is_alive(), "the worker ended when the spool filled up"
            assert "is full" in run.forwarder.health()
            run.outbox.before_next = lambda: make_room(run.spool)
            spooled = len(run.spool)
            _wait(lambda: len(run.spool) >= spooled + 2, "spooling again once space returned")
        finally:
            mqtt_broker.start()
        _replay_and_resume(run)
    lost = run.forwarder.lost
    assert lost >= 3 and run.spool.dropped == 0
    produced = run.outbox.produced
    _wait(lambda: len(run.stored(db_url)) >= len(produced) - lost, "the kept counts in zone_counts")
    time.sleep(1.0)  # nothing more may arrive
    stored = run.stored(db_url)
    assert set(stored.values()) == {1}, "a count written twice"
    missing = [i for i, m in enumerate(produced) if m not in stored]
    assert set(stored) <= set(produced)
    # Exactly the counted messages are missing, one run of them: those made while it was full.
    assert len(missing) == lost and missing == list(range(missing[0], missing[0] + lost))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    path = str(run.spool.path)
    full = [w for w in warnings if "is full" in w]
    assert len(full) == 1 and path in full[0]
    assert (
        f"edge spool {path} takes messages again: {lost} count messages were lost while it was full"
        in warnings
    )
