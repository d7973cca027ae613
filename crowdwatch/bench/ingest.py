"""``crowdwatch bench ingest``: ingest throughput against raw COPY, and a district-scale soak.

(a) **Throughput.**  The ingest subscribes once (persistent session) and leaves; publisher
    processes load the broker with M realistic messages (one per camera, every zone inside);
    the ingest comes back and drains them into PostgreSQL.  Rows/s from its start to the last
    row, beside a raw psycopg ``COPY`` of the same rows into the same table, in batches of the
    same size, measured in the same run.  Repeated; medians.
    Beside them, the **receive ceiling**: the same burst drained by a bare paho-mqtt 2 client
    that only acknowledges (no parsing, no database) — the most any paho-based ingest process
    could reach on this machine, as a ratio to the same COPY.
(b) **Soak.**  N cameras publish one message a second each for S seconds (several publisher
    processes) into a real ``crowdwatch ingest`` process.  Sampled every 0.5 s from its
    ``/metrics``: ingest lag (now minus the newest ts written); from ``/proc``: its RSS.
    At the end: acknowledged messages (PUBACK) missing from the database = rows lost.

Without ``--database-url``/``--broker`` it starts a private PostgreSQL and mosquitto, the way
the test suite does (:mod:`crowdwatch.devservices`; ``fsync=off``, which favours neither side
of the comparison).  The last stdout line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

SUMMARY = "ingest rows/s vs raw COPY; N cameras at 1 msg/s: lag p99, rows lost, memory"
EXTRAS = ("server",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--cameras", type=int, default=1000, help="soak: cameras (default 1000)")
    parser.add_argument("--seconds", type=float, default=300, help="soak: seconds (default 300)")
    parser.add_argument("--zones", type=int, default=4, help="zones per camera (default 4)")
    parser.add_argument(
        "--messages", type=int, default=20_000, help="throughput: messages per repeat"
    )
    parser.add_argument("--repeats", type=int, default=3, help="throughput: repeats (median)")
    parser.add_argument("--publishers", type=int, default=4, help="publisher processes")
    parser.add_argument(
        "--ingest-processes",
        type=int,
        default=1,
        help="throughput: drain with this many ingest processes in one shared group "
        "(default 1: the ingest in the bench's own process)",
    )
    parser.add_argument(
        "--skip", choices=["throughput", "soak"], action="append", default=[], help="skip a part"
    )
    parser.add_argument(
        "--database-url", help="admin URL of a PostgreSQL to create a scratch database on"
    )
    parser.add_argument("--broker", metavar="HOST:PORT", help="an MQTT 5 broker to use")


def run(args: argparse.Namespace) -> int:
    from crowdwatch.bench._services import bench_services

    def say(message: str) -> None:
        if not args.json:
            print(message, flush=True)

    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="cw-bench-") as tmp:
        pg, broker = bench_services(stack, args.database_url, args.broker, say)
        figures: dict[str, Any] = {
            "benchmark": "ingest",
            "zones_per_camera": args.zones,
            "machine": f"{os.cpu_count()} cpus, shared: figures are noisy",
        }
        if "throughput" not in args.skip:
            figures["throughput"] = _throughput(args, pg, broker, Path(tmp), say)
        if "soak" not in args.skip:
            figures["soak"] = _soak(args, pg, broker, Path(tmp), say)
    print(json.dumps(figures, separators=(",", ":")))
    return 0


# --- (a) throughput --------------------------------------------------------------------------


def _throughput(
    args: argparse.Namespace, pg: Any, broker: tuple[str, int], tmp: Path, say: Any
) -> dict[str, Any]:
    import psycopg

    from crowdwatch.bench._load import (
        PublisherJob,
        bench_district,
        camera_specs,
        count_for,
        run_publishers,
    )
    from crowdwatch.contracts.config import MqttConfig
    from crowdwatch.contracts.messages import TopicKind, camera_topic, encode
    from crowdwatch.ingest import IngestService
    from crowdwatch.storage.migrate import upgrade

    db_url = pg.create_database()
    try:
        cameras = max(1, min(args.cameras, args.messages))
        batch_size = 500
        ours: list[float] = []
        copy: list[float] = []
        ceiling: list[float] = []
        # CPU seconds per message of each process while it drains: where a core goes.
        cpu_ours: list[dict[str, float]] = []
        cpu_ceiling: list[dict[str, float]] = []
        for repeat in range(args.repeats):
            # A new prefix each time: the sessions of earlier repeats stay in the shared group
            # and would take their share of the messages while nobody reads them.
            mqtt = MqttConfig(
                host=broker[0], port=broker[1], topic_prefix=f"bench{uuid.uuid4().hex[:8]}"
            )
            config = bench_district(cameras, args.zones, mqtt, db_url)
            upgrade(db_url, config)
            specs = camera_specs(config)
            messages = [
                count_for(specs[i % len(specs)], i, age_s=i * 0.001) for i in range(args.messages)
            ]
            rows = len(messages) * args.zones
            copy.append(_raw_copy(db_url, messages, batch_size, psycopg))
            _truncate(db_url, psycopg)
            client_id = f"bench-ingest-{uuid.uuid4().hex[:8]}"
            client_ids = [client_id]
            if args.ingest_processes > 1:
                client_ids = [f"{client_id}-{k}" for k in range(args.ingest_processes)]
            # Subscribe once so the broker keeps a session, then leave while it is loaded.
            for cid in client_ids:
                first = IngestService(config, db_url, client_id=cid, stats_every_s=0)
                first.start()
                first.stop()
            burst = [
                (
                    camera_topic(mqtt.topic_prefix, m.site_id, m.camera_id, TopicKind.COUNTS),
                    encode(m),
                    m.message_id,
                )
                for m in messages
            ]
            jobs = [
                PublisherJob(
                    broker[0],
                    broker[1],
                    mqtt.topic_prefix,
                    [],
                    0,
                    burst[p :: args.publishers],
                    tmp / f"tput-{repeat}-{p}.ids",
                )
                for p in range(args.publishers)
            ]
            accepted = run_publishers(jobs)
            expected_rows = len(set(accepted)) * args.zones
            if len(client_ids) > 1:
                elapsed, cpu = _drain_in_processes(
                    config, db_url, client_ids, batch_size, expected_rows, pg, broker, psycopg
                )
                cpu_ours.append({k: v * args.zones for k, v in cpu.items()})
                who = f"{len(client_ids)} ingest processes"
            else:
                elapsed, cpu = _drain_here(
                    config, db_url, client_id, batch_size, expected_rows, args.zones, pg, broker
                )
                cpu_ours.append(cpu)
                who = "ingest"
            ours.append(expected_rows / elapsed)
            _truncate(db_url, psycopg)
            ceiling_rate, ceiling_cpu = _receive_ceiling(
                broker, burst, args.publishers, tmp / f"ceiling-{repeat}", pg
            )
            ceiling.append(ceiling_rate * args.zones)
            cpu_ceiling.append(ceiling_cpu)
            say(
                f"throughput {repeat + 1}/{args.repeats}: {who} {ours[-1]:,.0f} rows/s, "
                f"raw COPY {copy[-1]:,.0f} rows/s, paho receive ceiling {ceiling[-1]:,.0f} "
                f"rows/s, ingest / ceiling {ours[-1] / ceiling[-1]:.2f} ({rows:,} rows)"
            )
        result = {
            "messages": args.messages,
            "rows": args.messages * args.zones,
            "ingest_rows_per_s": round(statistics.median(ours)),
            "copy_rows_per_s": round(statistics.median(copy)),
            "ratio": round(statistics.median(ours) / statistics.median(copy), 3),
            "target_ratio": 0.8,
            "paho_ceiling_rows_per_s": round(statistics.median(ceiling)),
            "paho_ceiling_ratio": round(statistics.median(ceiling) / statistics.median(copy), 3),
            # The figure the ingest is held to: ours over the bare client's, repeat by repeat
            # (both drained the same burst from the same broker within seconds of each other).
            "ratio_to_paho_ceiling": round(
                statistics.median(o / c for o, c in zip(ours, ceiling, strict=True)), 3
            ),
            "target_ratio_to_paho_ceiling": 0.8,
            "cpu_us_per_message": {
                "ingest": _median_each(cpu_ours),
                "paho_ceiling": _median_each(cpu_ceiling),
            },
        }
        say(
            f"throughput (median of {args.repeats}): ingest {result['ingest_rows_per_s']:,} "
            f"rows/s = {result['ratio']:.2f} x raw COPY {result['copy_rows_per_s']:,} rows/s; "
            f"a paho client that only acknowledges: {result['paho_ceiling_ratio']:.2f} x; "
            f"ingest / that ceiling: {result['ratio_to_paho_ceiling']:.2f} (target 0.8)"
        )
        say(
            "CPU per message while draining, median µs (one core = 1e6 µs/s): "
            f"ingest {result['cpu_us_per_message']['ingest']}; "
            f"paho ceiling {result['cpu_us_per_message']['paho_ceiling']}"
        )
        return result
    finally:
        pg.drop_database(db_url)


def _drain_here(
    config: Any,
    db_url: str,
    client_id: str,
    batch_size: int,
    expected_rows: int,
    zones: int,
    pg: Any,
    broker: tuple[str, int],
) -> tuple[float, dict[str, float]]:
    """Drain the waiting burst with an ingest in this process: seconds, and CPU µs per
    message of this process, PostgreSQL and mosquitto while it drained (read before the
    ingest stops, so its shutdown is not counted)."""
    from crowdwatch.ingest import IngestService

    service = IngestService(
        config, db_url, client_id=client_id, batch_size=batch_size, stats_every_s=0
    )
    groups = _cpu_groups(pg, broker)
    started = time.perf_counter()
    service.start()
    try:
        written, progress_at = 0, time.monotonic()
        while written < expected_rows:
            # Polled inside the measured process: without the per-camera skews,
            # which a snapshot otherwise sorts (1,000 cameras, 200 times a second).
            now_written = service.stats(clock_skew=False).rows_written
            if now_written > written:
                written, progress_at = now_written, time.monotonic()
            elif time.monotonic() - progress_at > 30:
                raise RuntimeError(f"ingest stalled at {written} of {expected_rows} rows")
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
        return elapsed, _cpu_per_message(groups, expected_rows // zones)
    finally:
        service.stop()


def _drain_in_processes(
    config: Any,
    db_url: str,
    client_ids: list[str],
    batch_size: int,
    expected_rows: int,
    pg: Any,
    broker: tuple[str, int],
    psycopg: Any,
) -> tuple[float, dict[str, float]]:
    """Seconds for one ingest process per client id (one shared group) to drain the burst,
    counted in the database, and the CPU per row of each process group meanwhile."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    go, stop = ctx.Event(), ctx.Event()
    ready = ctx.Semaphore(0)
    procs = [
        ctx.Process(target=_ingest_process, args=(config, db_url, cid, batch_size, ready, go, stop))
        for cid in client_ids
    ]
    for proc in procs:
        proc.start()
    try:
        for _ in procs:
            if not ready.acquire(timeout=120):
                raise RuntimeError("an ingest process did not get ready in 120 s")
        groups = _cpu_groups(pg, broker, [p.pid for p in procs if p.pid is not None])
        started = time.perf_counter()
        go.set()
        written, progress_at = 0, time.monotonic()
        with psycopg.connect(db_url, autocommit=True) as conn:
            while written < expected_rows:
                now_written = conn.execute("SELECT count(*) FROM zone_counts").fetchone()[0]
                if now_written > written:
                    written, progress_at = now_written, time.monotonic()
                elif time.monotonic() - progress_at > 30:
                    raise RuntimeError(f"ingest stalled at {written} of {expected_rows} rows")
                time.sleep(0.05)
        elapsed = time.perf_counter() - started
        return elapsed, _cpu_per_message(groups, expected_rows)
    finally:
        stop.set()
        for proc in procs:
            proc.join(60)
            if proc.is_alive():
                proc.kill()


