"""``crowdwatch capture``: keep a camera's raw frames on the edge box, to label and adapt on.

    crowdwatch capture --camera beach-north/cam-1 --every 30m --count 20 frames/

The frames stay on this machine: nothing is published (no MQTT connection is made), the folder
is created readable by its owner only (0700, files 0600), and it is the operator's to delete
once the camera is adapted — the same rule as the edge's debug snapshot, which never leaves the
box either. Each frame is named by its unix time (``1660114800.jpg``), as the shared data sets
are, so a day's frames sort and group by time.

A live camera is opened for each shot and closed after it (a stream held open for half an hour
would be decoded all that time for nothing); a video file is read on, one frame per shot. A
camera that gives no frame at the first shot stops the command with one line naming it; a shot
missed later is logged and the capture goes on (an afternoon's capture survives a glitch).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from crowdwatch.contracts.config import Camera
from crowdwatch.contracts.errors import SourceError
from crowdwatch.edge.source import Frame, SourceKind, VideoSource, classify_source

logger = logging.getLogger(__name__)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
JPEG_QUALITY = 95
"""Heads are 5-10 px on a beach camera: keep the detail the person labelling needs."""


def parse_every(text: str) -> float:
    """Seconds between shots from ``30m``, ``90s``, ``2h`` or a bare number of seconds.

    Raises:
        ValueError: naming the text and the accepted forms.

    Example:
        >>> parse_every("30m"), parse_every("90s"), parse_every("1.5h"), parse_every("0.5")
        (1800.0, 90.0, 5400.0, 0.5)
    """
    match = _DURATION.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"--every: expected a duration like 30m, 90s or 2h, got {text!r}")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


@dataclass(slots=True)
class CaptureResult:
    """What a capture kept and what it missed."""

    saved: list[Path] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)
    """Why each missed shot was missed."""


def _frame_name(folder: Path, now: float) -> Path:
    path = folder / f"{int(now)}.jpg"
    serial = 1
    while path.exists():  # two shots in one second (a short --every): keep both
        path = folder / f"{int(now)}-{serial}.jpg"
        serial += 1
    return path


def _save(folder: Path, image: NDArray[np.uint8], now: float) -> Path:
    path = _frame_name(folder, now)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise SourceError(f"{path}: OpenCV could not encode the frame as JPEG")
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(np.asarray(data).tobytes())
    return path


def _live_frame(camera: Camera, stop: threading.Event) -> NDArray[np.uint8]:
    """One frame of a live camera, opened for it and closed after; ``SourceError`` if none."""
    with VideoSource(camera.source, stall_timeout_s=camera.stall_timeout_s) as source:
        source.open()
        deadline = time.monotonic() + camera.stall_timeout_s
        for frame in source.frames(stop):
            if frame is not None:
                return frame.image
            if time.monotonic() > deadline:
                break
        raise SourceError(
            f"no frame from {source.name} within {camera.stall_timeout_s:g} s "
            f"({source.detail or 'the stream sent nothing'})"
        )


def capture(
    camera_key: str,
    camera: Camera,
    folder: Path,
    *,
    every_s: float,
    count: int,
    stop: threading.Event,
    clock: Callable[[], float] = time.time,
) -> CaptureResult:
    """Keep ``count`` frames of ``camera``, one every ``every_s`` seconds, in ``folder``.

    Args:
        camera_key: ``SITE/CAM``, for messages.
        camera: the camera from the site config (its ``source``).
        folder: created (0700) when missing; frames are never overwritten.
        every_s: seconds between shots (the first is taken at once).
        count: frames to keep.
        stop: set to end early (Ctrl-C); what was saved stays.
        clock: the wall clock that names the frames.

    Raises:
        SourceError: the camera gives no frame at the first shot, or a video file is missing.
    """
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    result = CaptureResult()
    file_frames: Iterator[Frame | None] | None = None
    file_source: VideoSource | None = None
    if classify_source(camera.source) is SourceKind.FILE:
        file_source = VideoSource(camera.source)
        file_source.open()  # a missing file fails here, at the first shot
        file_frames = file_source.frames(stop)
    try:
        started = time.monotonic()
        for shot in range(count):
            # Shots keep to the schedule from the start: a slow open does not push the rest.
            if shot and stop.wait(max(0.0, started + shot * every_s - time.monotonic())):
                break
            try:
                if file_frames is not None:
                    frame = next(file_frames, None)
                    if frame is None:
                        result.missed.append("the video file has ended")
                        break
                    image = frame.image
                else:
                    image = _live_frame(camera, stop)
            except SourceError as exc:
                if not result.saved and not result.missed:
                    raise SourceError(
                        f"camera {camera_key}: {exc}; nothing captured — check that the camera "
                        "is on and that its source in the config is right"
                    ) from exc
                logger.warning(
                    "camera %s: shot %d of %d missed: %s", camera_key, shot + 1, count, exc
                )
                result.missed.append(str(exc))
                continue
            result.saved.append(_save(folder, image, clock()))
            logger.info(
                "camera %s: kept %s (%d of %d)", camera_key, result.saved[-1].name, shot + 1, count
            )
    finally:
        if file_source is not None:
            file_source.close()
    return result
