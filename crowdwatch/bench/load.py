"""``crowdwatch bench load``: the whole server side under N simulated cameras, ramped up.

Each step is a fresh district of N cameras (``--zones`` zones each, one count and one status
message per camera every ``--interval`` seconds), a fresh database and topic prefix, and every
component as the process an operator starts: the simulated cameras (``--simulator fleet``,
the default: :mod:`crowdwatch.bench._fleet`, pre-encoded messages, 5,000 cameras a process,
spread over the interval; or ``--simulator simulate``: ``crowdwatch simulate``, one per 250
cameras, each publishing its slice in one burst per interval), ``crowdwatch ingest``
(with ``/metrics``), ``crowdwatch alerts`` (notifying a local webhook receiver) and
``crowdwatch web``; the broker is a real mosquitto and the database a real PostgreSQL
(private ones unless ``--broker``/``--database-url`` name running ones).  After a warm-up it
measures for ``--minutes``:

- **ingest lag**: the ingest's own ``crowdwatch_ingest_lag_seconds`` gauge (now minus the
  newest ``ts`` committed), scraped every 0.5 s as ``bench ingest``'s soak does.  ``simulate``
  publishes every camera in one burst per interval, so the gauge climbs between bursts: its
  floor is about one interval even for an instant ingest (the fleet's floor is a batch).
- **delivered**: messages/s the ingest received against the offered ``2 N / interval`` (the
  simulators are part of the system under test; one that cannot keep up fails the step).
- **alert latency**: as ``bench alerts``: one camera at a time gets a count over the bench
  rule's threshold (``for_s: 0``) and the time to the firing webhook is taken; the
  simulator's next count clears it.
- **web**: GETs of the endpoints the phone page and wall read (``/api/state``,
  ``/api/sites``, one site, its series, ``/api/alerts``), one after the other, all the time.
- **CPU and memory** of every process (:mod:`crowdwatch.bench._procs`; PostgreSQL with its
  backends, mosquitto found by its port), the simulators' own beside the rest (``simulate``).

A step *holds* when ingest lag p99 < 2 s, alert p99 < 1 s with no probe lost, at least 95 %
of the offered messages arrive and no web request fails.  The ramp goes from ``--cameras``
by ``--step`` up to ``--max-cameras`` and stops at the first step that does not hold; the
figure is the highest camera count held.

Baselines, measured in the same run: for alerts, the same two hops without the engine (a
message published to the broker, received by a subscriber that POSTs it to the same
receiver, interleaved with the probes); for the web, ``/healthz`` of the same server (the
framework and one ``SELECT 1``).  For the ingest there is no cheaper path to compare with in a
loaded run (``bench ingest`` measures its drain rate against raw ``COPY``), so the lag is
given as a ratio to its 2 s target, as the alert p99 is to its 1 s target.  The last stdout
line is one JSON object.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crowdwatch.bench._alert_probes import (
    AlertProber,
    ProbeTimes,
    Receiver,
    percentile,
    probe_alerts,
)
from crowdwatch.bench._procs import ProcessGroup, listener_pid, stop_process
from crowdwatch.bench.ingest import _scrape

SUMMARY = "N simulated cameras through broker, ingest, alerts, web: highest N held, CPU/memory"
EXTRAS = ("server",)

LAG_TARGET_S = 2.0
ALERT_TARGET_MS = 1000.0
DELIVERED_TARGET = 0.95
PROBE_COUNT = 2000
"""People in a probe; simulated zones (capacity 100) stay far below the rule's 1000."""
WARMUP_S = 5.0
FLEET_CAMERAS = 5000
"""Cameras per fleet process (``--simulator fleet``): ~2,000 messages/s at 5 s each."""
SIMULATE_CAMERAS = 250
"""Cameras per ``crowdwatch simulate`` process (``--simulator simulate``)."""
START_TIMEOUT_S = 300.0
"""ingest, alerts and web each load and sync the district at start: ~25 s for 5,000 cameras
on a busy 2-core box, and they start together."""

