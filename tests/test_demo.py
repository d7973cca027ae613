"""`crowdwatch demo`: the README's first command brings the whole district up on one machine,
and hostile count messages on its broker do not bring it down."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from hostile import hostile_payloads

from crowdwatch.contracts.config import load_config
from crowdwatch.contracts.messages import TopicKind, camera_topic
from crowdwatch.demo.runner import free_port
from crowdwatch.mqtt.client import MqttClient

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "configs" / "district.example.yaml"


@pytest.mark.e2e
@pytest.mark.data
def test_demo_shows_every_site_within_60_s(tmp_path: Path, shared_dir: Path) -> None:
    port = free_port()
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "crowdwatch",
            "demo",
            "--config",
            str(EXAMPLE),
            "--workdir",
            str(tmp_path),
            "--port",
            str(port),
            "--duration",
            "300",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    expected = {s.id for s in load_config(EXAMPLE).sites}
    real_site = "stop-xiwan-terminus"
    sites: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and demo.poll() is None:
            try:
                body = httpx.get(f"http://127.0.0.1:{port}/api/sites", timeout=3).json()
                sites = {s["id"]: s for s in body}
            except (httpx.HTTPError, ValueError):
                pass
            complete = set(sites) == expected and all(
                s["count"] is not None for s in sites.values()
            )
            if complete and sites[real_site]["count"] > 0:
                break
            time.sleep(1)
        assert set(sites) == expected, f"sites shown: {sorted(sites)}"
        missing = sorted(i for i, s in sites.items() if s["count"] is None)
        assert not missing, f"no count within 60 s for {missing}"
        assert sites[real_site]["count"] > 0, sites[real_site]
        _publish_hostile_messages(tmp_path / "demo.yaml")
        # Ingest and alerts took them (a dead child stops the demo): the district still shows.
        time.sleep(3)
        assert demo.poll() is None, "the demo stopped after hostile count messages"
        body = httpx.get(f"http://127.0.0.1:{port}/api/sites", timeout=3).json()
        assert {s["id"] for s in body} == expected
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGINT)
        output, _ = demo.communicate(timeout=60)
    assert demo.returncode == 0, output[-3000:]
    assert f"phone page      http://127.0.0.1:{port}/" in output
    assert output.rstrip().endswith("demo stopped"), output[-1000:]


def test_demo_refuses_missing_footage(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "crowdwatch",
            "demo",
            "--config",
            str(EXAMPLE),
            "--video",
            str(tmp_path / "nope.avi"),
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"--video {tmp_path / 'nope.avi'}: no such file" in result.stderr


def _publish_hostile_messages(config_path: Path) -> None:
    """Every payload of tests/hostile.py on a real camera's counts topic of the demo's broker."""
    config = load_config(config_path)
    site, camera = next((s, c) for s, c in config.cameras() if not c.simulated)
    client = MqttClient(config.mqtt, "test-demo-hostile")
    client.connect()
    try:
        for hostile in hostile_payloads(datetime.now(UTC)):
            topic = camera_topic(config.mqtt.topic_prefix, site.id, camera.id, TopicKind.COUNTS)
            client.publish(topic, hostile.payload, timeout=10)
    finally:
        client.close()
