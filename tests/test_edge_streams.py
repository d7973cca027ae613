"""A live HTTP (MJPEG) camera that freezes, drops and returns: offline meanwhile, never 0 people."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pets import pets_video
from services.mjpeg import MjpegCamera

from crowdwatch.contracts.errors import SourceError
from crowdwatch.edge.source import Backoff, SourceKind, VideoSource, classify_source

# The camera-stream faults: part of `pytest -m faults`.
pytestmark = pytest.mark.faults

STALL_S = 1.5


@pytest.fixture
def camera(shared_dir: Path) -> Iterator[MjpegCamera]:
    cam = MjpegCamera(pets_video(shared_dir))
    cam.start()
    try:
        yield cam
    finally:
        cam.stop()


def _frames_arrive(source: VideoSource, stop: threading.Event, count: int, timeout: float) -> int:
    got = 0
    deadline = time.monotonic() + timeout
    for frame in source.frames(stop):
        if frame is not None:
            got += 1
        if got >= count or time.monotonic() > deadline:
            break
    return got


def _wait_state(source: VideoSource, online: bool, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while source.online is not online:
        assert time.monotonic() < deadline, (
            f"source still {'offline' if online else 'online'}: {source.detail}"
        )
        time.sleep(0.05)


@pytest.mark.data
def test_a_frozen_then_dropped_stream_goes_offline_and_comes_back(camera: MjpegCamera) -> None:
    assert classify_source(camera.url) is SourceKind.STREAM
    stop = threading.Event()
    source = VideoSource(camera.url, stall_timeout_s=STALL_S, backoff=Backoff(0.2, 1.0))
    source.open()
    consumer_frames: list[int] = []

    def consume() -> None:
        for frame in source.frames(stop):
            if frame is not None:
                consumer_frames.append(frame.index)

    reader = threading.Thread(target=consume, name="test-stream-consumer")
    reader.start()
    try:
        _wait_state(source, True, 5)
        deadline = time.monotonic() + 10
        while len(consumer_frames) < 10:
            assert time.monotonic() < deadline, "no frames from the live stream"
            time.sleep(0.05)

        camera.freeze()  # connection open, nothing sent: the watchdog must notice
        _wait_state(source, False, STALL_S + 5)
        assert "stream lost" in source.detail

        camera.stop()
        camera.start()  # the camera returns on the same address
        _wait_state(source, True, 10)
        before = len(consumer_frames)
        deadline = time.monotonic() + 10
        while len(consumer_frames) < before + 10:
            assert time.monotonic() < deadline, "frames did not resume after the camera returned"
            time.sleep(0.05)
    finally:
        stop.set()
        source.close()
        reader.join(10)


def test_an_unreachable_stream_fails_to_open_and_stays_offline() -> None:
    source = VideoSource("http://127.0.0.1:9/nothing.mjpg", stall_timeout_s=0.5)
    with pytest.raises(SourceError, match="cannot open stream"):
        source.open()
    assert not source.online
