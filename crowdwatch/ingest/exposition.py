"""A tiny ``/metrics`` HTTP endpoint for Prometheus, on the standard library's HTTP server.

The body is ``prometheus_client``'s exposition (:func:`crowdwatch.ingest.metrics.prometheus_text`).
The server stays ours, not ``prometheus_client.start_http_server``: that one serves nothing but
metrics (we also answer ``/healthz``), raises a bare ``OSError`` on a taken port (we stop with a
:class:`ConfigError` naming the address) and has no ``close()`` that joins its thread (the
tests fail on lingering threads, and a stopping ingest must release the port).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from crowdwatch.contracts.errors import ConfigError

logger = logging.getLogger(__name__)

# The body uses nothing of text format 1.0.0 (our names are plain ASCII): declaring 0.0.4, as
# before (prometheus_client >= 0.22 defaults to 1.0.0), keeps every Prometheus version
# parsing it the way it always has.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _names(query: str) -> frozenset[str] | None:
    """The ``name[]`` values of a query string: a scraper that polls often (``crowdwatch bench
    load``, twice a second) asks for a few samples instead of one series per camera."""
    names = parse_qs(query).get("name[]")
    return None if not names else frozenset(names)


class MetricsServer:
    """Serves ``GET /metrics`` (and ``/healthz``) on a background thread.

    Args:
        render: returns the current exposition text (called per request), given the sample
            names asked for with ``name[]=`` (as Prometheus' own clients take them; None: all).
        host: listen address.
        port: listen port; 0 picks a free one (see :attr:`port`).

    Raises:
        ConfigError: the address cannot be bound (port taken?).
    """

    def __init__(
        self, render: Callable[[frozenset[str] | None], str], host: str = "127.0.0.1", port: int = 0
    ) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                if path == "/metrics":
                    body, status = render(_names(query)).encode("utf-8"), 200
                elif self.path == "/healthz":
                    body, status = b"ok\n", 200
                else:
                    body, status = b"not found: try /metrics\n", 404
                self.send_response(status)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                logger.debug("metrics request: " + format, *args)  # noqa: G003

        try:
            self._server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from exc
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="ingest-metrics"
        )

    @property
    def port(self) -> int:
        port: int = self._server.server_address[1]
        return port

    def start(self) -> None:
        self._thread.start()
        logger.info("metrics on http://%s:%d/metrics", self._server.server_address[0], self.port)

    def close(self) -> None:
        """Stop serving and release the port."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()