Say = Callable[[str], None]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--cameras", type=int, default=1000, help="first step (default 1000)")
    parser.add_argument(
        "--max-cameras", type=int, help="ramp up to this many cameras (default: --cameras only)"
    )
    parser.add_argument("--step", type=int, default=1000, help="cameras added per step")
    parser.add_argument(
        "--minutes", type=float, default=10.0, help="measured minutes per step (default 10)"
    )
    parser.add_argument(
        "--interval", type=float, default=1.0, help="seconds between a camera's messages"
    )
    parser.add_argument("--zones", type=int, default=4, help="zones per camera (default 4)")
    parser.add_argument(
        "--simulator",
        choices=["fleet", "simulate"],
        default="fleet",
        help="fleet: pre-encoded messages, many cameras a process (default); simulate: the "
        "`crowdwatch simulate` command, its curves and pydantic messages",
    )
    parser.add_argument(
        "--cameras-per-simulator",
        type=int,
        help="cameras per simulator process (default 5000 for fleet, 250 for simulate)",
    )
    parser.add_argument(
        "--probe-every", type=float, default=0.5, help="seconds between alert probes"
    )
    parser.add_argument(
        "--web-every", type=float, default=0.25, help="pause between rounds of web requests"
    )
    parser.add_argument(
        "--database-url", help="admin URL of a PostgreSQL to create scratch databases on"
    )
    parser.add_argument("--broker", metavar="HOST:PORT", help="an MQTT 5 broker to use")


def run(args: argparse.Namespace) -> int:
    from crowdwatch.bench._services import bench_services

    def say(message: str) -> None:
        if not args.json:
            print(message, flush=True)

    ladder = _ladder(args)
    if isinstance(ladder, str):
        print(f"crowdwatch bench load: error: {ladder}", file=sys.stderr)
        return 2
    steps: list[dict[str, Any]] = []
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="cw-bench-load-") as tmp:
        pg, broker = bench_services(stack, args.database_url, args.broker, say)
        receiver = Receiver()
        stack.callback(receiver.close)
        for cameras in ladder:
            say(f"--- {cameras} cameras for {args.minutes:g} min ---")
            folder = Path(tmp) / f"step-{cameras}"
            folder.mkdir()
            step = _step(args, cameras, pg, broker, receiver, folder, say)
            steps.append(step)
            say(_process_table(step))
            if not step["held"]:
                say(f"{cameras} cameras not held: {'; '.join(step['failed'])}")
                break
    held = [s["cameras"] for s in steps if s["held"]]
    figures: dict[str, Any] = {
        "benchmark": "load",
        "held_cameras": max(held) if held else 0,
        "interval_s": args.interval,
        "zones_per_camera": args.zones,
        "minutes_per_step": args.minutes,
        "targets": {
            "lag_p99_s": LAG_TARGET_S,
            "alert_p99_ms": ALERT_TARGET_MS,
            "delivered_ratio": DELIVERED_TARGET,
        },
        "steps": steps,
        "machine": _machine(),
    }
    say(_summary_table(steps))
    say(
        f"highest camera count held: {figures['held_cameras']} "
        f"(ingest lag p99 < {LAG_TARGET_S:g} s, alert p99 < {ALERT_TARGET_MS:g} ms)"
    )
    print(json.dumps(figures, separators=(",", ":")))
    return 0


