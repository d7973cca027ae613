"""Density counts a zone cannot hold, or jumps no crowd makes, are flagged, never published.

Unit tests build density maps from arrays (the count is what the cells say); the data-set
test runs the committed counter over generated empty ground, the beach webcam and
ShanghaiTech B as one stream and checks that no published count breaks a bound.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from factories import site_dict

from crowdwatch.contracts.config import (
    Camera,
    DenseConfig,
    PlausibilityConfig,
    TrackingConfig,
    Zone,
)
from crowdwatch.contracts.messages import (
    MAX_PEOPLE,
    CountMessage,
    CountMethod,
    ZoneCount,
    decode_counts,
)
from crowdwatch.edge.counting import CameraCounter
from crowdwatch.edge.dense import DensityCounter, DensityMap, FrameQuality
from crowdwatch.edge.detections import Detections
from crowdwatch.edge.plausibility import CountPlausibility, polygon_area_px

WIDTH, HEIGHT = 160, 96
SQUARE = [(0.0, 0.0), (80.0, 0.0), (80.0, 80.0), (0.0, 80.0)]
"""An 80x80 px zone: 6,400 px, 400 people at the default one per 16 px."""
METRES = {
    "image_points": [[0, 0], [160, 0], [160, 96], [0, 96]],
    "ground_points_m": [[0, 0], [16, 0], [16, 9.6], [0, 9.6]],
}
"""10 px per metre: the 80x80 px zone is 64 m², 384 people at 6 per m²."""


def zone(mode: str = "dense", **extra: Any) -> Zone:
    return Zone.model_validate(
        {"id": "sand", "name": {"zh": "沙滩", "en": "Sand"}, "polygon": SQUARE, "mode": mode}
        | extra
    )


def camera(mode: str = "dense", calibrated: bool = False, **extra: Any) -> Camera:
    cam = site_dict()["cameras"][0]
    cam["frame_size"] = [WIDTH, HEIGHT]
    cam["zones"] = [zone(mode, **extra).model_dump(mode="json")]
    if calibrated:
        cam["calibration"] = METRES
    return Camera.model_validate(cam)


def density_of(people: float, ok: bool = True) -> DensityMap:
    """A map with ``people`` spread over the zone's cells (10x10 of the 12x20 grid)."""
    cells = np.zeros((HEIGHT // 8, WIDTH // 8), dtype=np.float32)
    cells[:10, :10] = people / 100
    quality = FrameQuality(True, None) if ok else FrameQuality(False, "too dark (mean 6/255)")
    return DensityMap(cells, (HEIGHT, WIDTH), quality)


def sand(message: CountMessage | None) -> ZoneCount:
    assert message is not None
    (only,) = message.zones
    return only


# --- the bounds ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("areas", "extra", "rules", "passes", "expected"),
    [
        # Uncalibrated: 6,400 px at one person per 16 px holds 400.
        (None, {}, {}, [(0.0, 399.0)], [None]),
        (None, {}, {}, [(0.0, 401.0)], ["more than the 400 the zone's 6400 px"]),
        # Calibrated: 64 m² at 6 per m² holds 384; a beach zone's own 1 per m² holds 64.
        ({"sand": 64.0}, {}, {}, [(0.0, 380.0)], [None]),
        ({"sand": 64.0}, {}, {}, [(0.0, 390.0)], ["390 people on 64 m² is 6.1 per m²"]),
        ({"sand": 64.0}, {"max_per_m2": 1.0}, {}, [(0.0, 70.0)], ["more than the 1 that"]),
        # Jumps: 30 + half the last + 10/s; measured from the last accepted count.
        (None, {}, {}, [(0.0, 100.0), (1.0, 190.0)], [None, None]),
        (None, {}, {}, [(0.0, 100.0), (1.0, 191.0)], [None, "100 to 191 people in 1 s"]),
        (None, {}, {}, [(0.0, 100.0), (1.0, 300.0), (2.0, 300.0)], [None, "jump", "jump"]),
        (None, {}, {}, [(0.0, 100.0), (1.0, 300.0), (13.0, 300.0)], [None, "jump", None]),
        (None, {}, {}, [(0.0, 300.0), (1.0, 100.0)], [None, "300 to 100 people"]),
        # Each bound can be switched off.
        (None, {}, {"min_px_per_person": None}, [(0.0, 5000.0)], [None]),
        (None, {}, {"max_change_per_s": None}, [(0.0, 4.0), (1.0, 390.0)], [None, None]),
    ],
)
def test_counts_beyond_room_or_jump_are_flagged(
    areas: dict[str, float] | None,
    extra: dict[str, Any],
    rules: dict[str, Any],
    passes: list[tuple[float, float]],
    expected: list[str | None],
) -> None:
    check = CountPlausibility([zone(**extra)], areas, PlausibilityConfig(**rules))
    for (ts, count), want in zip(passes, expected, strict=True):
        reason = check.check("sand", count, ts)
        if want is None:
            assert reason is None, (ts, count, reason)
        else:
            assert reason is not None and reason.startswith("implausible: "), (ts, count)
            assert want in reason


def test_polygon_area_is_the_zones_pixels() -> None:
    assert polygon_area_px(SQUARE) == 6400.0


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_per_m2": 0}, "greater than 0"),
        ({"max_per_m2": 25}, "less than or equal to 20"),
        ({"jump_ratio": -1}, "greater than or equal to 0"),
        ({"max_change_per_s": "fast"}, "valid number"),
    ],
)
def test_plausibility_settings_are_checked(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PlausibilityConfig.model_validate(settings)


# --- the edge's messages ---------------------------------------------------------------------


def test_an_implausible_pass_keeps_the_last_count_and_says_why() -> None:
    cc = CameraCounter("stop-a", camera(calibrated=True), TrackingConfig(enabled=False), 10.0)
    cc.observe(Detections.empty(), 0.0, (WIDTH, HEIGHT), density_of(40.0))
    first = sand(cc.finish(datetime.now(UTC), 1.0))
    assert (first.count, first.method, first.count_flag, first.flagged_count) == (
        40,
        CountMethod.DENSE,
        None,
        None,
    )

    cc.observe(Detections.empty(), 1.0, (WIDTH, HEIGHT), density_of(1167.0))
    refused = sand(cc.finish(datetime.now(UTC), 1.0))
    assert refused.count == 40  # not 1,167: the last usable reading
    assert refused.flagged_count == 1167
    assert refused.count_flag is not None
    assert "1167 people on 64 m² is 18.2 per m²" in refused.count_flag

    cc.observe(Detections.empty(), 2.0, (WIDTH, HEIGHT), density_of(45.0))
    back = sand(cc.finish(datetime.now(UTC), 1.0))
    assert (back.count, back.count_flag, back.flagged_count) == (45, None, None)


def test_an_auto_zone_counts_boxes_while_its_density_is_implausible() -> None:
    cc = CameraCounter("stop-a", camera("auto"), TrackingConfig(enabled=False), 10.0)
    small = Detections(
        xyxy=np.array([[5, 5, 9, 15], [20, 20, 24, 30]], dtype=np.float32),
        confidence=np.full(2, 0.9, dtype=np.float32),
        class_id=np.zeros(2, dtype=np.int64),
    )
    cc.observe(small, 0.0, (WIDTH, HEIGHT), density_of(5000.0))
    zone_count = sand(cc.finish(datetime.now(UTC), 1.0))
    assert (zone_count.count, zone_count.method) == (2, CountMethod.DETECT)
    assert zone_count.count_flag is not None and "more than the 400" in zone_count.count_flag


def test_an_unusable_frame_is_flagged_in_the_message() -> None:
    cc = CameraCounter("stop-a", camera(), TrackingConfig(enabled=False), 10.0)
    cc.observe(Detections.empty(), 0.0, (WIDTH, HEIGHT), density_of(30.0))
    cc.finish(datetime.now(UTC), 1.0)
    cc.observe(Detections.empty(), 1.0, (WIDTH, HEIGHT), density_of(2234.0, ok=False))
    night = sand(cc.finish(datetime.now(UTC), 1.0))
    assert (night.count, night.flagged_count) == (30, None)
    assert night.count_flag == "unusable frame: too dark (mean 6/255)"


def test_messages_without_the_flag_still_decode() -> None:
    old = (
        '{"schema": "crowdwatch.counts/1", "message_id": "m-0000001", "site_id": "stop-a", '
        '"camera_id": "cam-1", "ts": "2026-10-01T08:00:05Z", "interval_s": 5, "frames": 5, '
        '"zones": [{"zone_id": "sand", "count": 4, "count_max": 4, "count_mean": 4.0}]}'
    )
    (only,) = decode_counts(old.encode()).zones
    assert (only.count_flag, only.flagged_count) == (None, None)
    flagged = old.replace(
        '"count_mean": 4.0}',
        '"count_mean": 4.0, "count_flag": "implausible: x", "flagged_count": 9}',
    )
    (again,) = decode_counts(flagged.encode()).zones
    assert (again.count_flag, again.flagged_count) == ("implausible: x", 9)


# --- the committed counter on real and generated frames ----------------------------------------


def _stream_frames(shared_dir: Path) -> list[tuple[str, np.ndarray]]:
    """Empty ground, then beach webcam days, then ShanghaiTech B: one camera's changing view."""
    from crowdwatch.evaluation.datasets import (
        load_beach_days,
        load_empty_ground,
        load_shanghaitech_b,
    )

    frames: list[tuple[str, np.ndarray]] = []
    for dataset, picks in (
        (load_empty_ground(shared_dir), [0, 5, 10, 15, 20]),
        (load_beach_days(shared_dir), [0, 4, 5, 14, 25, 40, 45]),
        (load_shanghaitech_b(shared_dir), [0, 100, 200]),
    ):
        frames += [
            (f"{dataset.name}:{dataset.keys[i]}", image)
            for i, image in zip(picks, dataset.read(picks), strict=True)
        ]
    return frames


def test_no_published_count_breaks_a_bound_on_real_frames(shared_dir: Path) -> None:
    """Every frame at 1920x1080, one density pass a second, a whole-frame zone of 200 m².

    Whatever the counter reads, what a message publishes as ``count`` is within the room
    (6 per m²) and within a possible jump of the count published before it; every refused
    reading is in the message with its reason.
    """
    import cv2

    from crowdwatch.contracts.config import default_crowd_counter_path

    model = default_crowd_counter_path()
    if not model.is_file():
        pytest.skip(f"{model} not committed")
    counter = DensityCounter(model, threads=2)
    size = (1920, 1080)
    site = site_dict()
    cam = site["cameras"][0]
    cam["frame_size"] = list(size)
    cam["calibration"] = {
        "image_points": [[0, 0], [1920, 0], [1920, 1080], [0, 1080]],
        "ground_points_m": [[0, 0], [20, 0], [20, 10], [0, 10]],
    }
    cam["zones"] = [
        {
            "id": "frame",
            "name": {"zh": "全景", "en": "Whole view"},
            "polygon": [[0, 0], [1920, 0], [1920, 1080], [0, 1080]],
            "mode": "dense",
        }
    ]
    rules = PlausibilityConfig()
    cc = CameraCounter(
        "stop-a", Camera.model_validate(cam), TrackingConfig(enabled=False), 1.0, DenseConfig()
    )
    published: list[tuple[float, int]] = []
    flagged = []
    for second, (name, image) in enumerate(_stream_frames(shared_dir)):
        frame = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), np.uint8)
        cc.observe(Detections.empty(), float(second), size, counter.density(frame))
        count = sand(cc.finish(datetime.now(UTC), 1.0))
        assert count.count <= 6 * 200, (name, count)
        if count.count_flag is not None:
            flagged.append(name)
            continue
        if published:
            last_ts, last = published[-1]
            allowed = rules.jump_floor + rules.jump_ratio * last
            allowed += (rules.max_change_per_s or 0) * (second - last_ts)
            assert abs(count.count - last) <= allowed + 1, (name, last, count.count)
        published.append((float(second), count.count))
    # ShanghaiTech B's street crowds appear out of nowhere after the beach: a jump.
    assert any(name.startswith("shanghaitech_b") for name in flagged), flagged
    assert published, "every frame was flagged"


