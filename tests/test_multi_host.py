"""Several hosts for real: the district on network namespaces, one per machine.

Hosts (``tests/services/netns.py``): ``db`` (PostgreSQL), ``broker`` (Debian mosquitto),
``ingest1`` and ``ingest2`` (one ``crowdwatch ingest`` each, MQTT 5 shared group),
``edge1`` (``crowdwatch simulate``: eight cameras) and ``edge2`` (``crowdwatch edge`` on the
PETS 2009 walkway with its spool), each behind its own veth link to one bridge. Every
process is the real command, started inside its host with ``ip netns exec``.

A watcher in the test process holds a plain persistent subscription to every count topic:
it sees each message the broker accepted, whichever worker the shared group gives it to.
What is shown, in one run:

1. the shared group spreads the messages over both ingest hosts;
2. ingest1's cable is cut and the host is lost (its process SIGKILLed while cut, so the
   broker never hears a goodbye): mosquitto keeps routing ingest1's share to its session,
   so those messages wait until the broker notices the loss (1.5 keepalives: the ingest
   hosts announce :data:`INGEST_KEEPALIVE_S`, the edges keep the default) and publishes
   w1's Last Will;
   then ingest2 stands in for w1's session by itself and writes them (README, "Several
   workers"); when ingest1's link is back and w1 starts there again, it takes its session
   back and the stand-in steps aside without a fight;
3. edge2's cable is cut for :data:`EDGE_CUT_S` seconds: the edge spools its counts and
   replays them, in order, when the link is back (until paho's keepalive notices the dead
   link, ~30 s, a publish waits 5 s for its PUBACK; the forwarder then leaves the broker
   alone for 15 s and spools each count at once, so the edge keeps its count a second);
4. at the end every count message the broker accepted is in ``zone_counts`` once (no lost,
   no duplicated row), each camera's rows in ts order are its messages in publish order, and
   ``zone_latest`` holds each zone's newest count although the two workers commit messages
   of one camera in either order.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from factories import config_dict, make_config, site_dict, write_config
from services.components import CrowdwatchProcess
from services.host import ServiceUnavailable
from services.netns import (
    HostedPostgres,
    NetnsHost,
    Network,
    network,
    start_mosquitto,
    start_postgres,
)

from crowdwatch.contracts.config import CrowdwatchConfig, MqttConfig
from crowdwatch.mqtt.client import MqttClient

pytestmark = [pytest.mark.e2e, pytest.mark.faults, pytest.mark.slow, pytest.mark.data]

SIMULATED_CAMERAS = 8
SPREAD_S = 12.0
"""Load on both workers before the first check of the spread."""
INGEST_LOST_S = 8.0
"""From cutting ingest1's cable to starting its worker on ingest2."""
EDGE_CUT_S = 60.0
"""The edge box's outage (the issue's 60 s): longer than paho's keepalive of 30 s, so the
edge both times out single publishes and later sees the connection drop."""
INGEST_KEEPALIVE_S = 10
"""The ingest workers' MQTT keepalive (``mqtt.keepalive_s``; default 30).  The broker notices
a cut link after 1.5 keepalives, 15 s here instead of 45 s: the same takeover, sooner.  Not
shorter: w1's share must still be waiting in its session when it is looked at,
:data:`INGEST_LOST_S` after the cut.  The edge boxes keep the default 30 s, whose
consequences step 3 is about."""
TAKEOVER_TIMEOUT_S = 90.0
"""From the check of w1's waiting share to ingest2 standing in: the broker's 1.5 keepalives
and the stand-in's grace of 5 s, with room for a busy machine."""
METRICS_PORT = 9464
TIMEOUT_S = 90.0
PREFIX = "city"
PETS = Path("data") / "pets2009_s2l1" / "vtest.avi"


def _wait(check: Callable[[], bool], what: str, timeout_s: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.2)