def _ladder(args: argparse.Namespace) -> list[int] | str:
    """The camera counts of the steps, or what is wrong with the arguments."""
    top = args.cameras if args.max_cameras is None else args.max_cameras
    if args.cameras < 10:
        return "--cameras must be at least 10 (alert probes take turns over the cameras)"
    if top < args.cameras or args.step < 1:
        return "--max-cameras must be at least --cameras, and --step positive"
    if args.cameras_per_simulator is not None and args.cameras_per_simulator < 1:
        return "--cameras-per-simulator must be positive"
    if args.minutes <= 0 or args.interval <= 0 or args.probe_every <= 0:
        return "--minutes, --interval and --probe-every must be positive"
    if args.cameras * args.probe_every < 3 * args.interval:
        # A camera probed again before its simulator cleared the alert would not fire again.
        return "too few cameras for --probe-every: a camera's turn must come after 3 intervals"
    ladder = list(range(args.cameras, top + 1, args.step))
    return ladder if ladder[-1] == top else [*ladder, top]


# --- one step --------------------------------------------------------------------------------


@dataclass
class _Processes:
    """The components of one step, stopped (simulators first) when ``stack`` closes."""

    stack: ExitStack
    folder: Path
    procs: dict[str, list[subprocess.Popen[bytes]]] = field(default_factory=dict)

    def start(
        self, name: str, argv: list[str], timeout_s: float = 30.0, module: str | None = None
    ) -> None:
        """Start ``crowdwatch ARGV`` (or ``python -m MODULE ARGV``) as component ``name``."""
        log_path = self.folder / f"{name}-{len(self.procs.get(name, []))}.log"
        command = ["-m", module] if module else ["-m", "crowdwatch", "--log-level", "WARNING"]
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, *command, *argv],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.procs.setdefault(name, []).append(proc)
        self.stack.callback(stop_process, proc, timeout_s)

    def pids(self, name: str) -> list[int]:
        return [p.pid for p in self.procs.get(name, [])]

    def tail(self, name: str, index: int = 0) -> str:
        """The end of a component's log."""
        log = (self.folder / f"{name}-{index}.log").read_text(errors="replace")
        return log[-2000:]

    def check(self) -> None:
        """Raise when a component exited, with the tail of its log."""
        for name, procs in self.procs.items():
            for i, proc in enumerate(procs):
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"crowdwatch {name} exited with {proc.returncode}:\n{self.tail(name, i)}"
                    )


