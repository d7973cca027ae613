"""The web server against a hostile client: secrets, notes, streams, sessions and connections.

Each test here stands for one finding of the outside probe (issue 15) and failed before its fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from web_server import PASSWORD, Desk, Serve, events, fire, login, web_config

from crowdwatch.contracts.errors import StorageError
from crowdwatch.dashboards.live import LiveHub
from crowdwatch.dashboards.passwords import hash_password
from crowdwatch.dashboards.snapshot import Snapshot
from crowdwatch.storage.db import redact_dsn

ROOT = Path(__file__).resolve().parents[1]

SECRET_PW = "s3cr3t-Pw_9"

# A database that is away, written in every form libpq takes a password in.
DEAD_DSNS = [
    f"postgresql://cw_web:{SECRET_PW}@127.0.0.1:1/nowhere",
    f"postgresql://127.0.0.1:1/nowhere?user=cw_web&password={SECRET_PW}",
    f"host=127.0.0.1 port=1 dbname=nowhere user=cw_web password={SECRET_PW}",
    f"host=127.0.0.1 port=1 dbname=nowhere user=cw_web password='{SECRET_PW} x'",
]


@pytest.mark.parametrize(
    ("text", "dsn", "expected"),
    [
        ("postgresql://u:pw@h/db", None, "postgresql://u:***@h/db"),
        (
            "postgresql://h/db?user=u&password=pw&sslmode=require",
            None,
            "postgresql://h/db?user=u&password=***&sslmode=require",
        ),
        ("host=h password=pw user=u", None, "host=h password=*** user=u"),
        ("host=h password = 'p w\\' x' user=u", None, "host=h password = *** user=u"),
        ("host=h sslpassword=k passwd=typo", None, "host=h sslpassword=*** passwd=***"),
        (
            'missing "=" after "pw" in connection info string',
            "host=h password=pw junk",
            'missing "=" after "***" in connection info string',
        ),
        ("host=h user=u dbname=cw", None, "host=h user=u dbname=cw"),
    ],
)
def test_every_form_of_a_database_password_is_masked(
    text: str, dsn: str | None, expected: str
) -> None:
    assert redact_dsn(text, dsn) == expected


@pytest.mark.parametrize("dsn", DEAD_DSNS)
def test_a_database_outage_shows_no_connection_details_to_anyone(
    dsn: str,
    serve: Serve,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    http = serve(web_config(dsn))

    answers = [http.get(path) for path in ["/healthz", "/api/sites", "/api/state", "/api/alerts"]]
    with http.stream("GET", "/api/stream") as response:
        _, state = next(events(response))

    for answer in answers:
        assert answer.status_code == 503, answer.text
        body = answer.json()
        said = body["database"]["detail"] if "sites" in body else body["error"]  # /api/state
        assert said == "database unavailable"
        for leak in (SECRET_PW, "cw_web", "127.0.0.1", "nowhere"):
            assert leak not in answer.text, (answer.request.url, answer.text)
    assert state["database"] == {"ok": False, "detail": "database unavailable", "as_of": None}
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "database unavailable" in logged  # the operator still learns why, redacted
    assert SECRET_PW not in logged


# Item 11: a NUL in a note is the client's mistake (422), not a database outage (503).


@pytest.mark.parametrize(
    ("note", "status", "message"),
    [
        ("gate\x00closed", 422, "note: Value error, must not contain NUL (\\u0000) characters"),
        ("\x00", 422, "note: Value error, must not contain NUL"),
        ("gate closed ✓ 大门已关", 200, None),
    ],
)
def test_a_nul_in_a_note_is_a_422_and_changes_nothing(
    desk: Desk,
    note: str,
    status: int,
    message: str | None,
) -> None:
    http, conn = desk
    alert_id = fire(conn)
    csrf = login(http)

    response = http.post(
        f"/api/alerts/{alert_id}/acknowledge",
        content=json.dumps({"note": note}),  # json escapes NUL as \u0000, as a browser does
        headers={"X-CSRF-Token": csrf, "Content-Type": "application/json"},
    )

    assert response.status_code == status, response.text
    if message is not None:
        assert response.json()["error"].startswith(message)
        assert conn.execute(
            "SELECT acknowledged_at FROM alerts WHERE id = %s", (alert_id,)
        ).fetchone() == (None,)


# Item 12: the error shape, nosniff, and no long echo of the input.


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/sites/stop-a/series?minutes=zero", 422),
        ("GET", "/api/sites/stop-a/series?minutes=0", 422),
        ("GET", "/api/dispatch/history?hours=" + "9" * 5000, 422),
        ("GET", "/api/alerts/1/acknowledge", 405),
        ("GET", "/api/no-such-thing", 404),
        ("GET", "/api/sites/" + "x" * 10_000, 404),
        ("GET", "/api/sites/stop-a/series?zone=" + "z" * 10_000, 422),
        ("POST", "/api/login", 422),
    ],
)
def test_every_error_is_a_short_json_error_with_nosniff(
    desk: Desk,
    method: str,
    path: str,
    status: int,
) -> None:
    http, _ = desk
    body = {"name": "li", "password": "p", "y" * 10_000: 1} if method == "POST" else None

    response = http.request(method, path, json=body)

    assert response.status_code == status, response.text
    assert list(response.json()) == ["error"]
    assert len(response.json()["error"]) < 300
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("path", ["/", "/api/sites", "/healthz", "/api/me"])
def test_every_response_says_nosniff(
    desk: Desk,
    path: str,
) -> None:
    http, _ = desk

    assert http.get(path).headers["x-content-type-options"] == "nosniff"


# Item 7: a phone that drops its stream leaves nothing behind.


def _no_database(now: datetime) -> Snapshot:
    raise StorageError("cannot connect to PostgreSQL (test): the database is away")


def test_a_hundred_stream_disconnects_leave_no_task_or_waiter_behind() -> None:
    hub = LiveHub(web_config(), _no_database, poll_s=60, heartbeat_s=60)

    async def listen(received: asyncio.Event) -> None:
        frames = 0
        async for _ in hub.events():
            frames += 1
            if frames == 2:  # retry, then the full state: now it waits for the next one
                received.set()

    async def disconnect_many(times: int) -> set[asyncio.Task[Any]]:
        for _ in range(times):
            received = asyncio.Event()
            task = asyncio.create_task(listen(received))
            await received.wait()
            await asyncio.sleep(0)  # into the wait for the next state, where a client leaves
            task.cancel()  # what Starlette does when the client disconnects
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.sleep(0)  # cancelled tasks finish on the next loop turn
        return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]

    lingering = asyncio.run(disconnect_many(100))

    assert lingering == set()
    assert hub.listeners == 0


# Item 8: logout and a password change end the session on the server.


def test_logout_ends_the_session_for_every_copy_of_the_cookie_and_the_bearer(
    desk: Desk,
) -> None:
    http, conn = desk
    alert_id = fire(conn)
    csrf = login(http)
    stolen = http.cookies["cw_session"]
    token = http.post("/api/token", json={"name": "li", "password": PASSWORD}).json()["token"]
    bearer = {"Authorization": f"Bearer {token}"}

    assert http.post("/api/logout").json() == {"logged_out": True}
    assert http.post("/api/logout", headers=bearer).status_code == 200

    with httpx.Client(base_url=http.base_url, cookies={"cw_session": stolen}) as thief:
        me = thief.get("/api/me")
        escalate = thief.post(
            f"/api/alerts/{alert_id}/escalate", json={"note": "x"}, headers={"X-CSRF-Token": csrf}
        )
    assert (me.status_code, me.json()) == (401, {"error": "logged out; log in again"})
    assert escalate.status_code == 401
    assert http.get("/api/me", headers=bearer).status_code == 401
    assert conn.execute(
        "SELECT escalation_level FROM alerts WHERE id = %s", (alert_id,)
    ).fetchone() == (0,)
    login(http)  # a new login works
    assert http.get("/api/me").status_code == 200


def test_a_password_change_ends_the_sessions_of_the_old_password(
    db_url: str,
    serve: Serve,
) -> None:
    before = serve(web_config(db_url))
    token = before.post("/api/token", json={"name": "li", "password": PASSWORD}).json()["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert before.get("/api/me", headers=bearer).status_code == 200

    changed = web_config(db_url)
    users = [
        u.model_copy(update={"password_hash": hash_password("a-new-one-77", n=16)})
        if u.name == "li"
        else u
        for u in changed.web.users
    ]
    after = serve(
        changed.model_copy(update={"web": changed.web.model_copy(update={"users": users})})
    )

    refused = after.get("/api/me", headers=bearer)
    assert (refused.status_code, refused.json()["error"]) == (
        401,
        "the password changed since this login; log in again",
    )
    assert (
        after.post("/api/login", json={"name": "li", "password": "a-new-one-77"}).status_code == 200
    )


# Item 6: idle and slow connections are closed; connections are capped; no log storm.


def _port(http: httpx.Client) -> int:
    port = http.base_url.port
    assert port is not None
    return port


def _closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed ``sock`` (reads to EOF), or None if it stayed open."""
    start = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - start < seconds:
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - start
        except TimeoutError:
            continue
        except OSError:  # reset by the server: closed too
            return time.monotonic() - start
    return None


