"""Ground speed from tracks: synthetic vehicles of known speed, id switches, PETS walkers."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from pets import pets_calibration

from crowdwatch.contracts.config import Calibration, LocalizedName, Zone
from crowdwatch.edge.density import GroundPlane
from crowdwatch.edge.speed import SpeedRules, TrackSpeeds, ZoneSpeeds, fitted_velocity
from crowdwatch.evaluation.lines import PETS_FPS, pets_tracks

# A road camera: a 14 m wide, 100 m long stretch of four lanes seen in perspective, 640x480.
FRAME = (640, 480)
ROAD = Calibration(
    image_points=[(250, 120), (390, 120), (640, 480), (0, 480)],
    ground_points_m=[(0, 100), (14, 100), (14, 0), (0, 0)],
)
LANES_M = (1.75, 5.25, 8.75, 12.25)  # lane centres across the road

Frame = list[tuple[int, float, float]]  # (track id, ground x m, ground y m)


def plane() -> GroundPlane:
    return GroundPlane(ROAD, FRAME)


def to_image(ground: NDArray[np.float64]) -> NDArray[np.float64]:
    """Ground metres -> pixels through the inverse of the calibration's homography."""
    h = np.hstack([ground, np.ones((len(ground), 1))]) @ np.linalg.inv(plane().homography).T
    return np.asarray(h[:, :2] / h[:, 2:3], dtype=np.float64)


def traffic(kmh: float, fps: float, seconds: float = 30.0, headway_s: float = 1.5) -> list[Frame]:
    """Vehicles at a constant ``kmh`` along the road, one entering a lane every ``headway_s``."""
    speed = kmh / 3.6
    frames: list[Frame] = []
    for n in range(int(seconds * fps)):
        t = n / fps
        frame = []
        for vehicle in range(int(seconds / headway_s)):
            y = (t - vehicle * headway_s) * speed
            if 0 <= y <= 100:
                frame.append((vehicle, LANES_M[vehicle % 4], y))
        frames.append(frame)
    return frames


def measure(
    frames: list[Frame],
    fps: float,
    noise_px: float = 0.5,
    rules: SpeedRules | None = None,
    seed: int = 7,
) -> tuple[ZoneSpeeds, list[float]]:
    """Feed the frames (as noisy pixels) to one whole-road zone; returns it and every speed."""
    rng = np.random.default_rng(seed)
    road = Zone(id="road", name=LocalizedName(zh="路", en="Road"), polygon=ROAD.image_points)
    speeds = ZoneSpeeds(plane(), [road], FRAME, rules=rules)
    seen: list[float] = []
    for n, frame in enumerate(frames):
        if not frame:
            speeds.update(np.zeros((0, 2)), np.zeros(0, dtype=np.int64), n / fps)
            continue
        ground = np.array([(x, y) for _, x, y in frame], dtype=np.float64)
        pixels = to_image(ground) + rng.normal(0, noise_px, (len(frame), 2))
        ids = np.array([i for i, _, _ in frame], dtype=np.int64)
        kmh = speeds.update(pixels, ids, n / fps)
        seen.extend(kmh[np.isfinite(kmh)].tolist())
    return speeds, seen


@pytest.mark.parametrize("fps", [10.0, 25.0])
@pytest.mark.parametrize("kmh", [15.0, 40.0, 80.0, 120.0])
def test_synthetic_traffic_of_known_speed_within_5_percent(kmh: float, fps: float) -> None:
    speeds, _ = measure(traffic(kmh, fps), fps)
    (road,) = speeds.take()
    assert road.mean_kmh is not None and road.samples > 100
    assert road.mean_kmh == pytest.approx(kmh, rel=0.05)


def test_one_frame_tracks_give_no_speed_and_leave_the_mean_alone() -> None:
    frames = traffic(60.0, 10.0)
    rng = np.random.default_rng(3)
    flicker = [
        [*frame, (1000 + n, float(rng.uniform(0, 14)), float(rng.uniform(0, 100)))]
        for n, frame in enumerate(frames)
    ]
    clean = measure(frames, 10.0)[0].take()[0]
    noisy = measure(flicker, 10.0)[0].take()[0]
    assert noisy.tracks == clean.tracks == 20  # none of the one-frame ids gave a speed
    assert noisy.mean_kmh == pytest.approx(60.0, rel=0.05)