class Watcher:
    """A plain persistent subscription to every count topic: what the broker accepted.

    Records each message id per camera in order of first arrival (a message the edge sent
    twice, its PUBACK lost in the cut, counts once).
    """

    def __init__(self, mqtt: MqttConfig) -> None:
        self._client = MqttClient(mqtt, "multihost-watcher", clean_start=False)
        self._lock = threading.Lock()
        self._seen: set[str] = set()
        self.by_camera: dict[tuple[str, str], list[str]] = {}
        self.arrived_at: dict[str, float] = {}

    def start(self) -> None:
        self._client.connect()
        self._client.subscribe(f"{PREFIX}/v1/+/+/counts", self._on_count)

    def close(self) -> None:
        self._client.close()

    def _on_count(self, _topic: str, payload: bytes) -> None:
        message = json.loads(payload)
        message_id = str(message["message_id"])
        with self._lock:
            if message_id in self._seen:
                return
            self._seen.add(message_id)
            self.arrived_at[message_id] = time.monotonic()
            key = (str(message["site_id"]), str(message["camera_id"]))
            self.by_camera.setdefault(key, []).append(message_id)

    def ids(self, arrived_before: float | None = None) -> set[str]:
        with self._lock:
            return {
                m
                for m, t in self.arrived_at.items()
                if arrived_before is None or t < arrived_before
            }


