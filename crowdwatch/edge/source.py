"""Frames from a camera: a video file, an RTSP/HTTP stream or a USB camera, via OpenCV.

Two ways of reading, chosen by the source::

    file, not realtime      read on the caller's thread, as fast as it consumes (backpressure);
                            frame time is *video* time (frame number / file fps), so results
                            do not depend on how fast the machine is
    stream, USB, or a file  a capture thread reads at the source's pace into a bounded queue;
    with ``realtime``       when the queue is full the frame is dropped and counted, so the
                            capture never falls behind the camera; frame time is wall time
                            (``time.monotonic()``)

A live stream that dies is reopened with exponential backoff; meanwhile the source reports
itself offline (:attr:`VideoSource.online`) so the worker can say so: offline is not 0 people.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np
from numpy.typing import NDArray

from crowdwatch.contracts.config import Camera
from crowdwatch.contracts.errors import SourceError

logger = logging.getLogger(__name__)

DEFAULT_FPS = 25.0
"""Assumed when a file does not declare a usable frame rate."""

STREAM_TIMEOUT_MS = 10_000
"""FFmpeg open/read time-out: a stalled RTSP stream fails after this instead of hanging."""


class SourceKind(StrEnum):
    FILE = "file"
    STREAM = "stream"
    USB = "usb"


def classify_source(spec: str) -> SourceKind:
    """What a camera's ``source`` string names.

    Args:
        spec: ``"0"`` (USB index), ``"rtsp://..."``/``"http://..."`` (stream) or a file path.

    Returns:
        The kind of source.

    Example:
        >>> [classify_source(s) for s in ("0", "rtsp://cam/1", "clips/walkway.avi")]
        [<SourceKind.USB: 'usb'>, <SourceKind.STREAM: 'stream'>, <SourceKind.FILE: 'file'>]
    """
    if spec.isdigit():
        return SourceKind.USB
    if "://" in spec:
        return SourceKind.STREAM
    return SourceKind.FILE


def redact_source(spec: str) -> str:
    """The source with a stream URL's password masked, for logs and status messages.

    Example:
        >>> redact_source("rtsp://admin:s3cret@10.0.0.5:554/stream1")
        'rtsp://admin:***@10.0.0.5:554/stream1'
    """
    parts = urlsplit(spec)
    if "://" not in spec or parts.password is None:
        return spec
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame.

    Attributes:
        image: ``(H, W, 3)`` uint8 BGR.
        ts: seconds on the source's clock (:attr:`VideoSource.video_clock` says which).
        index: frames read since the source was opened, dropped ones and loops included.
    """

    image: NDArray[np.uint8]
    ts: float
    index: int

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` in pixels."""
        return int(self.image.shape[1]), int(self.image.shape[0])


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential delays between reconnection attempts: 1, 2, 4, ... capped at ``max_s``."""

    initial_s: float = 1.0
    max_s: float = 30.0

    def delays(self) -> Iterator[float]:
        """Endless sequence of delays in seconds."""
        delay = self.initial_s
        while True:
            yield delay
            delay = min(delay * 2, self.max_s)


_END = object()
"""Put on the queue by the capture thread when a file ends."""


class VideoSource:
    """A camera or video file that yields frames.

    Args:
        spec: the camera's ``source`` from the config (path, URL or USB index).
        loop: restart a file at its end.
        realtime: pace a file at its own fps on a capture thread, as if it were live.
        queue_size: frames buffered between the capture thread and the consumer.
        backoff: delays between attempts to reopen a live stream.
        max_frames: stop after reading this many frames (``None``: no limit).
        poll_s: how long :meth:`frames` waits for a live frame before yielding ``None``.

    Example:
        >>> stop = threading.Event()
        >>> with VideoSource("walkway.avi", max_frames=10) as source:  # doctest: +SKIP
        ...     for frame in source.frames(stop):
        ...         ...
    """

    def __init__(
        self,
        spec: str,
        *,
        loop: bool = False,
        realtime: bool = False,
        queue_size: int = 2,
        backoff: Backoff | None = None,
        max_frames: int | None = None,
        poll_s: float = 0.5,
        stall_timeout_s: float = STREAM_TIMEOUT_MS / 1000,
    ) -> None:
        self.spec = spec
        # The watchdog of a live stream: FFmpeg gives up an open or a read after this long, so
        # a frozen stream ends as "stream lost" and is reopened with backoff, never hangs.
        self.stall_timeout_ms = max(100, int(stall_timeout_s * 1000))
        self.name = redact_source(spec)  # for messages and logs: never show a password
        self.kind = classify_source(spec)
        self.loop = loop and self.kind is SourceKind.FILE
        self.realtime = realtime
        self.backoff = backoff or Backoff()
        self.max_frames = max_frames
        self.poll_s = poll_s
        self.fps = 0.0
        self._capture: Any = None  # cv2.VideoCapture
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._online = False
        self._detail = "not opened"
        self._dropped = 0
        self._read_count = 0
        self._count_at_open = 0
        self._open_attempted = False

    @property
    def video_clock(self) -> bool:
        """True when frame times are video time (a file read as fast as it is consumed)."""
        return self.kind is SourceKind.FILE and not self.realtime

    @property
    def online(self) -> bool:
        """Whether frames are coming (false while a live stream is being reopened)."""
        with self._lock:
            return self._online

    @property
    def detail(self) -> str:
        """Why the source is offline, or ``""``."""
        with self._lock:
            return self._detail

    @property
    def dropped_frames(self) -> int:
        """Frames the capture thread dropped because the consumer was busy, since opening."""
        with self._lock:
            return self._dropped

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def open(self) -> None:
        """Open the source now, so a wrong path or dead camera is reported at start.

        Raises:
            SourceError: naming the source and why it cannot be opened.
        """
        self._open_attempted = True
        self._open_capture()
        self._set_state(online=True, detail="")

    def _open_capture(self) -> None:
        self._release()
        if self.kind is SourceKind.FILE:
            if not Path(self.spec).is_file():
                raise SourceError(f"video file not found: {self.name}")
            capture = cv2.VideoCapture(self.spec)
        elif self.kind is SourceKind.USB:
            capture = cv2.VideoCapture(int(self.spec))
        else:
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                self.stall_timeout_ms,
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                self.stall_timeout_ms,
            ]
            capture = cv2.VideoCapture(self.spec, cv2.CAP_FFMPEG, params)
        if not capture.isOpened():
            capture.release()
            what = {SourceKind.FILE: "video file", SourceKind.USB: "USB camera"}
            raise SourceError(
                f"cannot open {what.get(self.kind, 'stream')} {self.name}: OpenCV could not "
                "open it (unreachable, wrong address, or a format it cannot decode)"
            )
        self._capture = capture
        self._count_at_open = self._read_count
        self.fps = self._declared_fps(capture)

    def _declared_fps(self, capture: Any) -> float:
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        if math.isfinite(fps) and 0 < fps <= 1000:
            return fps
        if self.kind is SourceKind.FILE:
            logger.warning(
                "%s declares no usable fps (%s); assuming %g", self.name, fps, DEFAULT_FPS
            )
            return DEFAULT_FPS
        return 0.0

    def _release(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def _read(self) -> NDArray[np.uint8] | None:
        """The next decoded frame, or ``None`` at the end or on a failure."""
        if self._capture is None:
            return None
        try:
            ok, image = self._capture.read()
        except cv2.error:
            logger.exception("OpenCV failed to read %s", self.name)
            return None
        if not ok or image is None:
            return None
        self._read_count += 1
        return np.asarray(image, dtype=np.uint8)

    def _set_state(self, *, online: bool, detail: str) -> None:
        with self._lock:
            changed = online != self._online
            self._online, self._detail = online, detail
        if changed and not online:
            logger.warning("camera source %s offline: %s", self.name, detail)
        elif changed:
            logger.info("camera source %s online", self.name)

    def _limit_reached(self) -> bool:
        return self.max_frames is not None and self._read_count >= self.max_frames

    def frames(self, stop: threading.Event) -> Iterator[Frame | None]:
        """Frames until ``stop`` is set, the file ends, or ``max_frames`` were read.

        Args:
            stop: set from another thread to end the iteration.

        Yields:
            A frame, or ``None`` when a live source delivered nothing for ``poll_s`` seconds
            (lets the caller keep its wall-clock intervals going during an outage).

        Raises:
            SourceError: the source was never opened and cannot be opened now.
        """
        if not self._open_attempted:
            self.open()
        if self.video_clock:
            yield from self._frames_in_caller(stop)
            return
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._capture_loop, name=f"capture {self.name}", daemon=True
            )
            self._thread.start()
        while not stop.is_set():
            try:
                item = self._queue.get(timeout=self.poll_s)
            except queue.Empty:
                yield None
                continue
            if item is _END:
                return
            assert isinstance(item, Frame)
            yield item

    def _frames_in_caller(self, stop: threading.Event) -> Iterator[Frame]:
        fps = self.fps or DEFAULT_FPS
        while not stop.is_set():
            if self._limit_reached():
                self._set_state(online=False, detail=f"read the {self.max_frames} frames asked for")
                return
            image = self._read()
            if image is None:
                if self._restart_file():
                    continue
                self._file_ended()
                return
            index = self._read_count - 1
            yield Frame(image=image, ts=index / fps, index=index)

    def _restart_file(self) -> bool:
        """Reopen a looping file at its start; false when it does not loop or cannot."""
        if not self.loop:
            return False
        if self._read_count == self._count_at_open:
            # Not one frame since the last (re)start: looping would spin forever.
            self._set_state(online=False, detail=f"no frame could be decoded from {self.name}")
            return False
        try:
            self._open_capture()
        except SourceError as exc:
            self._set_state(online=False, detail=str(exc))
            return False
        return True

    def _capture_loop(self) -> None:
        """Capture thread: read at the source's pace, never block on the consumer."""
        delays = self.backoff.delays()
        started, paced = time.monotonic(), 0
        while not self._closing.is_set() and not self._limit_reached():
            if self._capture is None and not self._reconnect(delays):
                continue
            image = self._read()
            if image is None:
                if self.kind is SourceKind.FILE:
                    if self._restart_file():
                        continue
                    break
                self._release()
                self._set_state(online=False, detail=f"stream lost: no frame from {self.name}")
                continue
            delays = self.backoff.delays()
            if self.kind is SourceKind.FILE:
                # Realtime file: wait until this frame is due, as a camera would deliver it.
                paced += 1
                self._closing.wait(max(0.0, started + paced / self.fps - time.monotonic()))
            frame = Frame(image=image, ts=time.monotonic(), index=self._read_count - 1)
            try:
                self._queue.put_nowait(frame)
            except queue.Full:
                with self._lock:
                    self._dropped += 1
        if self._closing.is_set():
            self._set_state(online=False, detail="worker stopped")
        elif self._limit_reached():
            self._set_state(online=False, detail=f"read the {self.max_frames} frames asked for")
            self._put_end()
        elif self.kind is SourceKind.FILE:
            self._file_ended()
            self._put_end()

    def _file_ended(self) -> None:
        if self.online:  # keep the reason when a restart already failed
            self._set_state(online=False, detail="end of video file")

    def _reconnect(self, delays: Iterator[float]) -> bool:
        """One attempt to reopen a lost stream, after the next backoff delay."""
        delay = next(delays)
        if self._closing.wait(delay):
            return False
        try:
            self._open_capture()
        except SourceError as exc:
            self._set_state(online=False, detail=str(exc))
            logger.debug("reopening %s failed after %g s: %s", self.name, delay, exc)
            return False
        self._set_state(online=True, detail="")
        return True

    def _put_end(self) -> None:
        while not self._closing.is_set():
            try:
                self._queue.put(_END, timeout=0.2)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        """Stop the capture thread and release the device or file."""
        self._closing.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._release()


def open_camera(
    camera: Camera, *, max_frames: int | None = None, backoff: Backoff | None = None
) -> VideoSource:
    """Open a configured camera's source, the way every edge process should.

    A missing or unreadable video file is a config mistake and fails here, at start.  A live
    stream that is down at start is not: its capture thread keeps retrying with backoff and
    the camera is reported offline meanwhile.

    Args:
        camera: the camera from the config (``source``, ``loop``, ``realtime``).
        max_frames: stop after this many frames (``None``: no limit).
        backoff: delays between reconnection attempts of a live stream.

    Returns:
        The source, opened when it could be.

    Raises:
        SourceError: a video file is missing or cannot be decoded; a ``simulated`` camera.
    """
    if camera.simulated:
        raise SourceError(f"camera {camera.id!r} is simulated: it has no video to read")
    source = VideoSource(
        camera.source,
        loop=camera.loop,
        realtime=camera.realtime,
        stall_timeout_s=camera.stall_timeout_s,
        max_frames=max_frames,
        backoff=backoff,
    )
    try:
        source.open()
    except SourceError as exc:
        if source.kind is SourceKind.FILE:
            raise
        logger.warning("%s; will keep retrying", exc)
    return source