def test_id_switches_every_second_keep_the_mean() -> None:
    # The tracker gives every vehicle a new id each second: each piece restarts its fit.
    frames = [
        [(vehicle * 100 + n // 10, x, y) for vehicle, x, y in frame]
        for n, frame in enumerate(traffic(90.0, 10.0))
    ]
    speeds, _ = measure(frames, 10.0)
    (road,) = speeds.take()
    assert road.mean_kmh == pytest.approx(90.0, rel=0.05)
    assert road.tracks > 50


def test_an_id_swap_between_neighbouring_lanes_mixes_no_speeds() -> None:
    # 50 and 100 km/h side by side; at 3 s their ids swap (4 m between the two tracks at
    # first, 42 m by then: the step to the other vehicle is off course, the fits restart).
    frames: list[Frame] = []
    for n in range(60):
        t = n / 10
        slow, fast = (1, LANES_M[0], 50 / 3.6 * t), (2, LANES_M[1], 4 + 100 / 3.6 * t)
        if t >= 3.0:
            slow, fast = (2, *slow[1:]), (1, *fast[1:])
        frames.append([slow, fast])
    _, seen = measure(frames, 10.0, noise_px=0.0)
    assert seen
    assert all(abs(s - 50) <= 2.5 or abs(s - 100) <= 5 for s in seen), "a speed mixes both vehicles"


def test_a_slow_swap_is_caught_by_the_course_check() -> None:
    # Two cars 3.5 m apart at 20 km/h swap ids: the step is 3.5 m in 0.1 s (126 km/h,
    # under max_speed_kmh), so only the deviation from the fitted course catches it.
    frames: list[Frame] = []
    for n in range(40):
        t = n / 10
        a, b = (1, LANES_M[1], 20 / 3.6 * t + 10), (2, LANES_M[2], 20 / 3.6 * t + 10)
        if n >= 20:
            a, b = (2, *a[1:]), (1, *b[1:])
        frames.append([a, b])
    _, seen = measure(frames, 10.0, noise_px=0.0)
    assert max(seen) == pytest.approx(20.0, rel=0.01)
    _, mixed = measure(frames, 10.0, noise_px=0.0, rules=SpeedRules(max_deviation_m=100.0))
    assert max(mixed) > 21.0  # without it the lane change is taken for motion: > 5 % off


def test_zone_speeds_per_direction_and_the_interval_resets() -> None:
    inbound = Zone(
        id="inbound",
        name=LocalizedName(zh="进城", en="Inbound"),
        polygon=[(250, 120), (320, 120), (320, 480), (0, 480)],
    )
    outbound = Zone(
        id="outbound",
        name=LocalizedName(zh="出城", en="Outbound"),
        polygon=[(320, 120), (390, 120), (640, 480), (320, 480)],
    )
    speeds = ZoneSpeeds(plane(), [inbound, outbound], FRAME)
    for n in range(50):
        t = n / 10
        ground = np.array([[LANES_M[0], 20 + 30 / 3.6 * t], [LANES_M[3], 90 - 90 / 3.6 * t]])
        speeds.update(to_image(ground), np.array([1, 2]), t)
    first = {z.zone_id: z for z in speeds.take()}
    assert first["inbound"].mean_kmh == pytest.approx(30.0, rel=0.01)
    assert first["outbound"].mean_kmh == pytest.approx(90.0, rel=0.01)
    assert (first["inbound"].tracks, first["outbound"].tracks) == (1, 1)
    empty = speeds.take()
    assert [(z.mean_kmh, z.median_kmh, z.samples) for z in empty] == [(None, None, 0)] * 2


def test_an_anchor_above_the_horizon_gets_no_speed_and_no_error() -> None:
    speeds = TrackSpeeds(plane())
    # The road's vanishing point is far above the calibrated stretch; y = -5000 is beyond it.
    kmh = speeds.update(np.array([[320.0, -5000.0], [320.0, 400.0]]), np.array([1, 2]), 0.0)
    assert np.isnan(kmh).all()


def test_a_same_instant_twice_and_unconfirmed_tracks_give_no_speed() -> None:
    speeds = TrackSpeeds(plane())
    for ts in (0.0, 0.0, 0.1):
        kmh = speeds.update(np.array([[320.0, 400.0]]), np.array([-1]), ts)
        assert np.isnan(kmh).all()


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        (dict(min_points=1), r"min_points: expected at least 2, got 1"),
        (dict(min_span_s=3.0), r"min_span_s: expected a span in \(0, window_s=2.0\], got 3.0"),
        (dict(min_span_s=0.0), r"min_span_s: expected a span"),
    ],
)
def test_bad_rules_are_refused_with_the_fix(rules: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SpeedRules(**rules)


def test_fitted_velocity_needs_two_instants() -> None:
    with pytest.raises(ValueError, match="two different times"):
        fitted_velocity([(1.0, 0.0, 0.0), (1.0, 2.0, 0.0)])


@pytest.mark.data
def test_pets_walkers_come_out_at_walking_speed(shared_dir: Path) -> None:
    """The PETS camera's own calibration and the annotated tracks: median 0.9-1.7 m/s."""
    speeds = TrackSpeeds(GroundPlane(pets_calibration(shared_dir), (768, 576)))
    frames: dict[int, list[tuple[int, float, float]]] = defaultdict(list)
    for track_id, track in pets_tracks(shared_dir).items():
        for number, x, y, _ in track:
            frames[number].append((track_id, x, y))
    samples: list[float] = []
    for number in sorted(frames):
        people = frames[number]
        anchors = np.array([(x, y) for _, x, y in people])
        kmh = speeds.update(anchors, np.array([t for t, _, _ in people]), number / PETS_FPS)
        samples.extend((kmh[np.isfinite(kmh)] / 3.6).tolist())
    assert len(samples) > 1000
    assert 0.9 <= float(np.median(samples)) <= 1.7
