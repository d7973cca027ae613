"""A real MJPEG-over-HTTP camera on loopback, for stream tests: it can freeze, drop and return.

It serves ``multipart/x-mixed-replace`` JPEG frames (what most IP cameras' HTTP streams are)
read from a video file at a steady rate, the way OpenCV's FFmpeg backend reads a real camera.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2

from services.host import free_port

BOUNDARY = "crowdwatchframe"


class MjpegCamera:
    """``http://127.0.0.1:PORT/stream.mjpg`` serving the frames of ``video``.

    ``freeze()`` keeps connections open but sends nothing (a stalled camera); ``stop()``
    closes everything (a camera that dropped off the network); ``start()`` brings it back on
    the same port.
    """

    def __init__(self, video: Path, fps: float = 10.0, frames: int = 50) -> None:
        self.port = free_port()
        self.fps = fps
        self._jpegs = _encode_frames(video, frames)
        self._frozen = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self) -> None:
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.end_headers()
                index = 0
                while camera._server is not None:
                    if camera._frozen.is_set():
                        time.sleep(0.05)
                        continue
                    jpeg = camera._jpegs[index % len(camera._jpegs)]
                    try:
                        self.wfile.write(
                            f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                            f"Content-Length: {len(jpeg)}\r\n\r\n".encode()
                            + jpeg
                            + b"\r\n"
                        )
                        self.wfile.flush()
                    except OSError:
                        return  # the client went away, or stop() closed us
                    index += 1
                    time.sleep(1 / camera.fps)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._frozen.clear()
        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="mjpeg-camera")
        self._thread.start()

    def freeze(self) -> None:
        self._frozen.set()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None


def _encode_frames(video: Path, frames: int) -> list[bytes]:
    capture = cv2.VideoCapture(str(video))
    jpegs = []
    try:
        while len(jpegs) < frames:
            ok, image = capture.read()
            if not ok:
                break
            ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
            jpegs.append(buffer.tobytes())
    finally:
        capture.release()
    if not jpegs:
        raise RuntimeError(f"no frames decoded from {video}")
    return jpegs
