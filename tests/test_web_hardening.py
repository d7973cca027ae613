"""The web server against a hostile client: secrets, notes, streams, sessions and connections.

Each test here stands for one finding of the outside probe (issue 15) and failed before its fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import datetime
from typing import Any

import httpx
import psycopg
import pytest
from test_web import PASSWORD, Serve, serve, web_config  # noqa: F401 (fixture)
from test_web_auth import desk, fire, login  # noqa: F401 (fixture)
from test_web_live import events

from crowdwatch.contracts.errors import StorageError
from crowdwatch.dashboards.live import LiveHub
from crowdwatch.dashboards.passwords import hash_password
from crowdwatch.dashboards.snapshot import Snapshot
from crowdwatch.storage.db import redact_dsn

Desk = tuple[httpx.Client, psycopg.Connection]

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
    serve: Serve,  # noqa: F811
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
    desk: Desk,  # noqa: F811
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
    desk: Desk,  # noqa: F811
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
    desk: Desk,  # noqa: F811
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
    desk: Desk,  # noqa: F811
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
    serve: Serve,  # noqa: F811
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
