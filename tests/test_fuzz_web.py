"""Bad input through the network doors: the web API on a real uvicorn, the ingest validator and writer.

Random site ids, query parameters and JSON bodies never get a 5xx; SQL-injection-like strings
as site ids, zones and notes are stored or refused as plain data, and every table survives.
Hand-written hostile JSON (numbers of any size, any Unicode with NUL and lone surrogates, any
nesting) reaches every web door and is refused in one short ``{"error": ...}`` line.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
import pytest
from db_rows import alert_message, insert_firing
from fuzz_strategies import COUNTS_DOC, INJECTIONS, JSON_VALUES, mutated
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web_server import PASSWORD, web_config

from crowdwatch.dashboards.bodies import MAX_BODY_BYTES
from crowdwatch.ingest.validate import Envelope, MessageValidator, Rejected
from crowdwatch.ingest.writer import BatchWriter
from crowdwatch.storage.migrate import upgrade

# One server per test serves every example: the fixture is set up once, on purpose.
WEB_FUZZ = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

TABLES = ["sites", "zones", "zone_counts", "zone_latest", "alerts", "alert_events", "dead_letters"]

IDS = st.text(max_size=40) | st.sampled_from([*INJECTIONS, "stop-a", "../stop-a", "%00", ""])


JSON_TYPE = {"Content-Type": "application/json"}


def _json(body: Any) -> bytes:
    # httpx's json= refuses NaN; Python's json (what a client may well send) writes it.
    return json.dumps(body).encode("utf-8")


def _tables_survive(conn: psycopg.Connection) -> None:
    for table in TABLES:
        assert conn.execute("SELECT to_regclass(%s)", (table,)).fetchone() == (table,)
    assert conn.execute("SELECT count(*) FROM sites").fetchone() == (3,)


@WEB_FUZZ
@given(site_id=IDS, minutes=st.text(max_size=8) | st.integers(), zone=IDS)
def test_random_site_ids_and_parameters_never_get_a_5xx(
    desk: tuple[httpx.Client, psycopg.Connection], site_id: str, minutes: Any, zone: str
) -> None:
    http, conn = desk
    site = quote(site_id, safe="")
    for path, params in [
        (f"/api/sites/{site}", {}),
        (f"/api/sites/{site}/series", {"minutes": minutes}),
        ("/api/sites/stop-a/series", {"minutes": minutes, "zone": zone}),
        ("/api/dispatch/history", {"hours": minutes}),
    ]:
        response = http.get(path, params=params)
        assert response.status_code < 500, (path, params, response.text)
    _tables_survive(conn)


@WEB_FUZZ
@given(body=JSON_VALUES | mutated({"name": "li", "password": PASSWORD}))
def test_random_login_bodies_get_a_4xx_or_a_login(
    desk: tuple[httpx.Client, psycopg.Connection], body: Any
) -> None:
    http, _ = desk

    response = http.post("/api/login", content=_json(body), headers=JSON_TYPE)

    # 200 only for the real credentials; 429 once the guesses trip the rate limit.
    assert 400 <= response.status_code < 500 or (
        response.status_code == 200 and body == {"name": "li", "password": PASSWORD}
    ), (body, response.status_code, response.text)


@pytest.fixture
def acting(
    desk: tuple[httpx.Client, psycopg.Connection],
) -> tuple[httpx.Client, psycopg.Connection, int, dict[str, str]]:
    http, conn = desk
    row = insert_firing(conn, alert_message("stop-a/platform/crowded", ts=datetime.now(UTC)))
    assert row is not None
    token = http.post("/api/token", json={"name": "li", "password": PASSWORD}).json()["token"]
    return http, conn, row.id, {"Authorization": f"Bearer {token}"}


@WEB_FUZZ
@given(
    alert_id=st.integers() | st.text(max_size=12),
    body=JSON_VALUES
    | st.fixed_dictionaries({"note": st.text(max_size=60) | st.sampled_from(INJECTIONS)}),
    action=st.sampled_from(["acknowledge", "escalate"]),
)
def test_random_alert_actions_never_get_a_5xx(
    acting: tuple[httpx.Client, psycopg.Connection, int, dict[str, str]],
    alert_id: Any,
    body: Any,
    action: str,
) -> None:
    http, conn, real_id, auth = acting
    for target in (real_id, quote(str(alert_id), safe="")):
        response = http.post(
            f"/api/alerts/{target}/{action}", content=_json(body), headers={**JSON_TYPE, **auth}
        )
        assert response.status_code < 500, (target, body, response.text)
        note = body.get("note", "").strip() if isinstance(body, dict) else ""
        if response.status_code == 200 and action == "acknowledge" and note:
            # A note is stored as it was typed: no quote of it was ever read as SQL.
            stored = conn.execute(
                "SELECT note FROM alert_events WHERE alert_id = %s ORDER BY id DESC LIMIT 1",
                (real_id,),
            ).fetchone()
            assert stored == (note,)
    _tables_survive(conn)


@pytest.mark.parametrize(
    ("content", "headers", "status"),
    [
        (b'{"note": "' + b"x" * MAX_BODY_BYTES + b'"}', {}, 413),
        # No Content-Length: the limit holds while the body streams in.
        (iter([b'{"note": "', b"x" * MAX_BODY_BYTES, b'"}']), {}, 413),
        (b"{not json", {}, 400),
        (b"[" * 10_000, {}, 400),  # nested past json's recursion limit
        (b"\xff\xfe", {}, 400),
        (b'{"note": 5}', {}, 422),
        (b"note=x", {"Content-Type": "application/x-www-form-urlencoded"}, 415),
    ],
    ids=[
        "oversized",
        "oversized-chunked",
        "bad-json",
        "deep-json",
        "not-utf8",
        "wrong-type",
        "form",
    ],
)
def test_oversized_and_bad_bodies_get_a_4xx(
    acting: tuple[httpx.Client, psycopg.Connection, int, dict[str, str]],
    content: Any,
    headers: dict[str, str],
    status: int,
) -> None:
    http, conn, alert_id, auth = acting

    response = http.post(
        f"/api/alerts/{alert_id}/acknowledge",
        content=content,
        headers={"Content-Type": "application/json", **auth, **headers},
    )

    assert response.status_code == status, response.text
    assert conn.execute(
        "SELECT acknowledged_by FROM alerts WHERE id = %s", (alert_id,)
    ).fetchone() == (None,)


def test_injection_strings_through_ingest_are_dead_letters_and_the_tables_survive(
    db_url: str,
) -> None:
    config = web_config(db_url)
    upgrade(db_url, config)
    validator = MessageValidator(config)
    prefix = config.mqtt.topic_prefix
    now = datetime.now(UTC)
    envelopes = []
    for nasty in INJECTIONS:
        doc = {**COUNTS_DOC, "site_id": nasty, "ts": now.isoformat()}
        payload = json.dumps(doc).encode()
        envelopes.append(Envelope(f"{prefix}/v1/{nasty}/cam1/counts", payload, now))
        envelopes.append(Envelope(f"{prefix}/v1/stop-a/cam1/counts", payload, now))
    results = [validator.validate(e) for e in envelopes]
    assert all(isinstance(r, Rejected) for r in results)

    writer = BatchWriter(db_url)
    try:
        written = writer.write([r for r in results if isinstance(r, Rejected)])
    finally:
        writer.close()

    assert written.dead_letters == len(envelopes)
    with psycopg.connect(db_url) as conn:
        _tables_survive(conn)
        topics = {t for (t,) in conn.execute("SELECT topic FROM dead_letters").fetchall()}
        assert {f"{prefix}/v1/{nasty}/cam1/counts" for nasty in INJECTIONS} <= topics
        assert conn.execute("SELECT count(*) FROM zone_counts").fetchone() == (0,)


# Issue 15: hostile JSON written by hand, as a client that is not Python's json sends it —
# numbers of any size (past Python's 4300-digit int limit), any Unicode (NUL and unpaired
# surrogates included) and any nesting — through every door that reads input.

ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=30)
"""Every code point, surrogates and NUL included."""


def _string(text: str, ascii_only: bool) -> str:
    # ensure_ascii writes \u0000 and a lone \ud800 as escapes; without it they go out raw
    # (a lone surrogate then becomes bytes that are not UTF-8 at all).
    return json.dumps(text, ensure_ascii=ascii_only)


HOSTILE_SCALARS = st.one_of(
    st.integers().map(str),
    st.integers(4000, 6000).map(lambda n: "9" * n),  # int() refuses > 4300 digits
    st.integers(1, 400).map(lambda n: f"1e{'9' * n}"),  # overflows to infinity
    st.sampled_from(["NaN", "-Infinity", "1e-99999", "-0", "0.1e1", "1E400"]),
    st.builds(_string, ANY_TEXT, st.booleans()),
)


def _nest(inner: str, depth: int, as_list: bool) -> str:
    return (
        ("[" * depth + inner + "]" * depth) if as_list else ('{"a":' * depth + inner + "}" * depth)
    )


HOSTILE_VALUES = st.one_of(
    HOSTILE_SCALARS,
    st.builds(_nest, HOSTILE_SCALARS, st.integers(1, 3000), st.booleans()),
)


@st.composite
def hostile_body(draw: st.DrawFn, fields: list[str]) -> bytes:
    """A JSON object text with ``fields`` (some dropped, some doubled) set to hostile values."""
    chosen = draw(st.lists(st.sampled_from(fields), max_size=len(fields) + 1))
    extra = draw(st.lists(st.builds(_string, ANY_TEXT, st.booleans()), max_size=1))
    members = [f"{json.dumps(k)}:{draw(HOSTILE_VALUES)}" for k in chosen]
    members += [f"{k}:{draw(HOSTILE_VALUES)}" for k in extra]
    text = "{" + ",".join(members) + "}"
    if draw(st.booleans()):
        text = draw(HOSTILE_VALUES)  # not even an object
    return text.encode("utf-8", "surrogatepass")


def _refused_cleanly(response: httpx.Response) -> None:
    """A 4xx whose body is one short ``{"error": ...}``, never a 5xx."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    assert response.headers["x-content-type-options"] == "nosniff"
    body = response.json()
    assert list(body) == ["error"] and isinstance(body["error"], str), body
    assert len(body["error"]) < 400, body  # quotes at most a prefix of the input


