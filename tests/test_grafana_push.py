"""``crowdwatch dashboards push`` against a local HTTP server that answers like Grafana's API
and records every call: create on a first push (404 on lookup), update on the second, and a
clear error on a refused token."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from crowdwatch.cli import main
from crowdwatch.contracts.config import load_config
from crowdwatch.contracts.errors import ConfigError, GrafanaError
from crowdwatch.dashboards.grafana.provisioning import DataSourceSettings
from crowdwatch.dashboards.grafana.push import push_dashboards

ROOT = Path(__file__).resolve().parents[1]
CONFIG_PATH = ROOT / "configs" / "district.example.yaml"
CONFIG = load_config(CONFIG_PATH)
TOKEN = "glsa_test_token"
SETTINGS = DataSourceSettings("db:5432", "crowdwatch", "grafana_reader", "secret")


@dataclass
class Call:
    method: str
    path: str
    authorization: str
    body: Any


@dataclass
class FakeGrafana:
    """The few endpoints the push uses, with Grafana's status codes and bodies."""

    calls: list[Call] = field(default_factory=list)
    folders: dict[str, Any] = field(default_factory=dict)
    datasources: dict[str, Any] = field(default_factory=dict)
    dashboards: dict[str, Any] = field(default_factory=dict)
    url: str = ""

    def handle(self, method: str, path: str, auth: str, body: Any) -> tuple[int, Any]:
        self.calls.append(Call(method, path, auth, body))
        if auth != f"Bearer {TOKEN}":
            return 401, {"message": "invalid API key", "traceID": ""}
        parts = path.split("?")[0].strip("/").split("/")
        match method, parts:
            case "GET", ["api", "folders", uid]:
                return self._get(self.folders, uid, "folder not found")
            case "POST", ["api", "folders"]:
                self.folders[body["uid"]] = body
                return 200, {"uid": body["uid"], "title": body["title"], "version": 1}
            case "PUT", ["api", "folders", uid]:
                self.folders[uid] = body
                return 200, {"uid": uid, "title": body["title"], "version": 2}
            case "GET", ["api", "datasources", "uid", uid]:
                return self._get(self.datasources, uid, "data source not found")
            case "POST", ["api", "datasources"]:
                self.datasources[body["uid"]] = body
                return 200, {"id": 1, "message": "Datasource added", "name": body["name"]}
            case "PUT", ["api", "datasources", "uid", uid]:
                self.datasources[uid] = body
                return 200, {"id": 1, "message": "Datasource updated", "name": body["name"]}
            case "GET", ["api", "dashboards", "uid", uid]:
                return self._get(self.dashboards, uid, "Dashboard not found")
            case "POST", ["api", "dashboards", "db"]:
                uid = body["dashboard"]["uid"]
                if uid in self.dashboards and not body["overwrite"]:
                    return 412, {"message": "A dashboard with the same uid already exists"}
                self.dashboards[uid] = body
                return 200, {"status": "success", "uid": uid, "version": 1}
        return 404, {"message": "Not found"}

    @staticmethod
    def _get(store: dict[str, Any], uid: str, missing: str) -> tuple[int, Any]:
        if uid in store:
            return 200, {"dashboard": store[uid]} if "dashboard" in store[uid] else store[uid]
        return 404, {"message": missing}


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    fake = FakeGrafana()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            status, answer = fake.handle(
                self.command, self.path, self.headers.get("Authorization", ""), body
            )
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = _serve  # noqa: N815 (http.server's naming)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="fake-grafana")
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _summary(calls: list[Call]) -> list[tuple[str, str]]:
    return [(c.method, c.path) for c in calls]


