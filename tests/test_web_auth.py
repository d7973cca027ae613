"""Dispatcher logins: password hashes, signed expiring tokens, CSRF, and the guarded API.

The API tests serve the app for real (``serve`` from test_web) over the real PostgreSQL and
act on alerts through the alert engineer's functions; the database is checked afterwards.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from db_rows import alert_message, resolve_firing
from web_server import PASSWORD, fire, login

from crowdwatch.contracts.config import Department, WebConfig, WebUser
from crowdwatch.contracts.errors import ConfigError
from crowdwatch.dashboards.bodies import MAX_BODY_BYTES
from crowdwatch.dashboards.passwords import hash_password, main, verify_password
from crowdwatch.dashboards.sessions import AuthError, SessionSigner, load_secret

NOW = datetime(2026, 10, 1, 6, 0, tzinfo=UTC)


# Passwords and tokens (pure).


@pytest.mark.parametrize(
    ("typed", "stored", "ok"),
    [
        ("sun", hash_password("sun", n=16), True),
        ("Sun", hash_password("sun", n=16), False),
        ("海滩", hash_password("海滩", n=16), True),
        # A hash made with a standard-library one-liner elsewhere.
        (
            "sun",
            "pbkdf2_sha256$1000$c2FsdA$"
            + base64.urlsafe_b64encode(
                __import__("hashlib").pbkdf2_hmac("sha256", b"sun", b"salt", 1000)
            )
            .decode()
            .rstrip("="),
            True,
        ),
        ("sun", "scrypt$16$8$1$bad", False),
        ("sun", "md5$abc", False),
        ("sun", "scrypt$0$8$1$c2FsdA$AAAA", False),
    ],
    # Fixed ids: a fresh hash has a random salt, and test ids must be the same in every
    # process that collects them (pytest-xdist's workers).
    ids=["scrypt", "scrypt-wrong-case", "scrypt-unicode", "pbkdf2", "bad-salt", "md5", "n-zero"],
)
def test_verify_password(typed: str, stored: str, ok: bool) -> None:
    assert verify_password(typed, stored) is ok


def test_the_hash_helper_prints_a_hash_from_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("long enough pw\n"))

    assert main(["--stdin"]) == 0

    printed = capsys.readouterr().out.strip()
    assert printed.startswith("scrypt$16384$8$1$") and verify_password("long enough pw", printed)
    WebUser(name="li", password_hash=printed)  # the config accepts what the helper prints


def signer(ttl_s: int = 3600, secret: bytes = b"k" * 32) -> SessionSigner:
    user = WebUser(
        name="li", department=Department.TRANSPORT, password_hash=hash_password("x", n=16)
    )
    return SessionSigner(WebConfig(users=[user], session_ttl_s=ttl_s), secret)


def _tamper(token: str) -> str:
    body, _, mac = token.partition(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=="))
    payload["u"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    return f"{forged}.{mac}"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda t: t[:-3] + ("AAA" if not t.endswith("AAA") else "BBB"), "invalid session token"),
        (_tamper, "invalid session token"),
        (lambda t: "garbage", "invalid session token"),
        (lambda t: "", "invalid session token"),
        (
            lambda t: signer(secret=b"other" * 8).issue(signer().user("li"))[0],  # type: ignore[arg-type]
            "invalid session token",
        ),
    ],
)
def test_a_forged_token_is_refused(make: object, message: str) -> None:
    s = signer()
    token, _ = s.issue(s.user("li"), NOW)  # type: ignore[arg-type]

    with pytest.raises(AuthError, match=message) as caught:
        s.verify(make(token), NOW)  # type: ignore[operator]
    assert caught.value.status == 401


def test_a_token_expires_and_its_csrf_is_tied_to_it() -> None:
    s = signer(ttl_s=60)
    token, session = s.issue(s.user("li"), NOW)  # type: ignore[arg-type]

    assert s.verify(token, NOW + timedelta(seconds=59)).user.name == "li"
    with pytest.raises(AuthError, match="expired"):
        s.verify(token, NOW + timedelta(seconds=60))
    s.check_csrf(session, session.csrf)
    other = s.issue(s.user("li"), NOW)[1]  # type: ignore[arg-type]
    for wrong in (None, "", other.csrf):
        with pytest.raises(AuthError, match="CSRF") as caught:
            s.check_csrf(session, wrong)
        assert caught.value.status == 403


def test_a_user_removed_from_the_config_is_refused() -> None:
    token, _ = signer().issue(signer().user("li"))  # type: ignore[arg-type]
    nobody = SessionSigner(WebConfig(users=[]), b"k" * 32)

    with pytest.raises(AuthError, match="no longer allowed"):
        nobody.verify(token)


def test_a_short_secret_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CROWDWATCH_WEB_SECRET", "short")

    with pytest.raises(ConfigError, match="CROWDWATCH_WEB_SECRET: expected at least 16"):
        load_secret()


# The guarded API, served for real.


def test_acknowledge_with_a_note_is_recorded_with_who_and_when(
    desk: tuple[httpx.Client, psycopg.Connection],
) -> None:
    http, conn = desk
    alert_id = fire(conn)
    csrf = login(http)

    response = http.post(
        f"/api/alerts/{alert_id}/acknowledge",
        json={"note": "已派 3 路加车 bus 3 sent"},
        headers={"X-CSRF-Token": csrf},
    )

    assert response.status_code == 200, response.text
    assert response.json()["acknowledged_by"] == "li"
    row = conn.execute(
        "SELECT acknowledged_by, ack_note, acknowledged_at FROM alerts WHERE id = %s", (alert_id,)
    ).fetchone()
    assert row is not None and row[:2] == ("li", "已派 3 路加车 bus 3 sent")
    assert abs((datetime.now(UTC) - row[2]).total_seconds()) < 60
    events = conn.execute(
        "SELECT kind, who, note FROM alert_events WHERE alert_id = %s ORDER BY id", (alert_id,)
    ).fetchall()
    assert ("acknowledged", "li", "已派 3 路加车 bus 3 sent") in events

    escalated = http.post(
        f"/api/alerts/{alert_id}/escalate", json={}, headers={"X-CSRF-Token": csrf}
    )
    assert escalated.json()["escalation_level"] == 1
    [alert] = http.get("/api/dispatch/alerts").json()["alerts"]
    assert [e["kind"] for e in alert["history"]][-2:] == ["acknowledged", "escalated"]


@pytest.mark.parametrize(
    ("headers", "cookie", "status", "error"),
    [
        ({}, None, 401, "login required"),
        ({}, "forged.token", 401, "invalid session token"),
        ({"Authorization": "Bearer nonsense"}, None, 401, "invalid session token"),
        ({}, "valid", 403, "X-CSRF-Token"),  # a cookie without the CSRF header
        ({"X-CSRF-Token": "wrong"}, "valid", 403, "X-CSRF-Token"),
    ],
)
def test_an_acknowledge_without_valid_credentials_is_refused_and_changes_nothing(
    desk: tuple[httpx.Client, psycopg.Connection],
    headers: dict[str, str],
    cookie: str | None,
    status: int,
    error: str,
) -> None:
    http, conn = desk
    alert_id = fire(conn)
    if cookie == "valid":
        login(http)
    elif cookie is not None:
        http.cookies.set("cw_session", cookie)

    response = http.post(f"/api/alerts/{alert_id}/acknowledge", json={"note": "x"}, headers=headers)

    assert response.status_code == status
    assert error in response.json()["error"]
    row = conn.execute("SELECT acknowledged_by FROM alerts WHERE id = %s", (alert_id,)).fetchone()
    assert row == (None,)
    assert conn.execute(
        "SELECT count(*) FROM alert_events WHERE kind = 'acknowledged'"
    ).fetchone() == (0,)


def test_a_bearer_token_works_without_csrf_and_logout_ends_the_cookie(
    desk: tuple[httpx.Client, psycopg.Connection],
) -> None:
    http, conn = desk
    alert_id = fire(conn)
    assert http.post("/api/token", json={"name": "li", "password": "wrong"}).status_code == 401
    token = http.post("/api/token", json={"name": "li", "password": PASSWORD}).json()["token"]

    response = http.post(
        f"/api/alerts/{alert_id}/escalate",
        json={"note": "need police"},
        headers={"Authorization": f"Bearer {token}"},
    )

    assert response.status_code == 200 and response.json()["escalation_level"] == 1
    login(http)
    assert http.get("/api/me").json()["name"] == "li"
    http.post("/api/logout")
    assert http.get("/api/me").status_code == 401


def test_a_dispatcher_sees_and_acts_on_their_department_only(
    desk: tuple[httpx.Client, psycopg.Connection],
) -> None:
    http, conn = desk
    stop_alert = fire(conn, "stop-a/platform/crowded")
    beach_alert = fire(conn, "beach-a/north/crowded")
    csrf = login(http, "wang")  # culture_tourism: the beach

    seen = http.get("/api/dispatch/alerts").json()["alerts"]
    refused = http.post(
        f"/api/alerts/{stop_alert}/acknowledge", json={}, headers={"X-CSRF-Token": csrf}
    )

    assert [a["id"] for a in seen] == [beach_alert]
    assert refused.status_code == 403 and "transport" in refused.json()["error"]


def test_acting_on_a_missing_or_resolved_alert_is_a_4xx(
    desk: tuple[httpx.Client, psycopg.Connection],
) -> None:
    http, conn = desk
    alert_id = fire(conn)
    resolve_firing(conn, alert_message(state="resolved", ts=datetime.now(UTC)))
    csrf = login(http)
    headers = {"X-CSRF-Token": csrf}

    resolved = http.post(f"/api/alerts/{alert_id}/acknowledge", json={}, headers=headers)
    missing = http.post("/api/alerts/999999/acknowledge", json={}, headers=headers)
    huge = http.post(f"/api/alerts/{2**70}/acknowledge", json={}, headers=headers)

    assert (resolved.status_code, missing.status_code, huge.status_code) == (409, 404, 422)
    assert "not firing" in resolved.json()["error"]
    assert "999999" in missing.json()["error"]
    history = http.get("/api/dispatch/history?hours=24").json()["alerts"]
    assert [(a["id"], a["state"]) for a in history] == [(alert_id, "resolved")]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "error"),
    [
        (b"{not json", "application/json", 400, "not valid JSON"),
        (b'{"name": "li"}', "application/json", 422, "password"),
        (b'{"name": "li", "password": "x", "admin": true}', "application/json", 422, "admin"),
        (b"[1, 2]", "application/json", 422, "body"),
        (b"name=li", "application/x-www-form-urlencoded", 415, "application/json"),
        (b"\xff\xfe", "application/json", 400, "not valid JSON"),
        (b'{"name": "' + b"x" * MAX_BODY_BYTES + b'"}', "application/json", 413, "limit"),
    ],
)
def test_a_bad_login_body_is_a_4xx_never_a_500(
    desk: tuple[httpx.Client, psycopg.Connection],
    body: bytes,
    content_type: str,
    status: int,
    error: str,
) -> None:
    http, _ = desk

    response = http.post("/api/login", content=body, headers={"Content-Type": content_type})

    assert response.status_code == status
    assert error in response.json()["error"]
    assert "set-cookie" not in response.headers
