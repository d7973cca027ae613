"""`crowdwatch demo`: the README's first command brings the whole district up on one machine,
and hostile count messages on its broker do not bring it down."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from hostile import hostile_payloads

from crowdwatch.contracts.config import load_config
from crowdwatch.contracts.messages import TopicKind, camera_topic
from crowdwatch.dashboards.passwords import hash_password, verify_password
from crowdwatch.demo.runner import DemoOptions, _banner, _derive_config, free_port
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
    assert demo.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(demo.stdout or []), daemon=True)
    reader.start()
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
        _enter_every_page(f"http://127.0.0.1:{port}", "".join(lines))
        _publish_hostile_messages(tmp_path / "demo.yaml")
        # Ingest and alerts took them (a dead child stops the demo): the district still shows.
        time.sleep(3)
        assert demo.poll() is None, "the demo stopped after hostile count messages"
        body = httpx.get(f"http://127.0.0.1:{port}/api/sites", timeout=3).json()
        assert {s["id"] for s in body} == expected
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGINT)
        demo.wait(timeout=60)
        reader.join(timeout=10)
        demo.stdout.close()
    output = "".join(lines)
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


LOGIN = re.compile(r"^    (\w+) +(demo-[a-z-]+) / (\S+)$", re.MULTILINE)


def _enter_every_page(api: str, output: str) -> None:
    """The banner names every page and a login per department; each login enters /dispatch."""
    for page in ("/", "/wall", "/dispatch"):
        assert f"{api}{page}\n" in output, output[-2000:]
        assert httpx.get(f"{api}{page}", timeout=5).status_code == 200
    logins = {m.group(1): (m.group(2), m.group(3)) for m in LOGIN.finditer(output)}
    departments = {s.department.value for s in load_config(EXAMPLE).sites}
    assert set(logins) == departments, output[-2000:]
    for department, (name, password) in logins.items():
        with httpx.Client(base_url=api, timeout=10) as http:
            response = http.post("/api/login", json={"name": name, "password": password})
            assert response.status_code == 200, response.text
            assert response.json()["department"] == department
            assert http.get("/api/dispatch/alerts").status_code == 200


def test_demo_config_has_a_dispatcher_login_per_department(tmp_path: Path) -> None:
    options = DemoOptions(config_path=EXAMPLE)
    mqtt = {"host": "127.0.0.1", "port": 1883}
    config_path, logins = _derive_config(options, mqtt, 8090, None, tmp_path / "demo.yaml")
    config = load_config(config_path)
    departments = {s.department for s in config.sites}
    assert {login.department for login in logins} == departments
    users = {u.name: u for u in config.web.users}
    for login in logins:
        user = users[login.name]
        assert user.department is login.department
        assert verify_password(login.password, user.password_hash)
        assert login.password not in config_path.read_text(encoding="utf-8")
    # A second run gets new passwords.
    _, again = _derive_config(options, mqtt, 8090, None, tmp_path / "demo2.yaml")
    assert {a.password for a in again}.isdisjoint(login.password for login in logins)
    banner = _banner(
        "http://127.0.0.1:8090", logins, mqtt, "postgresql://x", config_path, tmp_path, None
    )
    for page in ("/", "/wall", "/dispatch"):
        assert f"http://127.0.0.1:8090{page}\n" in banner
    found = {m.group(2): m.group(3) for m in LOGIN.finditer(banner)}
    assert found == {login.name: login.password for login in logins}


def test_demo_keeps_the_configs_own_users(tmp_path: Path) -> None:
    raw = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    own = {
        "name": "demo-transport",
        "department": "transport",
        "password_hash": hash_password("x" * 8, n=16),
    }
    raw["web"]["users"] = [own]
    user_config = tmp_path / "mine.yaml"
    user_config.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    config_path, logins = _derive_config(
        DemoOptions(config_path=user_config), {}, 8090, None, tmp_path / "demo.yaml"
    )
    assert "demo-transport" not in {login.name for login in logins}
    users = {u.name: u for u in load_config(config_path).web.users}
    assert users["demo-transport"].password_hash == own["password_hash"]
    assert "demo-culture-tourism" in users


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