def _ingest_process(
    config: Any, db_url: str, client_id: str, batch_size: int, ready: Any, go: Any, stop: Any
) -> None:
    """One ingest of ``--ingest-processes``: built, then started on ``go`` (imports and the
    district's load are not timed), stopped on ``stop``."""
    from crowdwatch.ingest import IngestService

    service = IngestService(
        config, db_url, client_id=client_id, batch_size=batch_size, stats_every_s=0
    )
    ready.release()
    go.wait()
    service.start()
    stop.wait()
    service.stop()


def _cpu_groups(pg: Any, broker: tuple[str, int], pids: list[int] | None = None) -> list[Any]:
    """This process (the ingest or the bare client runs in it) or ``pids``, PostgreSQL (all
    backends) and the broker, when they run on this machine; their CPU windows started."""
    from psycopg.conninfo import conninfo_to_dict

    from crowdwatch.bench._procs import ProcessGroup, listener_pid

    groups = [ProcessGroup("process", pids or [os.getpid()])]
    broker_pid = listener_pid(broker[1]) if broker[0] in ("127.0.0.1", "localhost") else None
    if broker_pid is not None:
        groups.append(ProcessGroup("broker", [broker_pid]))
    info = conninfo_to_dict(pg.admin_url)
    if str(info.get("host", "127.0.0.1")) in ("127.0.0.1", "localhost"):
        pg_pid = listener_pid(int(info.get("port") or 5432))
        if pg_pid is not None:
            groups.append(ProcessGroup("postgres", [pg_pid], tree=True))
    for group in groups:
        group.start()
    return groups