def _metrics(host: NetnsHost, port: int = METRICS_PORT) -> dict[str, float] | None:
    """One ingest worker's counters, read over the bridge; None while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://{host.address}:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return None
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(r"^(crowdwatch_\w+)\{[^}]*\} (\S+)$", text, re.MULTILINE)
    }


def _stored(db_url: str) -> dict[str, int]:
    """message_id -> rows in zone_counts."""
    with psycopg.connect(db_url) as conn:
        return dict(conn.execute("SELECT message_id, count(*) FROM zone_counts GROUP BY 1"))


def _district(mqtt: MqttConfig, shared: Path, spool: Path) -> CrowdwatchConfig:
    sims = [site_dict(f"sim-{i:02d}") for i in range(SIMULATED_CAMERAS)]
    walkway = site_dict("stop-a", source=str(shared / PETS))
    walkway["cameras"][0].update(loop=True, realtime=True)
    raw = config_dict(walkway, *sims)
    # One detection a second at 7 fps keeps the edge host cheap on a shared machine.
    raw["detector"].update(model=str(shared / "models" / "yolo11n_coco_640.onnx"), threads=1)
    return make_config(
        raw,
        mqtt=mqtt.model_dump(),
        edge={"interval_s": 1.0, "detect_every": 7, "spool": {"path": str(spool)}},
    )


class District:
    """The processes of the run, by host; every one is stopped at the end."""

    def __init__(
        self, net: Network, config_path: Path, ingest_config_path: Path, db_url: str, logs: Path
    ) -> None:
        self.net = net
        self.config_path = config_path
        self.ingest_config_path = ingest_config_path
        self.db_url = db_url
        self.logs = logs
        self.processes: list[CrowdwatchProcess] = []

    def run(
        self, host: str, name: str, argv: list[str], config_path: Path | None = None
    ) -> CrowdwatchProcess:
        proc = CrowdwatchProcess(
            [*argv, "--config", str(config_path or self.config_path)],
            self.logs / f"{name}.log",
            env={"CROWDWATCH_DATABASE_URL": self.db_url},
            prefix=self.net.hosts[host].command([]),
        )
        proc.start()
        self.processes.append(proc)
        return proc

    def ingest(self, host: str, worker: str, port: int = METRICS_PORT) -> CrowdwatchProcess:
        proc = self.run(
            host,
            f"ingest-{worker}-on-{host}",
            [
                *("ingest", "--worker", worker, "--metrics-port", str(port)),
                *("--metrics-host", "0.0.0.0"),
            ],
            self.ingest_config_path,
        )
        _wait(
            lambda: proc.poll() is not None or _metrics(self.net.hosts[host], port) is not None,
            f"ingest {worker} on {host}",
        )
        assert proc.poll() is None, f"ingest {worker} on {host} exited:\n{proc.log_tail()}"
        return proc

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.terminate()


@dataclass(frozen=True)
class City:
    net: Network
    pg: HostedPostgres
    watcher: Watcher
    district: District
    config: CrowdwatchConfig


@pytest.fixture
def city(shared_dir: Path, tmp_path: Path) -> Iterator[City]:
    """The six hosts, PostgreSQL and mosquitto in theirs, the watcher; torn down on exit."""
    with ExitStack() as stack:
        try:
            net = stack.enter_context(network())
        except ServiceUnavailable as exc:
            pytest.skip(f"cannot make hosts as network namespaces here: {exc}")
        for name, octet in [
            ("db", 10),
            ("broker", 2),
            ("ingest1", 21),
            ("ingest2", 22),
            ("edge1", 31),
            ("edge2", 32),
        ]:
            net.add_host(name, octet)
        pg = start_postgres(net.hosts["db"], net.subnet)
        stack.callback(pg.stop)
        broker = start_mosquitto(net.hosts["broker"])
        stack.callback(broker.stop)
        with psycopg.connect(pg.url(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE crowdwatch")
        mqtt = MqttConfig(
            host=net.hosts["broker"].address,
            port=1883,
            protocol="5",
            topic_prefix=PREFIX,
            shared_group="ingest",
        )
        config = _district(mqtt, shared_dir, tmp_path / "spool")
        ingest_mqtt = mqtt.model_copy(update={"keepalive_s": INGEST_KEEPALIVE_S})
        district = District(
            net,
            write_config(config, tmp_path / "city.yaml"),
            write_config(config.model_copy(update={"mqtt": ingest_mqtt}), tmp_path / "ingest.yaml"),
            pg.url("crowdwatch"),
            tmp_path,
        )
        stack.callback(district.stop)
        watcher = Watcher(mqtt)
        watcher.start()
        stack.callback(watcher.close)
        yield City(net, pg, watcher, district, config)


def _rows_in_ts_order(db_url: str) -> dict[tuple[str, str], list[str]]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT DISTINCT ts, site_id, camera_id, message_id FROM zone_counts ORDER BY ts"
        ).fetchall()
    order: dict[tuple[str, str], list[str]] = {}
    for _ts, site, camera, message_id in rows:
        order.setdefault((site, camera), []).append(message_id)
    return order


def test_a_district_on_six_hosts_loses_and_duplicates_nothing(city: City) -> None:
    watcher, district = city.watcher, city.district
    db_url = city.pg.url("crowdwatch")
    hosts = city.net.hosts
    district.ingest("ingest1", "w1")
    survivor = district.ingest("ingest2", "w2")
    simulator = district.run("edge1", "simulate", ["simulate"])
    edge = district.run("edge2", "edge", ["edge"])
    cameras = {(s.id, c.id) for s, c in city.config.cameras()}
    _wait(lambda: set(watcher.by_camera) == cameras, "counts from every camera at the broker")

    # 1. The shared group spreads the messages over both hosts.
    time.sleep(SPREAD_S)
    taken = {h: _metrics(hosts[h]) or {} for h in ("ingest1", "ingest2")}
    share = {h: m.get("crowdwatch_ingest_messages_total", 0.0) for h, m in taken.items()}
    total = sum(share.values())
    assert total > 0 and all(n >= 0.25 * total for n in share.values()), share

    # 2. ingest1 is lost: cable cut, then the process dies without a word to the broker.
    lost = district.processes[0]
    hosts["ingest1"].cut()
    cut_at = time.monotonic()
    time.sleep(INGEST_LOST_S / 2)
    lost.kill()
    time.sleep(INGEST_LOST_S / 2)
    # Accepted since the cut and given ingest2 time to write: until the broker notices the
    # loss, mosquitto routes part of them to w1's session, which nobody reads.
    settled = time.monotonic() - 2.0
    during = watcher.ids(arrived_before=settled) - watcher.ids(arrived_before=cut_at + 0.5)
    waiting = during - set(_stored(db_url))
    assert during and waiting, "expected w1's share of the messages to wait in its session"
    # Nobody starts w1 again: once the broker gives up on the link (1.5 keepalives, 15 s after
    # the cut) w1's Last Will says it is offline, and ingest2 stands in for its session.
    _wait(
        lambda: "takes over its session" in survivor.log_tail(400),
        "ingest2 standing in for w1",
        TAKEOVER_TIMEOUT_S,
    )
    taken_at = time.monotonic() + 2.0
    _wait(lambda: watcher.ids(taken_at) <= set(_stored(db_url)), "w1's share written by ingest2")
    # w1's host comes back: its worker takes its session back and the stand-in stops quietly.
    hosts["ingest1"].restore(reach=(hosts["broker"].address, 1883))
    returned = district.ingest("ingest1", "w1")
    _wait(lambda: "not reconnecting" in survivor.log_tail(400), "the stand-in to step aside")
    _wait(
        lambda: (_metrics(hosts["ingest1"]) or {}).get("crowdwatch_ingest_messages_total", 0) > 0,
        "w1 back on ingest1 with its share",
    )

    # 3. edge2's cable is cut: the edge spools, then replays when the link is back.
    hosts["edge2"].cut()
    edge_cut_at = datetime.now(UTC)
    time.sleep(EDGE_CUT_S)
    hosts["edge2"].restore()
    edge_back_at = datetime.now(UTC)
    _wait(
        lambda: "spool" in edge.log_tail(200) and "replayed" in edge.log_tail(200),
        "the edge's spool replayed",
    )
    time.sleep(3.0)  # counts after the replay

    assert "MQTT disconnected" not in returned.log_tail(400), "the stand-in fought back"
    assert simulator.terminate() == 0, simulator.log_tail()
    assert edge.terminate() == 0, edge.log_tail()
    accepted = watcher.ids()
    _wait(lambda: accepted <= set(_stored(db_url)), "every accepted message in zone_counts")
    time.sleep(2.0)  # nothing more may arrive

    # 4. Exactly once: every accepted message, each with one row per zone of its camera.
    stored = _stored(db_url)
    assert set(stored) == accepted
    assert set(stored.values()) == {1}, "each camera here has one zone: a count written twice"
    with psycopg.connect(db_url) as conn:
        dead = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
        stale = conn.execute(
            "SELECT l.site_id, l.zone_id, l.ts, max(c.ts) FROM zone_latest l "
            "JOIN zone_counts c USING (site_id, zone_id) GROUP BY 1, 2, 3 "
            "HAVING l.ts <> max(c.ts)"
        ).fetchall()
        replayed = conn.execute(
            "SELECT count(*), min(received_at) FROM zone_counts WHERE site_id = 'stop-a' "
            "AND ts > %s AND ts < %s",
            (edge_cut_at + timedelta(seconds=1), edge_back_at - timedelta(seconds=1)),
        ).fetchone()
    assert dead == (0,)
    assert stale == [], "zone_latest kept an older count than the newest row"
    # Each camera's rows in ts order are its messages in the order the broker first had them.
    assert _rows_in_ts_order(db_url) == {k: list(v) for k, v in watcher.by_camera.items()}
    # Counts made during the edge's outage were stored, and only after the link came back.
    assert replayed is not None
    made_while_cut, first_received = replayed
    # At least one count per 2 s of outage: while paho still believes the dead link is up
    # (its keepalive, ~30 s) a publish waits 5 s for a PUBACK, once per 15 s (the spool's
    # quiet time); every other interval's count goes to the spool at once.
    assert made_while_cut >= EDGE_CUT_S / 2, f"only {made_while_cut} counts came back"
    assert first_received >= edge_back_at - timedelta(seconds=1)
    log = edge.log_tail(400)
    assert "spooling count messages" in log and "replayed" in log
    # The figures of the run, for `pytest -s` (the assertions above are what is checked).
    print(
        f"shares {share}; after the loss of ingest1 {len(waiting)} of {len(during)} messages "
        f"waited for w1's session; {made_while_cut} counts made during the edge's "
        f"{EDGE_CUT_S:g} s outage replayed; {len(stored)} messages stored once each"
    )
