"""``crowdwatch bench alerts``: from a count message published to the webhook receiving its alert.

A real ``crowdwatch alerts`` process (its own subprocess) watches N simulated cameras that
publish one count message a second each (background load from publisher processes, counts
below the threshold).  Probes: the benchmark publishes, for one camera at a time, a count at
or above the rule's threshold (``for_s: 0``: no pending period) and times the moment the
local webhook receiver gets the firing notification for that zone.  The camera's next
background message clears it again.

Baseline, in the same run and interleaved with the probes: the same two hops without the
engine — a message published to the broker, received by a subscriber that POSTs it to the
same receiver.  Probes run in ``--repeats`` rounds; the figures are the medians of the
rounds' p50 and p99.  Without ``--database-url``/``--broker`` it starts a private PostgreSQL
and mosquitto.  The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SUMMARY = "alert latency: count published -> webhook received, p50/p99 with N cameras at 1 msg/s"

THRESHOLD = 100
"""People that fire the bench rule; background counts stay below 40."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--cameras", type=int, default=1000, help="cameras (default 1000)")
    parser.add_argument("--probes", type=int, default=100, help="probes per round (default 100)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of probes (median)")
    parser.add_argument(
        "--interval", type=float, default=0.05, help="seconds between probes (default 0.05)"
    )
    parser.add_argument("--publishers", type=int, default=4, help="background publisher processes")
    parser.add_argument(
        "--database-url", help="admin URL of a PostgreSQL to create a scratch database on"
    )
    parser.add_argument("--broker", metavar="HOST:PORT", help="an MQTT 5 broker to use")


class _Receiver:
    """A local webhook receiver: when each alert key's firing notification arrived."""

    def __init__(self) -> None:
        self.arrivals: dict[str, list[float]] = {}
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                now = time.time()
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                keys = [a["alert_key"] for a in body.get("alerts", [])]
                if body.get("event", "firing") == "firing":
                    with receiver._cond:
                        for key in keys or [str(body.get("probe"))]:
                            receiver.arrivals.setdefault(key, []).append(now)
                        receiver._cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="bench-webhook"
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def wait(self, key: str, after: float, timeout: float) -> float | None:
        """The first arrival for ``key`` after ``after`` (epoch s), or None on time-out."""

        def found() -> float | None:
            return next((t for t in self.arrivals.get(key, []) if t >= after), None)

        with self._cond:
            self._cond.wait_for(lambda: found() is not None, timeout)
            return found()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def run(args: argparse.Namespace) -> int:
    from crowdwatch.bench._services import bench_services

    def say(message: str) -> None:
        if not args.json:
            print(message, flush=True)

    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="cw-bench-alerts-") as tmp:
        pg, broker = bench_services(stack, args.database_url, args.broker, say)
        receiver = _Receiver()
        stack.callback(receiver.close)
        db_url = pg.create_database()
        stack.callback(pg.drop_database, db_url)
        figures = _measure(args, db_url, broker, receiver, Path(tmp), say)
    print(json.dumps(figures, separators=(",", ":")))
    return 0


