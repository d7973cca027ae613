"""A camera worker on the first seconds of the PETS 2009 walkway, with an in-memory publisher."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from factories import make_config, site_dict

from crowdwatch.contracts.config import Camera
from crowdwatch.contracts.errors import BrokerError, SourceError
from crowdwatch.contracts.messages import (
    CameraState,
    CountMessage,
    StatusMessage,
    decode_counts,
    decode_status,
)
from crowdwatch.edge.detector import OnnxYoloDetector
from crowdwatch.edge.source import (
    Backoff,
    SourceKind,
    VideoSource,
    classify_source,
    open_camera,
    redact_source,
)
from crowdwatch.edge.worker import CameraWorker

PREFIX = "cw"
SKY = [[0, 0], [768, 0], [768, 40], [0, 40]]  # the top of the walkway picture: nobody stands there


@dataclass
class Published:
    """The in-memory publisher: records what a worker sends (the seam instead of a broker)."""

    messages: list[tuple[str, bytes, bool]] = field(default_factory=list)
    stop_after_status: threading.Event | None = None

    def __call__(self, topic: str, payload: bytes, retain: bool) -> None:
        self.messages.append((topic, payload, retain))
        if self.stop_after_status is not None and topic.endswith("/status"):
            self.stop_after_status.set()

    def on(self, kind: str) -> list[tuple[bytes, bool]]:
        return [(p, r) for t, p, r in self.messages if t == f"{PREFIX}/v1/stop-a/cam1/{kind}"]

    def counts(self) -> list[CountMessage]:
        return [decode_counts(p) for p, _ in self.on("counts")]

    def statuses(self) -> list[StatusMessage]:
        return [decode_status(p) for p, _ in self.on("status")]

    def available(self) -> list[str]:
        return [p.decode() for p, _ in self.on("available")]


def camera(source: str, *, loop: bool = False, realtime: bool = False) -> Camera:
    site = site_dict(source=source)
    cam = site["cameras"][0]
    cam.update(loop=loop, realtime=realtime)
    cam["zones"].append({"id": "sky", "name": {"zh": "天空", "en": "Sky"}, "polygon": SKY})
    return make_config(sites=[site]).sites[0].cameras[0]


@pytest.fixture(scope="module")
def video(shared_dir: Path) -> Path:
    return shared_dir / "data" / "pets2009_s2l1" / "vtest.avi"


@pytest.fixture(scope="module")
def detector(shared_dir: Path) -> OnnxYoloDetector:
    return OnnxYoloDetector(shared_dir / "models" / "yolo11n_coco_640.onnx")


def worker_for(
    cam: Camera, source: VideoSource, detector: OnnxYoloDetector, sink: Published
) -> CameraWorker:
    return CameraWorker("stop-a", cam, source, detector, sink, topic_prefix=PREFIX, interval_s=1.0)


@pytest.mark.data
def test_three_seconds_of_walkway(video: Path, detector: OnnxYoloDetector) -> None:
    cam = camera(str(video))
    sink = Published()
    # 30 frames at 10 fps: three intervals of one second of video time each.
    with open_camera(cam, max_frames=30) as source:
        worker_for(cam, source, detector, sink).run(threading.Event())

    counts = sink.counts()
    assert len(counts) == 3
    for message in counts:
        assert (message.site_id, message.camera_id) == ("stop-a", "cam1")
        assert (message.frames, message.interval_s, message.lines) == (10, 1.0, [])
        zones = {z.zone_id: z for z in message.zones}
        assert set(zones) == {"platform", "sky"}
        platform = zones["platform"]
        assert 0 < platform.count <= platform.count_max
        assert 0 < platform.count_mean <= platform.count_max
        assert (zones["sky"].count, zones["sky"].count_max, zones["sky"].count_mean) == (0, 0, 0.0)
    assert all(not retain for _, retain in sink.on("counts"))

    assert sink.available() == ["online", "offline"]
    assert all(retain for _, retain in sink.on("available"))
    statuses = sink.statuses()
    # One status per interval; the last one closes with the source, which is then offline.
    assert [s.state for s in statuses] == [CameraState.ONLINE] * 2 + [CameraState.OFFLINE]
    assert all(retain for _, retain in sink.on("status"))
    assert all(s.fps > 0 and s.inference_ms > 0 and s.dropped_frames == 0 for s in statuses)
    assert statuses[-1].detail == "read the 30 frames asked for"


@pytest.mark.data
def test_a_partial_last_interval_is_published_with_its_length(
    video: Path, detector: OnnxYoloDetector
) -> None:
    cam = camera(str(video))
    sink = Published()
    with open_camera(cam, max_frames=15) as source:
        worker_for(cam, source, detector, sink).run(threading.Event())
    assert [(m.frames, m.interval_s) for m in sink.counts()] == [(10, 1.0), (5, 0.5)]


@pytest.mark.data
def test_counting_goes_on_when_the_broker_is_away(video: Path, detector: OnnxYoloDetector) -> None:
    attempts: list[str] = []

    def broker_down(topic: str, payload: bytes, retain: bool) -> None:
        attempts.append(topic.rsplit("/", 1)[1])
        raise BrokerError("cannot reach MQTT broker 127.0.0.1:1: connection refused")

    cam = camera(str(video))
    with open_camera(cam, max_frames=20) as source:
        CameraWorker(
            "stop-a", cam, source, detector, broker_down, topic_prefix=PREFIX, interval_s=1.0
        ).run(threading.Event())
    # Every interval was still counted and offered for publishing.
    assert attempts.count("counts") == 2
    assert attempts[0] == "available" and attempts[-1] == "available"


@pytest.mark.data
def test_realtime_file_is_read_like_a_live_camera(video: Path) -> None:
    """Paced on a capture thread with wall-clock frame times; a busy consumer drops frames."""
    stop = threading.Event()
    with VideoSource(str(video), realtime=True, queue_size=1, max_frames=20) as source:
        assert not source.video_clock
        received = []
        for frame in source.frames(stop):
            if frame is None:
                continue
            received.append(frame)
            time.sleep(0.4)  # a consumer slower than the file's 10 fps
    assert 0 < len(received) < 20
    assert source.dropped_frames == 20 - len(received)
    assert [f.index for f in received] == sorted(f.index for f in received)


@pytest.mark.data
def test_looping_file_restarts_and_video_time_keeps_rising(video: Path) -> None:
    stop = threading.Event()
    with VideoSource(str(video), loop=True, max_frames=800) as source:
        frames = [f for f in source.frames(stop) if f is not None]
    assert len(frames) == 800  # the file has 795 frames
    assert [f.ts for f in frames[793:798]] == pytest.approx([79.3, 79.4, 79.5, 79.6, 79.7])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("/nonexistent/walkway.avi", "video file not found: /nonexistent/walkway.avi"),
        ("clips/missing.mp4", "video file not found: clips/missing.mp4"),
    ],
)
def test_missing_video_file_fails_at_start(spec: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        open_camera(camera(spec))


def test_a_file_opencv_cannot_decode_fails_at_start(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.avi"
    bogus.write_text("not a video")
    with pytest.raises(SourceError, match=f"cannot open video file {bogus}"):
        VideoSource(str(bogus)).open()


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ("0", SourceKind.USB),
        ("12", SourceKind.USB),
        ("rtsp://10.0.0.5:554/stream1", SourceKind.STREAM),
        ("http://cam.local/mjpeg", SourceKind.STREAM),
        ("/data/walkway.avi", SourceKind.FILE),
        ("walkway 2.mp4", SourceKind.FILE),
    ],
)
def test_classify_source(spec: str, kind: SourceKind) -> None:
    assert classify_source(spec) is kind


@pytest.mark.parametrize(
    ("spec", "shown"),
    [
        ("rtsp://admin:s3cret@10.0.0.5:554/stream1", "rtsp://admin:***@10.0.0.5:554/stream1"),
        ("rtsp://10.0.0.5/stream1", "rtsp://10.0.0.5/stream1"),
        ("http://viewer@cam.local/mjpeg", "http://viewer@cam.local/mjpeg"),
        ("/data/walk:way.avi", "/data/walk:way.avi"),
    ],
)
def test_stream_passwords_never_reach_messages(spec: str, shown: str) -> None:
    assert redact_source(spec) == shown


def test_dead_stream_is_offline_not_zero_people(detector: OnnxYoloDetector) -> None:
    """A stream that cannot be reached: no count message, an offline status and availability."""
    cam = camera("rtsp://admin:s3cret@127.0.0.1:9/nothing-listens-here")
    stop = threading.Event()
    sink = Published(stop_after_status=stop)
    source = open_camera(cam, backoff=Backoff(initial_s=0.05, max_s=0.1))
    with source:
        assert not source.online
        source.poll_s = 0.05
        worker = CameraWorker(
            "stop-a", cam, source, detector, sink, topic_prefix=PREFIX, interval_s=0.2
        )
        worker.run(stop)
    assert sink.counts() == []
    assert sink.available()[0] == "offline"
    status = sink.statuses()[0]
    assert status.state is CameraState.OFFLINE
    assert "rtsp://admin:***@127.0.0.1:9/nothing-listens-here" in status.detail
    assert "s3cret" not in status.detail