def _cpu_per_message(groups: list[Any], messages: int) -> dict[str, float]:
    """µs of CPU per message of each group since its window started."""
    out = {}
    for group in groups:
        group.sample()
        seconds = group.cpu_used()
        if seconds is not None:
            out[group.name] = round(seconds / max(1, messages) * 1e6, 1)
    return out


def _median_each(samples: list[dict[str, float]]) -> dict[str, float]:
    keys = sorted({k for s in samples for k in s})
    return {k: round(statistics.median(s[k] for s in samples if k in s), 1) for k in keys}


def _raw_copy(db_url: str, messages: list[Any], batch_size: int, psycopg: Any) -> float:
    """Rows/s of a plain COPY of the messages' zone rows into zone_counts, batch by batch."""
    cols = "ts, site_id, camera_id, zone_id, count, count_max, count_mean, interval_s, message_id"
    batches = [
        [
            (
                m.ts,
                m.site_id,
                m.camera_id,
                z.zone_id,
                z.count,
                z.count_max,
                z.count_mean,
                m.interval_s,
                m.message_id,
            )
            for m in messages[i : i + batch_size]
            for z in m.zones
        ]
        for i in range(0, len(messages), batch_size)
    ]
    rows = sum(len(b) for b in batches)
    with psycopg.connect(db_url) as conn:
        started = time.perf_counter()
        for batch in batches:
            with (
                conn.transaction(),
                conn.cursor() as cur,
                cur.copy(f"COPY zone_counts ({cols}) FROM STDIN") as copy,
            ):
                for row in batch:
                    copy.write_row(row)
        elapsed = time.perf_counter() - started
    _truncate(db_url, psycopg)
    return rows / elapsed