def _measure(
    args: argparse.Namespace,
    db_url: str,
    broker: tuple[str, int],
    receiver: _Receiver,
    tmp: Path,
    say: Any,
) -> dict[str, Any]:
    import yaml

    from crowdwatch.bench._load import PublisherJob, bench_district, camera_specs, run_publishers
    from crowdwatch.contracts.config import MqttConfig, parse_config
    from crowdwatch.contracts.messages import (
        CountMessage,
        TopicKind,
        ZoneCount,
        camera_topic,
        encode,
        utc_now,
    )
    from crowdwatch.mqtt.client import MqttClient
    from crowdwatch.storage.migrate import upgrade

    mqtt = MqttConfig(host=broker[0], port=broker[1], topic_prefix=f"bench{uuid.uuid4().hex[:8]}")
    raw = bench_district(args.cameras, 1, mqtt, db_url).model_dump(mode="json")
    raw["alerts"] = {
        "evaluate_every_s": 5,
        "rules": [
            {"id": "queue", "metric": "people", "fire_at": THRESHOLD, "clear_at": 50, "for_s": 0}
        ],
        "channels": [{"id": "hook", "type": "webhook", "url": f"{receiver.url}/hook"}],
        "routes": [{"notify": ["hook"], "group_by": "zone", "send_resolved": False}],
    }
    config = parse_config(raw, origin="bench")
    upgrade(db_url, config)
    config_path = tmp / "bench-alerts.yaml"
    config_path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    specs = camera_specs(config)

    log = (tmp / "alerts.log").open("wb")
    engine = subprocess.Popen(
        [sys.executable, "-m", "crowdwatch", "alerts", "--config", str(config_path)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    client = MqttClient(mqtt, client_id=f"bench-probe-{uuid.uuid4().hex[:8]}")
    baseline_topic = f"{mqtt.topic_prefix}/bench/baseline"
    client.subscribe(baseline_topic, lambda _t, payload: _post(receiver.url, payload))
    client.connect()

    def crowded(index: int) -> tuple[str, bytes]:
        spec = specs[index % len(specs)]
        message = CountMessage(
            site_id=spec.site_id,
            camera_id=spec.camera_id,
            ts=utc_now(),
            interval_s=1.0,
            frames=10,
            zones=[ZoneCount(zone_id=spec.zone_ids[0], count=150, count_max=150, count_mean=150)],
        )
        key = f"{spec.site_id}/{spec.zone_ids[0]}/queue"
        topic = camera_topic(mqtt.topic_prefix, spec.site_id, spec.camera_id, TopicKind.COUNTS)
        client.publish(topic, encode(message), qos=1)
        return key, encode(message)

    try:
        say(f"waiting for the alert engine to take the lease ({args.cameras} cameras) ...")
        deadline = time.monotonic() + 60
        while True:
            started = time.time()
            key, _ = crowded(0)
            if receiver.wait(key, started, 1.0) is not None:
                break
            if time.monotonic() > deadline or engine.poll() is not None:
                raise RuntimeError(f"the alert engine did not answer; see {tmp / 'alerts.log'}")
        rounds = max(1, args.repeats)
        # Long enough for every probe (each waits for its webhook, a few ms when healthy).
        seconds = rounds * args.probes * (args.interval + 0.1) + 8
        jobs = [
            PublisherJob(
                broker[0],
                broker[1],
                mqtt.topic_prefix,
                specs[p :: args.publishers],
                seconds,
                [],
                tmp / f"load-{p}.ids",
            )
            for p in range(args.publishers)
        ]
        acked: list[str] = []
        load = threading.Thread(
            target=lambda: acked.extend(run_publishers(jobs)), name="bench-load"
        )
        load.start()
        time.sleep(3)  # let the background load reach its rate
        engine_p50, engine_p99, base_p50, base_p99, lost = [], [], [], [], 0
        probe = 1
        for r in range(rounds):
            ours: list[float] = []
            base: list[float] = []
            for _ in range(args.probes):
                sent = time.time()
                key, _ = crowded(probe * 7919)
                got = receiver.wait(key, sent, 5.0)
                if got is None:
                    lost += 1
                else:
                    ours.append(got - sent)
                tag = f"baseline-{uuid.uuid4().hex[:8]}"
                sent = time.time()
                client.publish(baseline_topic, json.dumps({"probe": tag}).encode(), qos=1)
                got = receiver.wait(tag, sent, 5.0)
                if got is not None:
                    base.append(got - sent)
                probe += 1
                time.sleep(args.interval)
            engine_p50.append(_percentile(ours, 50) * 1000)
            engine_p99.append(_percentile(ours, 99) * 1000)
            base_p50.append(_percentile(base, 50) * 1000)
            base_p99.append(_percentile(base, 99) * 1000)
            say(
                f"round {r + 1}/{rounds}: alert p50 {engine_p50[-1]:.1f} ms p99 "
                f"{engine_p99[-1]:.1f} ms | baseline (MQTT hop + webhook POST) p50 "
                f"{base_p50[-1]:.1f} ms p99 {base_p99[-1]:.1f} ms"
            )
        load.join()
    finally:
        client.close()
        engine.send_signal(signal.SIGTERM)
        try:
            engine.wait(20)
        except subprocess.TimeoutExpired:
            engine.kill()
            engine.wait()
        log.close()
    p99 = statistics.median(engine_p99)
    result = {
        "benchmark": "alerts",
        "cameras": args.cameras,
        "messages_per_s": args.cameras,
        "load_messages_acked": len(acked),
        "load_seconds": round(seconds, 1),
        "probes": rounds * args.probes,
        "lost": lost,
        "p50_ms": round(statistics.median(engine_p50), 1),
        "p99_ms": round(p99, 1),
        "baseline_p50_ms": round(statistics.median(base_p50), 1),
        "baseline_p99_ms": round(statistics.median(base_p99), 1),
        "target_p99_ms": 1000,
        "met": p99 < 1000 and lost == 0,
        "machine": f"{os.cpu_count()} cpus, shared: figures are noisy",
    }
    say(
        f"alert latency (median of {rounds} rounds): p50 {result['p50_ms']} ms, p99 "
        f"{result['p99_ms']} ms (target p99 < 1000 ms), lost {lost}; baseline p50 "
        f"{result['baseline_p50_ms']} ms p99 {result['baseline_p99_ms']} ms"
    )
    return result


def _post(url: str, payload: bytes) -> None:
    import urllib.request

    request = urllib.request.Request(
        f"{url}/baseline", data=payload, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        response.read()
