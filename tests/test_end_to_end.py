"""The whole path on real parts: real video → edge → mosquitto → ingest → PostgreSQL → alerts → web.

Every component runs as the `crowdwatch` command an operator would start, in its own process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import cv2
import httpx
import psycopg
import pytest
import yaml
from cli_processes import crowdwatch
from factories import config_dict, site_dict
from pets import pets_truth_counts

from crowdwatch.contracts.config import MqttConfig
from crowdwatch.demo.runner import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.data]

CLIP_FRAMES = 40  # 4 s of the PETS walkway at 10 fps
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60.0) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.3)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what}")


@pytest.fixture
def pets_clip(shared_dir: Path, tmp_path: Path) -> Path:
    """The first seconds of the PETS 2009 video as a file of their own."""
    source = cv2.VideoCapture(str(shared_dir / "data" / "pets2009_s2l1" / "vtest.avi"))
    clip = tmp_path / "pets_clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (768, 576))
    try:
        for _ in range(CLIP_FRAMES):
            ok, frame = source.read()
            assert ok
            writer.write(frame)
    finally:
        writer.release()
        source.release()
    return clip


@pytest.fixture
def district(
    tmp_path: Path, pets_clip: Path, mqtt_config: MqttConfig, db_url: str
) -> tuple[Path, int]:
    """A config file: one bus stop on the real clip, one simulated beach; and the web port."""
    real = site_dict("stop-real", source=str(pets_clip), capacity=4)
    real["cameras"][0]["loop"] = True  # keeps the camera live until the test stops it
    beach = site_dict("beach-sim", capacity=500)
    beach["kind"] = "beach"
    raw: dict[str, Any] = config_dict(real, beach)
    port = free_port()
    raw["mqtt"] = mqtt_config.model_dump()
    raw["database"] = {"url": db_url}
    raw["edge"] = {"interval_s": 1.0}
    raw["web"] = {"host": "127.0.0.1", "port": port}
    raw["alerts"] = {
        "evaluate_every_s": 0.5,
        "stale_after_s": 3600,
        "rules": [
            {
                "id": "crowded",
                "metric": "occupancy_ratio",
                "fire_at": 0.5,
                "clear_at": 0.25,
                "site_kinds": ["bus_stop"],
            }
        ],
    }
    path = tmp_path / "district.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    return path, port


def start(
    procs: dict[str, subprocess.Popen[bytes]], tmp_path: Path, name: str, config: Path
) -> subprocess.Popen[bytes]:
    log = (tmp_path / f"{name}.log").open("wb")
    proc = subprocess.Popen(
        crowdwatch(name, "--config", str(config)),
        stdout=log,
        stderr=subprocess.STDOUT,
        env={k: v for k, v in os.environ.items() if k != "CROWDWATCH_DATABASE_URL"},
    )
    log.close()
    procs[name] = proc
    return proc


def test_real_video_to_alert_and_api(
    district: tuple[Path, int],
    processes: dict[str, subprocess.Popen[bytes]],
    tmp_path: Path,
    db_url: str,
    shared_dir: Path,
) -> None:
    config, port = district
    upgrade = subprocess.run(
        crowdwatch("db", "upgrade", "--config", str(config)), capture_output=True, text=True
    )
    assert upgrade.returncode == 0, upgrade.stderr
    for name in ("ingest", "alerts", "web"):
        start(processes, tmp_path, name, config)
    api = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{api}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for("the web server", healthy)

    edge = start(processes, tmp_path, "edge", config)

    # The first pass over the clip reached the database, once per interval, with the right counts.
    with psycopg.connect(db_url, autocommit=True) as conn:

        def rows() -> list[tuple[Any, ...]] | None:
            found = conn.execute(
                "SELECT ts, count FROM zone_counts"
                " WHERE site_id = 'stop-real' AND zone_id = 'platform' ORDER BY ts LIMIT %s",
                (CLIP_FRAMES // 10,),
            ).fetchall()
            return found if len(found) == CLIP_FRAMES // 10 else None

        first_pass = wait_for("the clip's counts in zone_counts", rows, timeout=60)
        truth = pets_truth_counts(shared_dir)
        most = max(truth[f] for f in range(CLIP_FRAMES))
        assert all(0 < count <= most + 1 for _, count in first_pass), (first_pass, most)
        # Each interval reports the people in its last frame: 9, 19, 29, 39.
        for (_, count), frame in zip(first_pass, range(9, CLIP_FRAMES, 10), strict=True):
            assert abs(count - truth[frame]) <= 1, (frame, count, truth[frame])

        # The API shows the real camera's latest count, the one stored for its timestamp.
        def site() -> dict[str, Any] | None:
            body = httpx.get(f"{api}/api/sites/stop-real", timeout=5).json()
            return body if body.get("count") is not None else None

        body = wait_for("the real camera's count in /api/sites", site)
        stored = conn.execute(
            "SELECT count FROM zone_counts WHERE site_id = 'stop-real' AND ts = %s",
            (body["ts"],),
        ).fetchone()
        assert stored is not None and body["count"] == stored[0] > 0
        assert body["capacity"] == 4 and body["status"] == "ok"

    sites = {s["id"]: s for s in httpx.get(f"{api}/api/sites", timeout=5).json()}
    assert set(sites) == {"stop-real", "beach-sim"}
    assert sites["beach-sim"]["count"] is None and sites["beach-sim"]["status"] == "no_data"

    def alert() -> list[dict[str, Any]] | None:
        active = httpx.get(f"{api}/api/alerts", timeout=5).json()
        return [a for a in active if a["site_id"] == "stop-real"] or None

    fired = wait_for("the crowding alert", alert, timeout=30)
    assert fired[0]["rule_id"] == "crowded"
    assert fired[0]["value"] >= 0.5
    with psycopg.connect(db_url) as conn:
        keys = conn.execute("SELECT alert_key, state FROM alerts WHERE site_id = 'stop-real'")
        assert keys.fetchall() == [("stop-real/platform/crowded", "firing")]

    # A stopped camera is offline, never "0 people".
    edge.send_signal(signal.SIGTERM)
    assert edge.wait(30) == 0, (tmp_path / "edge.log").read_text()[-2000:]

    def offline() -> dict[str, Any] | None:
        body = httpx.get(f"{api}/api/sites/stop-real", timeout=5).json()
        return body if body["status"] == "offline" else None

    assert wait_for("the stopped camera shown offline", offline)["count"] is None
