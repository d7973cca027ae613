"""Tracking on PETS 2009 (ids stable), the line evaluation, the worker publishing lines and waits."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from factories import make_config, site_dict
from numpy.typing import NDArray

from crowdwatch.contracts.config import Camera, DebugSnapshotConfig, TrackingConfig
from crowdwatch.contracts.errors import ConfigError
from crowdwatch.contracts.messages import decode_counts
from crowdwatch.edge.counting import CameraCounter
from crowdwatch.edge.detections import Detections
from crowdwatch.edge.detector import OnnxYoloDetector
from crowdwatch.edge.snapshot import blur_people, render_snapshot
from crowdwatch.edge.source import open_camera
from crowdwatch.edge.tracking import PersonTracker
from crowdwatch.edge.worker import CameraWorker
from crowdwatch.evaluation.lines import (
    PETS_FPS,
    PETS_LINES,
    evaluate_pets_lines,
    pets_tracks,
    true_crossings,
)

pytestmark = pytest.mark.data


class TruthDetector:
    """A Detector that 'finds' the annotated boxes of each PETS frame, in order of calls."""

    def __init__(self, shared_dir: Path) -> None:
        self.boxes: dict[int, list[tuple[int, float, float, float, float]]] = defaultdict(list)
        for object_id, track in pets_tracks(shared_dir).items():
            for frame, x, y, h in track:
                w = h * 0.4
                self.boxes[frame].append((object_id, x - w / 2, y - h, x + w / 2, y))
        self.frame = 0

    def detect(self, frame: NDArray[np.uint8]) -> Detections:
        rows = self.boxes.get(self.frame, [])
        self.frame += 1
        xyxy = np.array([r[1:] for r in rows], dtype=np.float32).reshape(-1, 4)
        n = len(rows)
        return Detections(xyxy, np.full(n, 0.9, dtype=np.float32), np.zeros(n, dtype=np.int64))


def test_ids_are_stable_across_frames(shared_dir: Path) -> None:
    """Perfect boxes of 60 frames: every annotated person keeps one track id, and vice versa."""
    truth = TruthDetector(shared_dir)
    tracker = PersonTracker(TrackingConfig(), frame_rate=PETS_FPS)
    pairs: Counter[tuple[int, int]] = Counter()
    image = np.zeros((576, 768, 3), dtype=np.uint8)
    for frame in range(60):
        rows = truth.boxes[frame]
        tracked = tracker.update(truth.detect(image), ts=frame / PETS_FPS)
        assert tracked.tracker_id is not None
        for box, track_id in zip(tracked.xyxy, tracked.tracker_id, strict=True):
            if track_id < 0:
                continue
            (object_id,) = [r[0] for r in rows if np.allclose(r[1:], box, atol=1e-3)]
            pairs[(object_id, int(track_id))] += 1
    people = {obj for obj, _ in pairs}
    assert len(people) >= 5
    assert len({obj for obj, _ in pairs}) == len(pairs) == len({t for _, t in pairs})


def test_ids_stay_unique_when_the_clock_goes_back() -> None:
    tracker = PersonTracker(TrackingConfig(), frame_rate=10.0)
    one = Detections(
        np.array([[10, 20, 40, 100]], dtype=np.float32),
        np.array([0.9], dtype=np.float32),
        np.array([0]),
    )
    first = [tracker.update(one, ts=t / 10).tracker_id for t in range(3)]
    again = [tracker.update(one, ts=t / 10).tracker_id for t in range(3)]  # file played again
    assert [ids.tolist() for ids in first + again] == [[-1], [0], [0], [-1], [1], [1]]


def test_line_evaluation_with_perfect_detections_matches_the_truth(shared_dir: Path) -> None:
    """The whole video through tracker + lines; with the annotated boxes nothing may be lost."""
    results = evaluate_pets_lines(shared_dir, TruthDetector(shared_dir))
    truth = true_crossings(pets_tracks(shared_dir))
    assert [r.line_id for r in results] == [line.id for line in PETS_LINES]
    for result in results:
        assert (result.true_in, result.true_out) == truth[result.line_id]
        assert min(result.true_in, result.true_out) >= 10  # lines with real traffic
        assert (result.counted_in, result.counted_out) == (result.true_in, result.true_out)
        assert result.max_error_pct == 0.0


def pets_camera(video: Path, **extra: object) -> Camera:
    site = site_dict(source=str(video))
    site["cameras"][0]["lines"] = [line.model_dump() for line in PETS_LINES]
    site["cameras"][0].update(extra)
    return make_config(sites=[site]).sites[0].cameras[0]


def test_worker_publishes_lines_waits_and_density(shared_dir: Path, tmp_path: Path) -> None:
    video = shared_dir / "data" / "pets2009_s2l1" / "vtest.avi"
    calibration = {
        "image_points": [[0, 100], [768, 100], [768, 576], [0, 576]],
        "ground_points_m": [[0, 0], [38.4, 0], [38.4, 23.8], [0, 23.8]],
    }
    cam = pets_camera(video, calibration=calibration)
    sent: list[tuple[str, bytes, bool]] = []
    detector = OnnxYoloDetector(shared_dir / "models" / "yolo11n_coco_640.onnx")
    snapshots = tmp_path / "snapshots"
    with open_camera(cam, max_frames=30) as source:
        CameraWorker(
            "stop-a",
            cam,
            source,
            detector,
            lambda topic, payload, retain: sent.append((topic, payload, retain)),
            topic_prefix="cw",
            interval_s=1.0,
            snapshot=DebugSnapshotConfig(dir=str(snapshots)),
        ).run(threading.Event())
    counts = [decode_counts(p) for t, p, _ in sent if t.endswith("/counts")]
    assert len(counts) == 3
    for message in counts:
        assert [line.line_id for line in message.lines] == ["west", "centre", "east"]
        (platform,) = message.zones
        assert platform.density_per_m2 == pytest.approx(platform.count / (38.4 * 23.8), abs=1e-3)
    # Waits grow with the people who stay: the last interval's longest wait is ~2.9 s.
    waits = [m.zones[0].longest_wait_s for m in counts]
    assert waits[0] is not None and waits[-1] is not None
    assert waits[0] < waits[-1] <= 3.0
    assert all(m.zones[0].median_wait_s is not None for m in counts)
    # The annotated crossings of the first 3 s: one person in at the west line, one out east.
    truth = true_crossings(
        {k: [p for p in t if p[0] < 30] for k, t in pets_tracks(shared_dir).items()}
    )
    published = {
        line.line_id: (
            sum(m.lines[i].in_count for m in counts),
            sum(m.lines[i].out_count for m in counts),
        )
        for i, line in enumerate(counts[0].lines)
    }
    assert published == truth
    assert sum(in_ + out for in_, out in truth.values()) >= 2
    assert (snapshots / "stop-a_cam1.jpg").stat().st_size > 10_000


def test_without_tracking_there_are_no_waits_and_lines_are_refused(shared_dir: Path) -> None:
    video = shared_dir / "data" / "pets2009_s2l1" / "vtest.avi"
    off = TrackingConfig(enabled=False)
    with pytest.raises(ConfigError, match=r"counting lines, which need edge\.tracking\.enabled"):
        CameraCounter("stop-a", pets_camera(video), off, PETS_FPS)
    counter = CameraCounter("stop-a", pets_camera(video, lines=[]), off, PETS_FPS)
    image = np.zeros((576, 768, 3), dtype=np.uint8)
    counter.observe(TruthDetector(shared_dir).detect(image), 0.0, (768, 576))
    message = counter.finish(datetime.now(UTC), 1.0)
    assert message is not None
    assert message.zones[0].count == 3
    assert (message.zones[0].longest_wait_s, message.zones[0].median_wait_s) == (None, None)
    assert message.zones[0].density_per_m2 is None


def test_snapshot_blurs_people_and_nothing_else() -> None:
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, size=(200, 300, 3), dtype=np.uint8)  # sharp noise everywhere
    person = Detections(
        np.array([[100, 50, 160, 190]], dtype=np.float32),
        np.array([0.9], dtype=np.float32),
        np.array([0]),
    )
    original = image.copy()
    blurred = blur_people(image, person)
    assert np.array_equal(image, original)  # the frame itself is never changed

    def sharpness(img: NDArray[np.uint8]) -> float:
        return float(np.abs(np.diff(img.astype(np.int16), axis=1)).mean())

    assert sharpness(blurred[50:190, 100:160]) < 0.2 * sharpness(image[50:190, 100:160])
    assert np.array_equal(blurred[:, :95], image[:, :95])  # outside the box: untouched
    drawn = render_snapshot(
        image, person, [np.array([[10.0, 10.0], [50.0, 10.0], [50.0, 50.0]])], []
    )
    assert sharpness(drawn[60:180, 110:150]) < 0.2 * sharpness(image[60:180, 110:150])