@pytest.mark.parametrize("drip", [b"", b"GET /healthz HTTP/1.1\r\nHost: x\r\n", b"POST /api/login"])
def test_a_client_that_never_finishes_its_request_is_disconnected(
    drip: bytes,
    serve: Serve,
) -> None:
    http = serve(web_config(request_timeout_s=1.0))
    with socket.create_connection(("127.0.0.1", _port(http))) as sock:
        sock.sendall(drip)
        started = time.monotonic()
        closed = None
        while closed is None and time.monotonic() - started < 5:
            with contextlib.suppress(OSError):
                sock.sendall(b"X")  # slowloris: one more byte every 0.3 s, never the end
            closed = _closed_within(sock, 0.3)

    assert closed is not None, "the server kept a request that never ends open for 5 s"
    assert time.monotonic() - started < 4  # a 1 s deadline, with room for a busy machine


def test_at_max_connections_idle_sockets_give_way_to_real_requests(
    serve: Serve,
) -> None:
    """The probe: 60 idle sockets made /healthz time out."""
    http = serve(web_config(max_connections=20, request_timeout_s=5))
    port = _port(http)
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(30)]
    try:
        time.sleep(0.3)
        evicted = [s for s in idle[:10] if _closed_within(s, 0.5) is not None]
        answered = httpx.get(f"{http.base_url}healthz", timeout=2)  # a fresh connection
        still_open = [s for s in idle[10:] if _closed_within(s, 0.05) is None]
    finally:
        for sock in idle:
            sock.close()

    assert len(evicted) == 10  # the ten that waited longest made room for the last ten
    assert answered.status_code == 503  # served at once (503: its database is away)
    assert len(still_open) == 19  # and one more made room for it