@pytest.mark.slow
@pytest.mark.timeout(1200)  # 390 density passes, most of them 1080p: minutes on 2 busy cores
def test_no_frame_of_the_data_sets_publishes_a_count_its_ground_cannot_hold(
    shared_dir: Path,
) -> None:
    """Every frame of generated empty ground, the beach webcam days and ShanghaiTech B, each
    the first density pass of its own camera (so only the room bound can hold it back): the
    shipped counter, no adaptation, a whole-frame zone of 200 m² in mode dense.  Frames are
    counted at their own size (the zone scales with the frame, its ground does not).

    A reading above 6 per m² must be flagged with its reason and its number; any other is
    published as read.  Either way no published count exceeds what the ground holds.
    """
    from crowdwatch.contracts.config import default_crowd_counter_path
    from crowdwatch.evaluation.datasets import (
        load_beach_days,
        load_empty_ground,
        load_shanghaitech_b,
    )

    model = default_crowd_counter_path()
    if not model.is_file():
        pytest.skip(f"{model} not committed")
    counter = DensityCounter(model, threads=2)
    size = (1920, 1080)
    cam = site_dict()["cameras"][0]
    cam["frame_size"] = list(size)
    cam["calibration"] = {
        "image_points": [[0, 0], [1920, 0], [1920, 1080], [0, 1080]],
        "ground_points_m": [[0, 0], [20, 0], [20, 10], [0, 10]],
    }
    cam["zones"] = [
        {
            "id": "frame",
            "name": {"zh": "全景", "en": "Whole view"},
            "polygon": [[0, 0], [1920, 0], [1920, 1080], [0, 1080]],
            "mode": "dense",
        }
    ]
    camera = Camera.model_validate(cam)
    room = 6 * 200
    frames = flagged = 0
    for dataset in (
        load_empty_ground(shared_dir),
        load_beach_days(shared_dir),
        load_shanghaitech_b(shared_dir),
    ):
        indices = list(range(len(dataset.keys)))
        for key, image in zip(dataset.keys, dataset.read(indices), strict=True):
            name = f"{dataset.name}:{key}"
            height, width = image.shape[:2]
            density = counter.density(image)
            people = density.in_polygon([(0, 0), (width, 0), (width, height), (0, height)])
            cc = CameraCounter("stop-a", camera, TrackingConfig(enabled=False), 1.0, DenseConfig())
            cc.observe(Detections.empty(), 0.0, (width, height), density)
            count = sand(cc.finish(datetime.now(UTC), 1.0))
            frames += 1
            assert count.count <= room, (name, count)
            if not density.quality.ok:
                assert count.count_flag is not None and count.count_flag.startswith("unusable")
            elif people > room:
                flagged += 1
                assert count.count_flag is not None, (name, people)
                assert count.count_flag.startswith("implausible: "), (name, count.count_flag)
                assert count.flagged_count == round(min(people, MAX_PEOPLE)), name
            else:
                assert count.count_flag is None, (name, count.count_flag)
                assert count.count == round(people), (name, count)
    # How many readings were refused is the counter's business; every frame was checked.
    assert frames == 24 + 50 + 316, (frames, flagged)