def test_first_push_creates_then_second_push_updates(grafana: FakeGrafana) -> None:
    first = push_dashboards(CONFIG, grafana.url, TOKEN, SETTINGS)
    assert [a for _, _, a in first.actions] == ["created"] * 4
    assert _summary(grafana.calls) == [
        ("GET", "/api/folders/crowdwatch"),
        ("POST", "/api/folders"),
        ("GET", "/api/datasources/uid/crowdwatch-pg"),
        ("POST", "/api/datasources"),
        ("GET", "/api/dashboards/uid/crowdwatch-wall"),
        ("POST", "/api/dashboards/db"),
        ("GET", "/api/dashboards/uid/crowdwatch-site"),
        ("POST", "/api/dashboards/db"),
    ]
    datasource = grafana.datasources["crowdwatch-pg"]
    assert datasource["url"] == "db:5432"
    assert datasource["jsonData"]["database"] == "crowdwatch"
    assert datasource["secureJsonData"] == {"password": "secret"}
    wall = grafana.dashboards["crowdwatch-wall"]
    assert (wall["folderUid"], wall["overwrite"], wall["dashboard"]["refresh"]) == (
        "crowdwatch",
        False,
        "10s",
    )

    grafana.calls.clear()
    second = push_dashboards(CONFIG, grafana.url, TOKEN, SETTINGS)
    assert [a for _, _, a in second.actions] == ["updated"] * 4
    assert _summary(grafana.calls) == [
        ("GET", "/api/folders/crowdwatch"),
        ("PUT", "/api/folders/crowdwatch"),
        ("GET", "/api/datasources/uid/crowdwatch-pg"),
        ("PUT", "/api/datasources/uid/crowdwatch-pg"),
        ("GET", "/api/dashboards/uid/crowdwatch-wall"),
        ("POST", "/api/dashboards/db"),
        ("GET", "/api/dashboards/uid/crowdwatch-site"),
        ("POST", "/api/dashboards/db"),
    ]
    assert grafana.dashboards["crowdwatch-site"]["overwrite"] is True
    assert all(c.authorization == f"Bearer {TOKEN}" for c in grafana.calls)


def test_refused_token_is_a_clear_error(grafana: FakeGrafana) -> None:
    with pytest.raises(GrafanaError, match=r"refused the token \(401 Unauthorized\)"):
        push_dashboards(CONFIG, grafana.url, "wrong", SETTINGS)
    assert _summary(grafana.calls) == [("GET", "/api/folders/crowdwatch")]
    assert grafana.folders == {}


def test_unreachable_grafana_is_a_clear_error() -> None:
    with pytest.raises(GrafanaError, match="cannot reach Grafana"):
        push_dashboards(CONFIG, "http://127.0.0.1:9", TOKEN, SETTINGS, timeout_s=2)


def test_push_command_takes_the_token_from_the_environment(
    grafana: FakeGrafana, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CROWDWATCH_GRAFANA_TOKEN", TOKEN)
    monkeypatch.setenv("CROWDWATCH_GRAFANA_DB_PASSWORD", "from-env")
    argv = ["dashboards", "push", "-c", str(CONFIG_PATH), "--url", grafana.url]
    code = main([*argv, "--datasource-url", "postgresql://reader@pg.internal/crowdwatch"])
    assert code == 0
    assert "dashboard crowdwatch-wall: created" in capsys.readouterr().out
    datasource = grafana.datasources["crowdwatch-pg"]
    assert (datasource["url"], datasource["user"]) == ("pg.internal:5432", "reader")
    assert datasource["secureJsonData"]["password"] == "from-env"

    monkeypatch.setenv("CROWDWATCH_GRAFANA_TOKEN", "expired")
    code = main([*argv, "--datasource-url", "postgresql://reader@pg.internal/crowdwatch"])
    assert code == 2
    assert "refused the token (401 Unauthorized)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("url", "expected", "error"),
    [
        (
            "postgresql://reader:pw@db.example:6432/cw?sslmode=require",
            DataSourceSettings("db.example:6432", "cw", "reader", "pw", "require"),
            None,
        ),
        ("postgresql://reader@db/cw", DataSourceSettings("db:5432", "cw", "reader", ""), None),
        ("mysql://reader@db/cw", None, "expected a postgresql://"),
        ("postgresql://db/cw", None, "needs a user and a database"),
    ],
)
def test_datasource_settings_from_url(
    url: str, expected: DataSourceSettings | None, error: str | None
) -> None:
    if error:
        with pytest.raises(ConfigError, match=error):
            DataSourceSettings.from_url(url)
    else:
        assert DataSourceSettings.from_url(url) == expected
