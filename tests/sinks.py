"""Real local receivers for alert channels: HTTP robots and Grafana (``HttpSink``), SMTP.

``HttpSink`` is a real HTTP server on 127.0.0.1: every POST is recorded; a path may answer
500 a number of times first, or hang until released.  ``SmtpSink`` is a real (minimal) SMTP
server speaking the RFC 5321 commands smtplib uses.  The channel tests and the engine tests
use them through the ``http_sink`` and ``smtp_sink`` fixtures (import them into the module).
"""

from __future__ import annotations

import json
import socketserver
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass(frozen=True, slots=True)
class Received:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: dict[str, Any]


class HttpSink:
    """A local HTTP receiver.  ``fail[path] = n``: answer 500 n times; ``hang``: paths that
    wait for :meth:`release` before answering; ``answer[path]``: the JSON body of a 200."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.fail: dict[str, int] = {}
        self.hang: set[str] = set()
        self.answer: dict[str, dict[str, Any]] = {}
        self._released = threading.Event()
        self._arrived = threading.Condition()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                record = Received(
                    url.path, urllib.parse.parse_qs(url.query), dict(self.headers), body
                )
                with sink._arrived:
                    sink.received.append(record)
                    sink._arrived.notify_all()
                if url.path in sink.hang:
                    sink._released.wait(10)
                if sink.fail.get(url.path, 0) > 0:
                    sink.fail[url.path] -= 1
                    self._reply(500, {"error": "test failure"})
                    return
                self._reply(200, sink.answer.get(url.path, {"errcode": 0, "errmsg": "ok"}))

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (time-out): nothing to answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="http-sink"
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def on(self, path: str) -> list[Received]:
        with self._arrived:
            return [r for r in self.received if r.path == path]

    def wait_for(self, path: str, n: int, timeout: float = 10) -> list[Received]:
        with self._arrived:
            self._arrived.wait_for(
                lambda: len([r for r in self.received if r.path == path]) >= n, timeout
            )
            return [r for r in self.received if r.path == path]

    def release(self) -> None:
        self._released.set()

    def close(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class SmtpSink:
    """A minimal real SMTP server: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self._arrived = threading.Condition()
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self._send("220 test SMTP ready")
                while True:
                    line = self.rfile.readline()
                    if not line:
                        return
                    verb = line.decode("ascii", "replace").strip().split(" ")[0].upper()
                    if verb in ("EHLO", "HELO"):
                        self._send("250 test")
                    elif verb in ("MAIL", "RCPT", "RSET", "NOOP"):
                        self._send("250 OK")
                    elif verb == "DATA":
                        self._send("354 go ahead")
                        lines = []
                        while (data := self.rfile.readline()) not in (b".\r\n", b""):
                            lines.append(data[1:] if data.startswith(b"..") else data)
                        message = message_from_bytes(b"".join(lines), policy=default_policy)
                        assert isinstance(message, EmailMessage)
                        with sink._arrived:
                            sink.messages.append(message)
                            sink._arrived.notify_all()
                        self._send("250 queued")
                    elif verb == "QUIT":
                        self._send("221 bye")
                        return
                    else:
                        self._send("502 not implemented")

            def _send(self, text: str) -> None:
                self.wfile.write(text.encode() + b"\r\n")

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="smtp-sink"
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def wait_for(self, n: int, timeout: float = 10) -> list[EmailMessage]:
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.messages) >= n, timeout)
            return list(self.messages)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@pytest.fixture
def http_sink() -> Iterator[HttpSink]:
    sink = HttpSink()
    try:
        yield sink
    finally:
        sink.close()


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    try:
        yield sink
    finally:
        sink.close()