@WEB_FUZZ
@given(body=hostile_body(["name", "password"]), door=st.sampled_from(["login", "token"]))
def test_hostile_login_bodies_are_refused_in_one_short_line(
    desk: tuple[httpx.Client, psycopg.Connection], body: bytes, door: str
) -> None:
    http, conn = desk

    response = http.post(f"/api/{door}", content=body, headers=JSON_TYPE)

    _refused_cleanly(response)
    _tables_survive(conn)


@WEB_FUZZ
@given(body=hostile_body(["note"]), action=st.sampled_from(["acknowledge", "escalate"]))
def test_hostile_notes_are_refused_or_stored_and_nothing_else_changes(
    acting: tuple[httpx.Client, psycopg.Connection, int, dict[str, str]],
    body: bytes,
    action: str,
) -> None:
    http, conn, alert_id, auth = acting

    response = http.post(
        f"/api/alerts/{alert_id}/{action}", content=body, headers={**JSON_TYPE, **auth}
    )

    note = json.loads(body).get("note", "").strip() if response.status_code == 200 else ""
    if action == "acknowledge" and note:  # a note PostgreSQL can hold: stored as sent
        stored = conn.execute(
            "SELECT note FROM alert_events WHERE alert_id = %s ORDER BY id DESC LIMIT 1",
            (alert_id,),
        ).fetchone()
        assert stored == (note,)
    elif response.status_code not in (200, 409):  # 409: an earlier example acknowledged it
        _refused_cleanly(response)
    _tables_survive(conn)


