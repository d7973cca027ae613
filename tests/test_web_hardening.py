"""The web server against a hostile client: secrets, notes, streams, sessions and connections.

Each test here stands for one finding of the outside probe (issue 15) and failed before its fix.
"""

from __future__ import annotations

import logging

import pytest
from test_web import Serve, serve, web_config  # noqa: F401 (fixture)
from test_web_live import events

from crowdwatch.storage.db import redact_dsn

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
