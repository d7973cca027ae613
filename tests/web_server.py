"""The web app served for real: ``run_web`` on a free port in a thread, and its config.

The ``serve`` fixture (registered in conftest.py) starts the app for a test and stops it
after; Starlette's TestClient warns (deprecated httpx use) and the suite turns warnings into
errors, so the tests talk to a real uvicorn with httpx.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest
from db_rows import alert_message, insert_firing
from factories import config_dict, make_config, site_dict

from crowdwatch.contracts.config import CrowdwatchConfig
from crowdwatch.dashboards.passwords import hash_password
from crowdwatch.dashboards.web import run_web
from crowdwatch.storage.migrate import upgrade

DEAD_DB = "postgresql://postgres@127.0.0.1:1/nowhere"


def beach_dict() -> dict[str, Any]:
    beach = site_dict("beach-a", capacity=200)
    beach["kind"] = "beach"
    beach["name"] = {"zh": "甲海滩", "en": "Beach A"}
    beach["department"] = "culture_tourism"
    zone = beach["cameras"][0]["zones"][0]
    north = {**zone, "id": "north", "name": {"zh": "北区", "en": "North"}, "capacity": 100}
    south = {**zone, "id": "south", "name": {"zh": "南区", "en": "South"}, "capacity": 100}
    beach["cameras"][0]["zones"] = [north, south]
    return beach


PASSWORD = "sunny-beach-42"
# A cheap scrypt cost: the tests log in many times; the format and the check are the same.
PASSWORD_HASH = hash_password(PASSWORD, n=16)
SECRET = "test-secret-0123456789abcdef"


def web_config(db_url: str = DEAD_DB, **web: Any) -> CrowdwatchConfig:
    raw = config_dict(site_dict("stop-a"), site_dict("stop-b"), beach_dict())
    raw["database"] = {"url": db_url}
    raw["web"] = {
        "users": [
            {"name": "li", "department": "transport", "password_hash": PASSWORD_HASH},
            {"name": "wang", "department": "culture_tourism", "password_hash": PASSWORD_HASH},
        ],
        "live_poll_s": 0.3,
        "heartbeat_s": 1.0,
        **web,
    }
    return make_config(raw)


Serve = Callable[[CrowdwatchConfig], httpx.Client]


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Iterator[Serve]:
    """Start ``run_web`` on a free port in a thread; stop it after the test."""
    monkeypatch.delenv("CROWDWATCH_DATABASE_URL", raising=False)
    monkeypatch.setenv("CROWDWATCH_WEB_SECRET", SECRET)
    stops: list[tuple[threading.Event, threading.Thread, httpx.Client]] = []

    def start(config: CrowdwatchConfig) -> httpx.Client:
        stop = threading.Event()
        urls: queue.Queue[str] = queue.Queue()
        thread = threading.Thread(
            target=run_web,
            args=(config, "127.0.0.1", 0, stop),
            kwargs={"on_ready": urls.put},
            name="web",
        )
        thread.start()
        try:
            url = urls.get(timeout=20)
        except queue.Empty:
            stop.set()
            thread.join(timeout=20)
            raise
        http = httpx.Client(base_url=url, timeout=10)
        stops.append((stop, thread, http))
        return http

    yield start
    for stop, thread, http in stops:
        http.close()
        stop.set()
        thread.join(timeout=20)
        assert not thread.is_alive(), "run_web did not stop"


Desk = tuple[httpx.Client, psycopg.Connection]


@pytest.fixture
def desk(db_url: str, serve: Serve) -> Iterator[Desk]:
    """The guarded API served for real on a migrated database, and a connection to it."""
    config = web_config(db_url)
    upgrade(db_url, config)
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield serve(config), conn


def login(http: httpx.Client, name: str = "li") -> str:
    """Log ``name`` in with the test password; the CSRF token of the session."""
    response = http.post("/api/login", json={"name": name, "password": PASSWORD})
    assert response.status_code == 200, response.text
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=43200" in cookie
    csrf: str = response.json()["csrf"]
    return csrf


def fire(conn: psycopg.Connection, key: str = "stop-a/platform/crowded") -> int:
    """A firing alert in the database; its id."""
    row = insert_firing(conn, alert_message(key, ts=datetime.now(UTC)))
    assert row is not None
    return row.id


def events(response: httpx.Response) -> Iterator[tuple[str, Any]]:
    """(event, data) pairs of a Server-Sent Events response."""
    name, data = "message", ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and data:
            yield name, json.loads(data)
            name, data = "message", ""