def _step(
    args: argparse.Namespace,
    cameras: int,
    pg: Any,
    broker: tuple[str, int],
    receiver: Receiver,
    folder: Path,
    say: Say,
) -> dict[str, Any]:
    import yaml

    from crowdwatch.bench._load import bench_district, camera_specs, save_district
    from crowdwatch.contracts.config import MqttConfig
    from crowdwatch.devservices.host import free_port

    db_url = pg.create_database()
    try:
        mqtt = MqttConfig(
            host=broker[0], port=broker[1], topic_prefix=f"load{uuid.uuid4().hex[:8]}"
        )
        raw = bench_district(cameras, args.zones, mqtt, db_url).model_dump(mode="json")
        raw["edge"] = {**raw["edge"], "interval_s": args.interval}
        raw["alerts"] = probe_alerts("load", 1000, 500, receiver)
        config_path = folder / "district.yaml"
        config = save_district(raw, config_path, db_url, origin="bench load")
        sites = raw["sites"]
        per_process = args.cameras_per_simulator or (
            FLEET_CAMERAS if args.simulator == "fleet" else SIMULATE_CAMERAS
        )
        simulators = min(len(sites), math.ceil(cameras / per_process))
        slices = []
        for k in range(simulators):
            path = folder / f"simulator-{k}.yaml"
            path.write_text(yaml.safe_dump({**raw, "sites": sites[k::simulators]}), "utf-8")
            slices.append(path)
        metrics_port, web_port = free_port(), free_port()
        with ExitStack() as stack:
            procs = _Processes(stack, folder)
            procs.start("ingest", ["ingest", "--config", str(config_path),
                                   "--worker", f"load-{uuid.uuid4().hex[:6]}",
                                   "--metrics-port", str(metrics_port)])  # fmt: skip
            procs.start("alerts", ["alerts", "--config", str(config_path)])
            procs.start("web", ["web", "--config", str(config_path),
                                "--host", "127.0.0.1", "--port", str(web_port)])  # fmt: skip
            say(f"starting ingest, alerts, web and {simulators} simulator(s) ...")
            if _scrape(metrics_port, wait_s=START_TIMEOUT_S, proc=procs.procs["ingest"][0]) is None:
                procs.check()
                raise RuntimeError(
                    f"crowdwatch ingest did not serve /metrics:\n{procs.tail('ingest')}"
                )
            web = f"http://127.0.0.1:{web_port}"
            _wait_for_web(web, procs)
            for k, path in enumerate(slices):
                if args.simulator == "fleet":
                    procs.start("simulate", [str(path)], 90, module="crowdwatch.bench._fleet")
                else:
                    argv = ["simulate", "--config", str(path), "--seed", str(k)]
                    procs.start("simulate", argv, 90)
            prober = AlertProber(
                mqtt,
                camera_specs(config),
                receiver,
                rule_id="load",
                people=PROBE_COUNT,
                client_id=f"bench-load-probe-{uuid.uuid4().hex[:8]}",
            )
            stack.callback(prober.close)
            prober.wait_for_engine(START_TIMEOUT_S, procs.check)
            _wait_for_simulators(metrics_port, cameras, procs)
            time.sleep(WARMUP_S)  # the simulators' first bursts, the engine's first rounds
            procs.check()
            site = config.sites[0].id
            paths = ["/api/state", "/api/sites", f"/api/sites/{site}",
                     f"/api/sites/{site}/series?minutes=60", "/api/alerts"]  # fmt: skip
            groups = _groups(procs, broker, pg)
            measured = _measure(args, metrics_port, web, paths, prober, groups, procs, say)
        figures = {
            "cameras": cameras,
            "simulator": args.simulator,
            "simulators": simulators,
            **measured,
        }
        figures["offered_msgs_per_s"] = round(2 * cameras / args.interval, 1)
        figures["delivered_ratio"] = round(
            figures["delivered_msgs_per_s"] / figures["offered_msgs_per_s"], 3
        )
        return _verdict(figures)
    finally:
        pg.drop_database(db_url)


