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
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from crowdwatch.bench._alert_probes import (
    AlertProber,
    ProbeTimes,
    Receiver,
    percentile,
    probe_alerts,
)

SUMMARY = "alert latency: count published -> webhook received, p50/p99 with N cameras at 1 msg/s"
EXTRAS = ("server",)

THRESHOLD = 100
"""People that fire the bench rule; background counts stay below 40."""
PROBE_COUNT = 150
"""People in a probe: over the threshold."""


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


def run(args: argparse.Namespace) -> int:
    from crowdwatch.bench._services import bench_services

    def say(message: str) -> None:
        if not args.json:
            print(message, flush=True)

    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="cw-bench-alerts-") as tmp:
        pg, broker = bench_services(stack, args.database_url, args.broker, say)
        receiver = Receiver()
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
    receiver: Receiver,
    tmp: Path,
    say: Any,
) -> dict[str, Any]:
    from crowdwatch.bench._load import (
        PublisherJob,
        bench_district,
        camera_specs,
        run_publishers,
        save_district,
    )
    from crowdwatch.bench._procs import stop_process
    from crowdwatch.contracts.config import MqttConfig

    mqtt = MqttConfig(host=broker[0], port=broker[1], topic_prefix=f"bench{uuid.uuid4().hex[:8]}")
    raw = bench_district(args.cameras, 1, mqtt, db_url).model_dump(mode="json")
    raw["alerts"] = probe_alerts("queue", THRESHOLD, 50, receiver)
    config_path = tmp / "bench-alerts.yaml"
    config = save_district(raw, config_path, db_url, origin="bench")
    specs = camera_specs(config)

    log_path = tmp / "alerts.log"
    log = log_path.open("wb")
    engine = subprocess.Popen(
        [sys.executable, "-m", "crowdwatch", "alerts", "--config", str(config_path)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    prober = AlertProber(
        mqtt,
        specs,
        receiver,
        rule_id="queue",
        people=PROBE_COUNT,
        client_id=f"bench-probe-{uuid.uuid4().hex[:8]}",
    )

    def engine_runs() -> None:
        if engine.poll() is not None:
            raise RuntimeError(f"the alert engine did not answer; see {log_path}")

    try:
        say(f"waiting for the alert engine to take the lease ({args.cameras} cameras) ...")
        prober.wait_for_engine(60, engine_runs)
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
        for r in range(rounds):
            times = ProbeTimes()
            for _ in range(args.probes):
                prober.probe_pair(times)
                time.sleep(args.interval)
            lost += times.lost
            engine_p50.append(percentile(times.alerts, 50))
            engine_p99.append(percentile(times.alerts, 99))
            base_p50.append(percentile(times.baseline, 50))
            base_p99.append(percentile(times.baseline, 99))
            say(
                f"round {r + 1}/{rounds}: alert p50 {engine_p50[-1]:.1f} ms p99 "
                f"{engine_p99[-1]:.1f} ms | baseline (MQTT hop + webhook POST) p50 "
                f"{base_p50[-1]:.1f} ms p99 {base_p99[-1]:.1f} ms"
            )
        load.join()
    finally:
        prober.close()
        stop_process(engine, 20)
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