# --- frames one cannot count in ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("glare_rows", "reason"),
    [
        (0, None),
        (0.2, None),  # a bright sky or sea, as on a sunlit street photo (up to 16.5% seen)
        (0.45, "backlit/glare (45% of pixels saturated)"),
        (0.95, "blown out (95% of pixels saturated)"),
    ],
)
def test_sun_glare_over_a_beach_frame_is_flagged(
    shared_dir: Path, glare_rows: float, reason: str | None
) -> None:
    import cv2

    from crowdwatch.edge.dense import assess_quality

    path = shared_dir / "data" / "beach_webcam_days" / "images" / "1660820400.jpg"
    grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if grey is None:
        pytest.skip(f"{path} not found")
    grey[: round(glare_rows * grey.shape[0])] = 255  # the low sun over the sea, in the lens
    assert assess_quality(grey) == FrameQuality(reason is None, reason)


def test_no_beach_webcam_frame_is_judged_unusable(shared_dir: Path) -> None:
    import cv2

    from crowdwatch.edge.dense import assess_quality
    from crowdwatch.evaluation.beach_days import load_beach_frames

    for frame in load_beach_frames(shared_dir):
        grey = cv2.imread(str(frame.path), cv2.IMREAD_GRAYSCALE)
        assert assess_quality(grey).ok, frame.path.name