def _wait_for_simulators(metrics_port: int, cameras: int, procs: _Processes) -> None:
    """Until the ingest has had one round of every camera (count and status): a simulator
    loading a big district takes tens of seconds, which must not count as undelivered."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while (_scrape(metrics_port) or {}).get("crowdwatch_ingest_messages_total", 0) < 2 * cameras:
        procs.check()
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the simulators did not send one round of {cameras} cameras in "
                f"{START_TIMEOUT_S:g} s:\n{procs.tail('simulate')}"
            )
        time.sleep(0.5)


def _wait_for_web(base: str, procs: _Processes) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        procs.check()
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"crowdwatch web did not answer {base}/healthz:\n{procs.tail('web')}"
            )
        time.sleep(0.3)


def _groups(procs: _Processes, broker: tuple[str, int], pg: Any) -> list[ProcessGroup]:
    from psycopg.conninfo import conninfo_to_dict

    groups = [
        ProcessGroup(name, procs.pids(name)) for name in ("ingest", "alerts", "web", "simulate")
    ]
    broker_pid = listener_pid(broker[1]) if broker[0] in ("127.0.0.1", "localhost") else None
    if broker_pid is not None:
        groups.append(ProcessGroup("mosquitto", [broker_pid]))
    info = conninfo_to_dict(pg.admin_url)
    if str(info.get("host", "127.0.0.1")) in ("127.0.0.1", "localhost"):
        pg_pid = listener_pid(int(info.get("port") or 5432))
        if pg_pid is not None:
            groups.append(ProcessGroup("postgres", [pg_pid], tree=True))
    groups.append(ProcessGroup("bench", [os.getpid()]))
    return groups


# --- measuring -------------------------------------------------------------------------------


def _measure(
    args: argparse.Namespace,
    metrics_port: int,
    web: str,
    paths: list[str],
    prober: AlertProber,
    groups: list[ProcessGroup],
    procs: _Processes,
    say: Say,
) -> dict[str, Any]:
    seconds = args.minutes * 60
    stop = threading.Event()
    scrapes: list[tuple[float, dict[str, float]]] = []
    timings: dict[str, list[float]] = {p: [] for p in [*paths, "/healthz"]}
    errors: dict[str, int] = dict.fromkeys(timings, 0)
    failures: list[BaseException] = []

    def sample() -> None:
        tick = 0
        while not stop.wait(0.5):
            values = _scrape(metrics_port)
            if values is not None:
                scrapes.append((time.monotonic(), values))
            if tick % 4 == 0:
                for group in groups:
                    group.sample()
            tick += 1

    def poll_web() -> None:
        while not stop.is_set():
            for path in [*paths, "/healthz"]:
                ms = _get(f"{web}{path}")
                if ms is None:
                    errors[path] += 1
                else:
                    timings[path].append(ms)
            stop.wait(args.web_every)

    def guarded(body: Callable[[], None]) -> Callable[[], None]:
        def target() -> None:
            try:
                body()
            except BaseException as exc:
                failures.append(exc)

        return target

    for group in groups:
        group.start()
    threads = [
        threading.Thread(target=guarded(sample), name="bench-load-sampler"),
        threading.Thread(target=guarded(poll_web), name="bench-load-web"),
    ]
    for thread in threads:
        thread.start()
    probes = ProbeTimes()
    ours, base = probes.alerts, probes.baseline
    started = time.monotonic()
    next_report = started + 60
    try:
        while time.monotonic() - started < seconds:
            prober.probe_pair(probes)
            if time.monotonic() >= next_report:
                procs.check()
                lag = scrapes[-1][1].get("crowdwatch_ingest_lag_seconds") if scrapes else None
                say(
                    f"  {time.monotonic() - started:4.0f} s: lag {lag if lag is None else round(lag, 2)}"
                    f" s, alert p99 so far {_p(ours, 99)} ms, lost {probes.lost}"
                )
                next_report += 60
            time.sleep(args.probe_every)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    ended = time.monotonic()
    for group in groups:
        group.sample()
    if failures:
        raise failures[0]
    window = [(t, v) for t, v in scrapes if started <= t <= ended]
    lags = [
        lag
        for _, v in window
        if (lag := v.get("crowdwatch_ingest_lag_seconds")) is not None and not math.isnan(lag)
    ]
    if len(window) < 2 or not lags:
        raise RuntimeError("no ingest lag samples: did the ingest write anything?")
    (t0, first), (t1, last) = window[0], window[-1]
    probes_between = sum(1 for t in prober.sent_at if t0 <= t <= t1)
    received = last["crowdwatch_ingest_messages_total"] - first["crowdwatch_ingest_messages_total"]
    api = [ms for p in paths for ms in timings[p]]
    return {
        "seconds": round(ended - started, 1),
        "delivered_msgs_per_s": round((received - probes_between) / (t1 - t0), 1),
        "lag_samples": len(lags),
        "lag_p50_s": round(statistics.median(lags), 3),
        "lag_p99_s": round(percentile(lags, 99), 3),
        "lag_max_s": round(max(lags), 3),
        "lag_ratio": round(percentile(lags, 99) / LAG_TARGET_S, 3),
        "lag_floor_s": args.interval,
        "ingest_queued_end": last.get("crowdwatch_ingest_queued"),
        "alert_probes": len(ours) + probes.lost,
        "alert_lost": probes.lost,
        "alert_p50_ms": _p(ours, 50),
        "alert_p99_ms": _p(ours, 99),
        "alert_ratio": None if not ours else round(percentile(ours, 99) / ALERT_TARGET_MS, 3),
        "alert_baseline_p50_ms": _p(base, 50),
        "alert_baseline_p99_ms": _p(base, 99),
        "web": {
            path: {
                "requests": len(timings[path]) + errors[path],
                "errors": errors[path],
                "p50_ms": _p(timings[path], 50),
                "p99_ms": _p(timings[path], 99),
            }
            for path in timings
        },
        "web_api_p50_ms": _p(api, 50),
        "web_api_p99_ms": _p(api, 99),
        "web_errors": sum(errors[p] for p in paths),
        "web_baseline_p50_ms": _p(timings["/healthz"], 50),
        "web_baseline_p99_ms": _p(timings["/healthz"], 99),
        "processes": {group.name: group.figures() for group in groups},
    }


def _get(url: str) -> float | None:
    """ms to a 200 with the whole (gzip-accepted, as from a phone) body; None on any failure."""
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
            ok = response.status == 200
    except (OSError, http.client.HTTPException):
        return None
    return (time.perf_counter() - started) * 1000 if ok else None


def _p(values: list[float], q: float) -> float | None:
    return round(percentile(values, q), 1) if values else None


def _verdict(step: dict[str, Any]) -> dict[str, Any]:
    failed = []
    if step["lag_p99_s"] >= LAG_TARGET_S:
        failed.append(f"ingest lag p99 {step['lag_p99_s']} s >= {LAG_TARGET_S:g} s")
    if step["alert_p99_ms"] is None or step["alert_p99_ms"] >= ALERT_TARGET_MS:
        failed.append(f"alert p99 {step['alert_p99_ms']} ms >= {ALERT_TARGET_MS:g} ms")
    if step["alert_lost"]:
        failed.append(f"{step['alert_lost']} alert probes got no notification within 5 s")
    if step["delivered_ratio"] < DELIVERED_TARGET:
        failed.append(
            f"only {step['delivered_ratio']:.0%} of the offered messages reached the ingest"
        )
    if step["web_errors"]:
        failed.append(f"{step['web_errors']} web requests failed")
    return {**step, "held": not failed, "failed": failed}


# --- output ----------------------------------------------------------------------------------


def _summary_table(steps: list[dict[str, Any]]) -> str:
    rows = [
        (
            "cameras",
            "sims",
            "msg/s offered (got)",
            "lag p50/p99 s",
            "alert p50/p99 ms (bare hop)",
            "web p50/p99 ms (/healthz)",
            "held",
        )
    ]
    for s in steps:
        rows.append(
            (
                str(s["cameras"]),
                str(s["simulators"]),
                f"{s['offered_msgs_per_s']:g} ({s['delivered_ratio']:.1%})",
                f"{s['lag_p50_s']}/{s['lag_p99_s']}",
                f"{s['alert_p50_ms']}/{s['alert_p99_ms']} "
                f"({s['alert_baseline_p50_ms']}/{s['alert_baseline_p99_ms']})",
                f"{s['web_api_p50_ms']}/{s['web_api_p99_ms']} "
                f"({s['web_baseline_p50_ms']}/{s['web_baseline_p99_ms']})",
                "yes" if s["held"] else "no",
            )
        )
    return _table(rows)


def _process_table(step: dict[str, Any]) -> str:
    rows = [("process", "n", "cpu % (1 core)", "mem MB max (end)")]
    for name, p in step["processes"].items():
        rows.append(
            (
                name,
                str(p["processes"]),
                str(p["cpu_percent"]),
                f"{p['mem_mb_max']} ({p['mem_mb_end']})",
            )
        )
    return _table(rows)


def _table(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
    return "\n".join(line.rstrip() for line in lines)


def _machine() -> str:
    try:
        meminfo = Path("/proc/meminfo").read_text()
        total_gb = int(meminfo.split()[1]) / 1024 / 1024
    except (OSError, IndexError, ValueError):
        total_gb = float("nan")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{os.cpu_count()} cpus, {total_gb:.1f} GB, load {load:.1f} at the end: figures are noisy"
    )
