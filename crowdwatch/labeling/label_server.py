"""``crowdwatch label DIR``: a local page to mark every person on a camera's frames.

    crowdwatch label frames/ --annotator ana        # then open http://127.0.0.1:8095/

Python's standard HTTP server and one static page (``static/label.html``), so it runs on an edge
box with ``crowdwatch[edge]`` alone, where the frames are. It listens on 127.0.0.1 by default:
the frames are raw camera images and stay on the machine (``--host 0.0.0.0`` lets a tablet on
the site's own network label them; nothing else is served).

Every change on the page is saved at once (``points.csv`` and ``counts.json``, each replaced
atomically, see :mod:`crowdwatch.labeling.point_labels`), so closing the tab loses nothing; a
save the disk refuses is shown on the page, which keeps the marks and retries on the next change.

API (JSON): ``GET /api/frames`` (the frames, each with this annotator's count or ``null``, and
the other annotators' counts), ``GET /api/marks/NAME`` (``{"points": [[x, y], ...] | null}``),
``PUT /api/marks/NAME`` with ``{"points": [[x, y], ...]}`` (``[]``: marked empty), ``GET
/frames/NAME`` (the image).
"""

from __future__ import annotations

import json
import logging
import math
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from crowdwatch.labeling.point_labels import (
    LabelError,
    Labels,
    check_annotator,
    frame_files,
    load_folder,
    write_folder,
)

logger = logging.getLogger(__name__)

PAGE = Path(__file__).with_name("static") / "label.html"
MAX_BODY_BYTES = 2_000_000
"""A frame's marks: even 20,000 people is far below this."""
MAX_COORDINATE = 100_000.0
_CONTENT_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}


class LabelStore:
    """The frames of a folder and one annotator's marks on them; saves every change."""

    def __init__(self, folder: Path, annotator: str) -> None:
        self.annotator = check_annotator(annotator)
        self.labels: Labels = load_folder(folder)  # LabelError: the folder, a bad label file
        self.label_folder = folder
        images = folder / "images" if (folder / "images").is_dir() else folder
        self.frames = {path.name: path for path in frame_files(images)}
        if not self.frames:
            raise LabelError(
                f"{folder}: no .jpg or .png frames (capture some with `crowdwatch capture`)"
            )
        self._lock = threading.Lock()

    def listing(self) -> dict[str, Any]:
        with self._lock:
            return {
                "annotator": self.annotator,
                "frames": [
                    {
                        "name": name,
                        "count": self.labels.count(name, self.annotator),
                        "others": {
                            who: self.labels.count(name, who)
                            for who in self.labels.annotators(name)
                            if who != self.annotator
                        },
                    }
                    for name in self.frames
                ],
            }

    def marks(self, name: str) -> list[tuple[float, float]] | None:
        with self._lock:
            return self.labels.points(name, self.annotator)

    def save(self, name: str, points: list[tuple[float, float]]) -> int:
        """Replace this annotator's marks on ``name`` and write the folder's label files.

        Raises:
            LabelError: the files cannot be written (the marks stay in memory for the next save).
        """
        with self._lock:
            self.labels.set_marks(name, self.annotator, points)
            write_folder(self.label_folder, self.labels)
            return len(points)


def parse_points(body: bytes) -> list[tuple[float, float]]:
    """``{"points": [[x, y], ...]}`` into points, or ``ValueError`` saying what is wrong.

    Example:
        >>> parse_points(b'{"points": [[10, 20.5]]}')
        [(10.0, 20.5)]
    """
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"expected JSON {{'points': [[x, y], ...]}}: {exc}") from None
    points = data.get("points") if isinstance(data, dict) else None
    if not isinstance(points, list):
        raise ValueError("expected JSON {'points': [[x, y], ...]}, got no 'points' list")
    result = []
    for index, point in enumerate(points):
        if not (
            isinstance(point, list)
            and len(point) == 2
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in point)
            and all(math.isfinite(v) and 0 <= v <= MAX_COORDINATE for v in point)
        ):
            raise ValueError(
                f"points[{index}]: expected [x, y] pixel positions >= 0, got {point!r}"
            )
        result.append((float(point[0]), float(point[1])))
    return result


def _handler(store: LabelStore) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "crowdwatch-label"

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("%s %s", self.address_string(), format % args)

        def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: HTTPStatus, value: object) -> None:
            self._send(status, json.dumps(value).encode(), "application/json")

        def _frame_name(self, prefix: str) -> str | None:
            name = unquote(urlsplit(self.path).path[len(prefix) :])
            if name not in store.frames:  # only the folder's frames: no path ever reaches disk
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no frame {name!r} in this folder"})
                return None
            return name

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path == "/":
                self._send(HTTPStatus.OK, PAGE.read_bytes(), "text/html; charset=utf-8")
            elif path == "/api/frames":
                self._json(HTTPStatus.OK, store.listing())
            elif path.startswith("/api/marks/"):
                if (name := self._frame_name("/api/marks/")) is not None:
                    self._json(HTTPStatus.OK, {"points": store.marks(name)})
            elif path.startswith("/frames/"):
                if (name := self._frame_name("/frames/")) is not None:
                    image = store.frames[name]
                    self._send(
                        HTTPStatus.OK, image.read_bytes(), _CONTENT_TYPES[image.suffix.lower()]
                    )
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no page {path!r}"})

        def do_PUT(self) -> None:
            if not urlsplit(self.path).path.startswith("/api/marks/"):
                self._json(HTTPStatus.NOT_FOUND, {"error": "PUT only /api/marks/NAME"})
                return
            if (name := self._frame_name("/api/marks/")) is None:
                return
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                length = -1
            if not 0 < length <= MAX_BODY_BYTES:
                self._json(
                    HTTPStatus.BAD_REQUEST,
                    {"error": f"expected a JSON body of 1-{MAX_BODY_BYTES} bytes"},
                )
                return
            try:
                points = parse_points(self.rfile.read(length))
            except ValueError as exc:
                self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
                return
            try:
                count = store.save(name, points)
            except LabelError as exc:
                logger.error("%s", exc)
                self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": str(exc)})
                return
            self._json(HTTPStatus.OK, {"count": count})

    return Handler


def make_server(
    store: LabelStore, host: str = "127.0.0.1", port: int = 8095
) -> ThreadingHTTPServer:
    """The page's HTTP server (port 0: a free one); call ``serve_forever`` and ``shutdown``.

    Raises:
        LabelError: the address is taken or cannot be bound.
    """
    try:
        server = ThreadingHTTPServer((host, port), _handler(store))
    except OSError as exc:
        raise LabelError(f"cannot listen on {host}:{port} ({exc}); pick another --port") from exc
    # HTTP/1.0: each request thread ends with its reply, so closing the server can wait for them.
    server.daemon_threads = False
    return server