def _receive_ceiling(
    broker: tuple[str, int],
    burst: list[tuple[str, bytes, str]],
    publishers: int,
    tmp: Path,
    pg: Any,
) -> tuple[float, dict[str, float]]:
    """Messages/s a bare paho-mqtt 2 subscriber drains from a persistent session, ack only,
    and the CPU per message of each process meanwhile.

    Same broker, payloads and manual QoS 1 acknowledgement as the ingest, nothing else: the
    receive path's own ceiling on this machine.
    """
    import threading

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from crowdwatch.bench._load import PublisherJob, run_publishers

    tmp.mkdir(parents=True, exist_ok=True)
    prefix = f"ceiling{uuid.uuid4().hex[:8]}"
    client_id = f"bench-ceiling-{uuid.uuid4().hex[:8]}"
    # Same topics as the ingest's burst, under a prefix of its own.
    moved = [(f"{prefix}/{topic.split('/', 1)[1]}", payload, mid) for topic, payload, mid in burst]

    def connect(clean: bool) -> paho.Client:
        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5, manual_ack=True
        )
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 600
        client.connect(broker[0], broker[1], clean_start=clean, properties=props)
        return client

    subscribed = threading.Event()
    first = connect(clean=True)
    first.on_connect = lambda c, *_: c.subscribe(f"{prefix}/#", qos=1)
    first.on_subscribe = lambda *_: subscribed.set()
    first.loop_start()
    if not subscribed.wait(10):
        raise RuntimeError("ceiling: the broker did not confirm the subscription")
    first.disconnect()
    first.loop_stop()
    jobs = [
        PublisherJob(broker[0], broker[1], prefix, [], 0, moved[p::publishers], tmp / f"{p}.ids")
        for p in range(publishers)
    ]
    expected = len(set(run_publishers(jobs)))
    received = 0
    drained = threading.Event()

    def on_message(client: paho.Client, _userdata: object, message: paho.MQTTMessage) -> None:
        nonlocal received
        client.ack(message.mid, message.qos)
        received += 1
        if received >= expected:
            drained.set()

    second = connect(clean=False)
    second.on_message = on_message
    groups = _cpu_groups(pg, broker)
    started = time.perf_counter()
    second.loop_start()
    try:
        if not drained.wait(120):
            raise RuntimeError(f"ceiling: drained {received} of {expected} messages in 120 s")
        rate = expected / (time.perf_counter() - started)
        return rate, _cpu_per_message(groups, expected)
    finally:
        second.disconnect()
        second.loop_stop()