@WEB_FUZZ
@given(
    site=ANY_TEXT,
    number=HOSTILE_SCALARS,
    zone=ANY_TEXT,
)
def test_hostile_paths_and_query_numbers_never_get_a_5xx(
    desk: tuple[httpx.Client, psycopg.Connection], site: str, number: str, zone: str
) -> None:
    http, conn = desk
    # Unpaired surrogates cannot be percent-encoded as UTF-8: send their replacement.
    site_part = quote(site.encode("utf-8", "replace"), safe="")
    zone_value = zone.encode("utf-8", "replace").decode("utf-8")
    for path, params in [
        (f"/api/sites/{site_part}", {}),
        (f"/api/sites/{site_part}/series", {"minutes": number}),
        ("/api/sites/stop-a/series", {"minutes": number[:200], "zone": zone_value}),
        ("/api/dispatch/history", {"hours": number}),
        (f"/api/alerts/{quote(number[:100], safe='')}/acknowledge", {}),
    ]:
        response = http.request(
            "POST" if path.endswith("acknowledge") else "GET", path, params=params
        )
        # /api/sites/ (and /api/sites//, the site "/" decoded) -> /api/sites: slash
        # normalisation, not a refusal.
        redirected = response.is_redirect and site.strip("/") == ""
        if response.status_code != 200 and not redirected:
            _refused_cleanly(response)
    _tables_survive(conn)