def test_when_every_connection_is_busy_a_new_one_is_closed_at_once(
    serve: Serve,
) -> None:
    http = serve(web_config(max_connections=8, request_timeout_s=5))
    with contextlib.ExitStack() as streams:
        lines = []  # held: a dropped line iterator closes its stream
        for _ in range(8):  # live streams: busy for as long as they are open
            response = streams.enter_context(http.stream("GET", "/api/stream"))
            lines.append(response.iter_lines())
            next(lines[-1])
        with socket.create_connection(("127.0.0.1", _port(http))) as extra:
            refused_after = _closed_within(extra, 1.0)

    assert refused_after is not None and refused_after < 0.5
    assert http.get("/healthz").status_code == 503  # streams closed: served again


SERVER = """
import logging, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
from web_server import web_config
from crowdwatch.dashboards.web import run_web
run_web(web_config(request_timeout_s=1.0), "127.0.0.1", 0, None,
        on_ready=lambda url: print(url, flush=True))
"""


def test_out_of_file_descriptors_the_server_neither_floods_its_log_nor_stops(
    tmp_path: Path,
) -> None:
    """The probe: 60 idle sockets at a low ``ulimit -n`` wrote 132 MB of log in 15 s."""
    log = tmp_path / "web.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    env["CROWDWATCH_WEB_SECRET"] = "x" * 20
    with log.open("wb") as stderr:
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER], stdout=subprocess.PIPE, stderr=stderr, env=env
        )
        try:
            assert server.stdout is not None
            url = server.stdout.readline().decode().strip()
            port = int(url.rsplit(":", 1)[1].strip("/"))
            idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(120)]
            time.sleep(3)
            size_while_flooded = log.stat().st_size
            for sock in idle:
                sock.close()
            health = httpx.get(f"{url}healthz", timeout=5)
        finally:
            server.terminate()
            server.communicate(timeout=20)  # also closes its stdout pipe

    assert size_while_flooded < 20_000, log.read_text()[-2000:]
    assert health.status_code == 503  # still serving (its database is away)
    assert "max_connections 4000 lowered to" in log.read_text()


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"note": ' + b"9" * 5000 + b"}", "a number in the body has 5000 digits; at most 30"),
        (b'{"note": "x", "n": -' + b"1" * 31 + b"}", "a number in the body has 31 digits"),
        (b'{"note": 1' + b"0" * 29 + b"}", "note: Input should be a valid string"),
    ],
)
def test_a_huge_number_in_a_body_is_named_in_a_422(
    desk: Desk,
    body: bytes,
    error: str,
) -> None:
    http, conn = desk
    alert_id = fire(conn)
    csrf = login(http)

    response = http.post(
        f"/api/alerts/{alert_id}/acknowledge",
        content=body,
        headers={"X-CSRF-Token": csrf, "Content-Type": "application/json"},
    )

    assert (response.status_code, response.json()["error"][: len(error)]) == (422, error)