def _truncate(db_url: str, psycopg: Any) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("TRUNCATE zone_counts, zone_latest")


# --- (b) soak --------------------------------------------------------------------------------


def _soak(
    args: argparse.Namespace, pg: Any, broker: tuple[str, int], tmp: Path, say: Any
) -> dict[str, Any]:
    import psycopg
    import yaml

    from crowdwatch.bench._load import PublisherJob, bench_district, camera_specs
    from crowdwatch.bench._procs import stop_process
    from crowdwatch.contracts.config import MqttConfig
    from crowdwatch.devservices.host import free_port
    from crowdwatch.storage.migrate import upgrade

    db_url = pg.create_database()
    try:
        mqtt = MqttConfig(
            host=broker[0], port=broker[1], topic_prefix=f"bench{uuid.uuid4().hex[:8]}"
        )
        config = bench_district(args.cameras, args.zones, mqtt, db_url)
        upgrade(db_url, config)
        config_path = tmp / "soak.yaml"
        raw = config.model_dump(mode="json", by_alias=True, exclude_none=True)
        config_path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
        port = free_port()
        log_path = tmp / "soak-ingest.log"
        with log_path.open("wb") as log:
            ingest = subprocess.Popen(
                [
                    *(sys.executable, "-m", "crowdwatch", "--log-level", "WARNING", "ingest"),
                    *("--config", str(config_path), "--worker", f"bench-{uuid.uuid4().hex[:6]}"),
                    *("--metrics-port", str(port)),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            if _scrape(port, wait_s=60, proc=ingest) is None:
                raise RuntimeError(f"crowdwatch ingest did not come up; see {log_path}")
            specs = camera_specs(config)
            jobs = [
                PublisherJob(
                    broker[0],
                    broker[1],
                    mqtt.topic_prefix,
                    specs[p :: args.publishers],
                    args.seconds,
                    [],
                    tmp / f"soak-{p}.ids",
                )
                for p in range(args.publishers)
            ]
            say(f"soak: {args.cameras} cameras x 1 msg/s for {args.seconds:g} s ...")
            samples = _run_sampled(jobs, port, ingest.pid, args.seconds)
            accepted = samples.pop("accepted")
            drained = _wait_for_rows(db_url, accepted, args.zones, psycopg)
        finally:
            stop_process(ingest, 60)
        result = {"cameras": args.cameras, "seconds": args.seconds, **samples, **drained}
        say(
            f"soak: lag p50 {result['lag_p50_s']} s, p99 {result['lag_p99_s']} s (target < 2), "
            f"rows lost {result['rows_lost']} of {result['rows_expected']:,}, duplicates "
            f"{result['duplicate_rows']}, RSS {result['rss_start_mb']} -> {result['rss_end_mb']} "
            f"MB (max {result['rss_max_mb']}, slope {result['rss_slope_mb_per_min']} MB/min)"
        )
        return result
    finally:
        pg.drop_database(db_url)


def _run_sampled(jobs: list[Any], port: int, pid: int, seconds: float) -> dict[str, Any]:
    """Run the publishers in a thread while sampling lag and RSS every 0.5 s."""
    import threading

    from crowdwatch.bench._load import run_publishers

    accepted: list[str] = []
    errors: list[BaseException] = []

    def publish() -> None:
        try:
            accepted.extend(run_publishers(jobs))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=publish, name="bench-publishers")
    started = time.monotonic()
    thread.start()
    lags: list[float] = []
    rss: list[tuple[float, float]] = []
    while thread.is_alive():
        time.sleep(0.5)
        now = time.monotonic() - started
        values = _scrape(port) or {}
        lag = values.get("crowdwatch_ingest_lag_seconds")
        # The first seconds are start-up (spawned publishers connecting), not steady state.
        if lag is not None and lag == lag and 5.0 < now < seconds:
            lags.append(lag)
        mb = _rss_mb(pid)
        if mb is not None:
            rss.append((now, mb))
    thread.join()
    if errors:
        raise errors[0]
    if not lags:
        raise RuntimeError("no lag samples: did the ingest write anything?")
    ordered = sorted(lags)
    half = [(t, m) for t, m in rss if t >= seconds / 2] or rss
    return {
        "accepted": accepted,
        "lag_p50_s": round(statistics.median(ordered), 3),
        "lag_p99_s": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 3),
        "lag_max_s": round(ordered[-1], 3),
        "lag_samples": len(ordered),
        "target_lag_p99_s": 2.0,
        "rss_start_mb": round(rss[0][1], 1) if rss else None,
        "rss_end_mb": round(rss[-1][1], 1) if rss else None,
        "rss_max_mb": round(max(m for _, m in rss), 1) if rss else None,
        "rss_slope_mb_per_min": round(_slope(half) * 60, 2) if len(half) > 1 else None,
        "rss_series_mb": [round(m, 1) for _, m in rss[:: max(1, len(rss) // 20)]],
    }


def _wait_for_rows(db_url: str, accepted: list[str], zones: int, psycopg: Any) -> dict[str, Any]:
    """Wait (up to 60 s) for every acknowledged message; count what is missing or doubled."""
    want = set(accepted)
    deadline = time.monotonic() + 60
    while True:
        with psycopg.connect(db_url) as conn:
            stored = {r[0] for r in conn.execute("SELECT DISTINCT message_id FROM zone_counts")}
            rows, distinct_keys = conn.execute(
                "SELECT count(*), count(DISTINCT (message_id, zone_id)) FROM zone_counts"
            ).fetchone() or (0, 0)
        missing = want - stored
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    return {
        "messages_accepted": len(want),
        "rows_expected": len(want) * zones,
        "rows_written": rows,
        "messages_lost": len(missing),
        "rows_lost": len(missing) * zones,
        "duplicate_rows": rows - distinct_keys,
    }


SCRAPED = (
    "crowdwatch_ingest_messages_total",
    "crowdwatch_ingest_lag_seconds",
    "crowdwatch_ingest_queued",
)
"""What the benches read from ``/metrics``.  They scrape twice a second, so they ask for these
samples alone (``name[]``): the whole exposition carries a clock-skew series per camera, at
5,000 cameras 400 KB and ~40 ms of the ingest's CPU (and GIL) per scrape."""
_QUERY = "&".join(f"name[]={name}" for name in SCRAPED)


def _scrape(
    port: int, wait_s: float = 0.0, proc: subprocess.Popen[bytes] | None = None
) -> dict[str, float] | None:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            url = f"http://127.0.0.1:{port}/metrics?{_QUERY}"
            with urllib.request.urlopen(url, timeout=2) as r:
                text = r.read().decode()
            return {
                m.group(1): float(m.group(2))
                for m in re.finditer(r"^(crowdwatch_\w+)\{[^}]*\} (\S+)$", text, re.MULTILINE)
            }
        except OSError:
            if time.monotonic() >= deadline or (proc is not None and proc.poll() is not None):
                return None
            time.sleep(0.2)


def _rss_mb(pid: int) -> float | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) / 1024 if match else None


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope (MB per second)."""
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_m = sum(m for _, m in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    return sum((t - mean_t) * (m - mean_m) for t, m in points) / var
