"""A road zone's density (vehicles per km per lane), an approach's queue and its spill-back
alert, and the congestion level from density where no speed is measured."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from factories import config_dict, make_config, road_dict

from crowdwatch.analytics.evaluator import AlertEvaluator, congestion_level, queue_spillback
from crowdwatch.analytics.readings import ZoneReading, ZoneStatus
from crowdwatch.contracts.config import (
    Calibration,
    Camera,
    LocalizedName,
    Site,
    SiteKind,
    TrackedClass,
    TrackingConfig,
    Zone,
)
from crowdwatch.contracts.congestion import CongestionLevel
from crowdwatch.contracts.errors import ConfigError
from crowdwatch.contracts.ground import road_length_m
from crowdwatch.contracts.messages import CountMessage
from crowdwatch.contracts.site_kinds import kind_rules, level_source
from crowdwatch.edge.counting import CameraCounter
from crowdwatch.edge.density import GroundPlane
from crowdwatch.edge.detections import Detections
from crowdwatch.edge.queue import ApproachQueue, queue_length_m
from crowdwatch.edge.speed import TrackSpeeds

CAR = 2
FPS = 10.0
T0 = datetime(2026, 10, 1, 1, 0, tzinfo=UTC)
# 1 px = 0.1 m on a flat road seen from above.
TOP_DOWN = Calibration(
    image_points=[(0, 0), (400, 0), (400, 400), (0, 400)],
    ground_points_m=[(0, 0), (40, 0), (40, 40), (0, 40)],
)
# Traffic runs down the picture to a stop line across the bottom of the inbound lanes.
STOP_LINE = [(0.0, 400.0), (200.0, 400.0)]


def zone(zone_id: str, **road: Any) -> Zone:
    return Zone(
        id=zone_id,
        name=LocalizedName(zh="车道", en=zone_id),
        polygon=[(0, 0), (200, 0), (200, 400), (0, 400)],
        **road,
    )


def camera(*zones: Zone, calibration: Calibration | None = TOP_DOWN) -> Camera:
    return Camera(
        id="cam-road",
        source="road.mp4",
        frame_size=(400, 400),
        classes=[TrackedClass.CAR],
        calibration=calibration,
        zones=list(zones),
    )


def cars(anchors_y: list[float]) -> Detections:
    """Cars 30 px wide and 20 px long whose anchors (bottom centres) are at x=100, ``y``."""
    xyxy = np.array([(85, y - 20, 115, y) for y in anchors_y], dtype=np.float32)
    return Detections(
        xyxy=xyxy.reshape(-1, 4),
        confidence=np.full(len(anchors_y), 0.9, dtype=np.float32),
        class_id=np.full(len(anchors_y), CAR, dtype=np.int64),
    )


def run(cam: Camera, frames: list[Detections]) -> CountMessage:
    counter = CameraCounter("road-a", cam, TrackingConfig(), FPS)
    for i, detections in enumerate(frames):
        counter.observe(detections, i / FPS, cam.frame_size)
    message = counter.finish(T0, len(frames) / FPS)
    assert message is not None
    return message


# --- the zone's length along the road ---------------------------------------------------


def test_a_strip_is_as_long_as_its_long_side_on_the_ground() -> None:
    # 200 x 400 px is 20 m across and 40 m along the road.
    assert road_length_m(zone("z"), TOP_DOWN) == 40.0
    # A strip drawn across the picture runs along x.
    across = Zone(
        id="x", name=LocalizedName(zh="路", en="x"), polygon=[(0, 0), (400, 0), (400, 60), (0, 60)]
    )
    assert road_length_m(across, TOP_DOWN) == 40.0


def test_an_approach_is_as_long_as_its_farthest_corner_from_the_stop_line() -> None:
    short_line = [(50.0, 400.0), (150.0, 400.0)]  # the line's ends do not bound the length
    approach = zone("a", approach={"stop_line": short_line})
    assert road_length_m(approach, TOP_DOWN) == 40.0


def test_a_configured_length_wins_and_is_the_only_one_without_a_calibration() -> None:
    assert road_length_m(zone("z", length_m=120.0), TOP_DOWN) == 120.0
    assert road_length_m(zone("z", length_m=120.0), None) == 120.0
    assert road_length_m(zone("z"), None) is None


@pytest.mark.parametrize(
    ("road", "message"),
    [
        (
            {"lanes": 2},
            r"zone 'carriageway' has lanes but neither a length_m nor a camera calibration",
        ),
        (
            {"approach": {"stop_line": STOP_LINE}},
            r"zone 'carriageway' is an approach, whose queue length needs the camera's calibration",
        ),
        ({"approach": {"stop_line": [(0, 400), (0, 400)]}}, r"the stop line's two ends must"),
        (
            {"approach": {"stop_line": [(0, 576), (900, 576)]}},
            r"zone 'carriageway' has point \(900, 576\) outside the 768x576 frame",
        ),
    ],
)
def test_road_geometry_that_cannot_be_measured_fails_with_the_fix(
    road: dict[str, Any], message: str
) -> None:
    site = road_dict()
    site["cameras"][0]["zones"][0] |= road
    with pytest.raises(ConfigError, match=message):
        make_config(config_dict(site))


# --- density at the edge -----------------------------------------------------------------


def test_density_is_vehicles_per_km_per_lane_over_the_measured_length() -> None:
    message = run(camera(zone("z", lanes=2)), [cars([100.0, 250.0])] * 3)
    # 2 vehicles on 40 m of 2 lanes: 2 / (0.04 km * 2) = 25 per km per lane.
    assert [(z.vehicles, z.vehicle_density) for z in message.zones] == [(2, 25.0)]


def test_density_over_a_configured_length_needs_no_calibration() -> None:
    message = run(camera(zone("z", lanes=2, length_m=100.0), calibration=None), [cars([100.0])])
    assert [(z.vehicle_density, z.mean_speed_kmh) for z in message.zones] == [(5.0, None)]


def test_a_zone_without_lanes_sends_no_density() -> None:
    message = run(camera(zone("z")), [cars([100.0])])
    assert [z.vehicle_density for z in message.zones] == [None]


# --- the queue at an approach ------------------------------------------------------------


def test_the_queue_is_the_chain_of_stopped_vehicles_from_the_line() -> None:
    assert queue_length_m(np.array([]), 15.0) == 0.0
    assert queue_length_m(np.array([20.0]), 15.0) == 0.0  # nobody at the line: no queue
    assert queue_length_m(np.array([23.0, 2.0, 16.0, 9.0]), 15.0) == 23.0
    assert queue_length_m(np.array([2.0, 9.0, 16.0, 38.0]), 15.0) == 16.0


def queue_frame(i: int) -> Detections:
    """Frame ``i`` of an approach 40 m long (stop line at y = 400 px, 1 px = 0.1 m): cars
    standing 2, 9 and 16 m from the line, one standing alone 38 m back, one driving at
    36 km/h past the queue's end, and at frame 10 only a box 20 m back (a false detection
    that would join the queue and end it at 20 m)."""
    standing = [380.0, 310.0, 240.0, 20.0]
    driving = [100.0 + 10 * i]
    glitch = [200.0] if i == 10 else []
    return cars(standing + driving + glitch)


def test_an_approach_publishes_its_queue_length_in_metres() -> None:
    approach = zone("approach", approach={"stop_line": STOP_LINE})
    message = run(camera(approach), [queue_frame(i) for i in range(20)])
    [counted] = message.zones
    assert counted.queue_length_m == pytest.approx(16.0, abs=0.01)
    assert counted.vehicles == 5


def test_a_queue_from_speeds_known_geometry_and_a_one_frame_box() -> None:
    # The queue module on its own, fed tracks directly: the id-7 box is there for one frame.
    plane = GroundPlane(TOP_DOWN, (400, 400))
    speeds = TrackSpeeds(plane)
    queue = ApproachQueue(zone("a", approach={"stop_line": STOP_LINE}), plane, (400, 400))
    lengths = []
    for i in range(12):
        ys = [395.0, 330.0, 265.0, 200.0] + ([120.0] if i == 11 else [])
        anchors = np.array([[100.0, y] for y in ys])
        ids = np.arange(1, len(ys) + 1)
        kmh = speeds.update(anchors, ids, i / FPS)
        lengths.append(queue.update(anchors, kmh))
    # No queue until the tracks have a speed (0.5 s), then 0.5, 7, 13.5 and 20 m back.
    assert lengths[0] == 0.0
    assert lengths[-1] == pytest.approx(20.0, abs=0.01)
    assert queue.take() == pytest.approx(20.0, abs=0.01)
    assert queue.take() is None


def test_a_queue_across_the_picture_measures_along_the_road() -> None:
    # Traffic runs right to left to a stop line down the left edge (x = 0).
    plane = GroundPlane(TOP_DOWN, (400, 400))
    approach = Zone(
        id="a",
        name=LocalizedName(zh="进口道", en="approach"),
        polygon=[(0, 100), (400, 100), (400, 200), (0, 200)],
        approach={"stop_line": [(0, 100), (0, 200)]},
    )
    queue = ApproachQueue(approach, plane, (400, 400))
    standing = np.array([[50.0, 150.0], [120.0, 150.0], [190.0, 150.0]])
    assert queue.update(standing, np.zeros(3)) == pytest.approx(19.0, abs=0.01)
    assert road_length_m(approach, TOP_DOWN) == 40.0


# --- the alert engine --------------------------------------------------------------------


def road_site(zone_patch: dict[str, Any]) -> tuple[Site, AlertEvaluator]:
    site_raw = road_dict()
    cam = site_raw["cameras"][0]
    cam["frame_size"] = [400, 400]
    cam["calibration"] = TOP_DOWN.model_dump()
    cam["zones"][0] |= {"polygon": [[0, 0], [200, 0], [200, 400], [0, 400]], **zone_patch}
    raw = config_dict(site_raw)
    raw["alerts"]["rules"] = kind_rules({SiteKind.ROAD})
    config = make_config(raw)
    return config.sites[0], AlertEvaluator(config.alerts.rules)


def road_reading(site: Site, ts: datetime, **values: Any) -> ZoneReading:
    zone_ = site.cameras[0].zones[0]
    return ZoneReading(site, "cam1", zone_, ZoneStatus.OK, 0, ts, 0.0, **values)


@pytest.mark.parametrize(
    ("speed", "density", "expected", "source"),
    [
        (45.0, 140.0, CongestionLevel.SMOOTH, "speed"),  # a measured speed wins
        (None, 10.0, CongestionLevel.SMOOTH, "density"),  # 60 * (1 - 10/150) = 56 km/h
        (None, 60.0, CongestionLevel.MOSTLY_SMOOTH, "density"),  # 36 km/h
        (None, 75.0, CongestionLevel.LIGHT, "density"),  # 30 km/h: light is (20, 30]
        (None, 110.0, CongestionLevel.MODERATE, "density"),  # 16 km/h
        (None, 150.0, CongestionLevel.SEVERE, "density"),  # a standing queue
        (None, None, None, None),
    ],
)
def test_without_a_speed_the_level_comes_from_density(
    speed: float | None, density: float | None, expected: CongestionLevel | None, source: str
) -> None:
    site, _ = road_site({"lanes": 2})
    reading = road_reading(site, T0, vehicles=12, mean_speed_kmh=speed, vehicle_density=density)
    assert congestion_level(reading) == (None if expected is None else float(expected))
    assert level_source(speed, density) == source


def test_a_congestion_alert_from_density_says_it_is_a_model() -> None:
    site, evaluator = road_site({"lanes": 2})
    fired = []
    for minute in range(7):
        now = T0 + timedelta(minutes=minute)
        reading = road_reading(site, now, vehicles=40, vehicle_density=120.0)
        fired += evaluator.evaluate([reading], now)
    [alert] = [t.message() for t in fired]
    assert alert.rule_id == "road-congested" and alert.value == float(CongestionLevel.SEVERE)
    assert "每公里每车道 120 辆 (严重拥堵, 按密度推算, 模型估计)" in alert.summary_zh
    assert "120 vehicles/km/lane (severe congestion, from density, a model)" in alert.summary_en


def test_a_queue_filling_its_approach_for_a_minute_fires_for_the_traffic_police() -> None:
    site, evaluator = road_site({"approach": {"stop_line": [[0, 400], [200, 400]]}})
    # Each 10 s: the queue grows to 37 of the approach's 40 m, holds, then shrinks.
    queues = [10, 20, 30, 37, 37, 37, 37, 37, 37, 37, 37, 25, 20, 20, 20, 20, 20, 20, 20]
    events = []
    for step, queue in enumerate(queues):
        now = T0 + timedelta(seconds=10 * step)
        reading = road_reading(site, now, vehicles=8, queue_length_m=float(queue))
        for t in evaluator.evaluate([reading], now):
            events.append((step, t.rule.id, t.state))
            if t.state == "firing":
                text = t.message()
    # 37/40 = 0.925 from step 3; fires 60 s later; under 0.7 from step 11, resolved 60 s on.
    assert events == [
        (9, "road-queue-spillback", "firing"),
        (17, "road-queue-spillback", "resolved"),
    ]
    assert site.department.value == "traffic_police"
    assert "排队 37 米 (进口道 40 米)" in text.summary_zh
    assert "排队达进口道长度的 90%" in text.summary_zh
    assert "queue 37 m (approach 40 m)" in text.summary_en
    assert "lengthen the green to clear the queue, divert traffic upstream" in text.summary_en


def test_a_zone_that_is_no_approach_has_no_spillback() -> None:
    site, _ = road_site({})
    assert queue_spillback(road_reading(site, T0, queue_length_m=30.0)) is None


def test_the_daily_report_grades_a_minute_without_speed_by_its_densest_zone() -> None:
    from crowdwatch.reports.roads import grade_minutes
    from crowdwatch.storage.queries import SeriesPoint

    site, _ = road_site({"lanes": 2})

    def point(minute: int, speed: float | None, density: float | None) -> SeriesPoint:
        ts = T0 + timedelta(minutes=minute)
        return SeriesPoint(
            ts, 0, 0.0, 0, 1, vehicles_max=20, speed_mean=speed, veh_density_mean=density
        )

    inbound = [point(0, None, 110.0), point(1, None, 10.0), point(2, 45.0, 140.0)]
    outbound = [point(0, None, 20.0), point(1, None, None), point(2, None, None)]
    graded = grade_minutes(site, [inbound, outbound])
    # 110 per km per lane is 16 km/h on an arterial (moderate); a measured speed wins.
    assert [(m.level, m.speed_kmh) for m in graded] == [
        (CongestionLevel.MODERATE, None),
        (CongestionLevel.SMOOTH, None),
        (CongestionLevel.SMOOTH, 45.0),
    ]


def test_the_pages_hold_a_level_until_it_has_lasted_and_forget_it_without_data() -> None:
    from crowdwatch.dashboards.road_levels import RoadLevelMemory

    site, _ = road_site({"lanes": 2})  # an arterial: 40 / 30 / 20 / 15 km/h
    memory = RoadLevelMemory(margin_kmh=2.0, hold_s=120.0)
    key = (site.id, "carriageway")

    def grade(seconds: float, speed: float | None, density: float | None = None) -> Any:
        ts = T0 + timedelta(seconds=seconds)
        graded = memory.grade(site, key, speed_kmh=speed, vehicles=10, density=density, ts=ts)
        return None if graded is None else graded.level

    # Light (20-30), a wobble to 31 and back, then mostly smooth that lasts 2 minutes.
    assert [grade(t, v) for t, v in [(0, 25), (30, 31), (60, 29), (90, 35), (150, 35)]] == [
        CongestionLevel.LIGHT,
        CongestionLevel.LIGHT,
        CongestionLevel.LIGHT,
        CongestionLevel.LIGHT,
        CongestionLevel.LIGHT,
    ]
    assert grade(210, 35) == CongestionLevel.MOSTLY_SMOOTH  # 120 s after 90 s
    # A density graded the same way (110 per km per lane: 16 km/h, moderate) is held too.
    assert grade(240, None, 110.0) == CongestionLevel.MOSTLY_SMOOTH
    # No data forgets the past: the next reading is shown as it is.
    assert grade(250, None) is None
    assert grade(260, None, 110.0) == CongestionLevel.MODERATE


def test_a_spillback_goes_through_the_planner_to_the_traffic_polices_channel() -> None:
    from crowdwatch.analytics.planner import Policy, plan_transitions
    from crowdwatch.contracts.notification import Notification

    site_raw = road_dict()
    cam = site_raw["cameras"][0]
    cam["frame_size"] = [400, 400]
    cam["calibration"] = TOP_DOWN.model_dump()
    cam["zones"][0] |= {
        "polygon": [[0, 0], [200, 0], [200, 400], [0, 400]],
        "approach": {"stop_line": [[0, 400], [200, 400]]},
    }
    raw = config_dict(site_raw)
    raw["alerts"] = {
        "kind_rules": True,
        "rules": [],
        "channels": [
            {"id": "police", "type": "webhook", "url": "http://127.0.0.1:9/police"},
            {"id": "transport", "type": "webhook", "url": "http://127.0.0.1:9/transport"},
        ],
        "routes": [
            {"departments": ["traffic_police"], "notify": ["police"]},
            {"departments": ["transport"], "notify": ["transport"]},
        ],
    }
    config = make_config(raw)
    site = config.sites[0]
    evaluator = AlertEvaluator(config.alerts.rules)
    batch = []
    for step in range(8):  # a queue of 38 m on a 40 m approach, every 10 s
        now = T0 + timedelta(seconds=10 * step)
        batch += evaluator.evaluate([road_reading(site, now, vehicles=9, queue_length_m=38.0)], now)
    [transition] = batch
    ids = iter(f"n{i}" for i in range(10))
    policy = Policy(
        config.alerts, config.district.timezone, "cw", (), frozenset(), new_id=lambda: next(ids)
    )
    now = T0 + timedelta(seconds=70)
    plan = plan_transitions(policy, [(transition, transition.message())], {}, now)
    [draft] = [d for d in plan.drafts if d.channel_id != "mqtt"]
    assert draft.channel_id == "police"
    assert isinstance(draft.payload, Notification)
    assert draft.payload.department == "traffic_police"
    [alert] = draft.payload.alerts
    assert alert.alert_key == "road-tunnel/carriageway/road-queue-spillback"
    assert "排队 38 米 (进口道 40 米)" in alert.summary_zh


def test_a_stop_line_above_the_horizon_fails_with_the_fix() -> None:
    # A tilted view: the road's edges meet, so the calibrated ground's horizon crosses the
    # picture at y = 267; a stop line drawn at y = 100 is in the sky.
    tilted = Calibration(
        image_points=[(150, 300), (250, 300), (400, 400), (0, 400)],
        ground_points_m=[(0, 50), (10, 50), (10, 0), (0, 0)],
    )
    approach = Zone(
        id="a",
        name=LocalizedName(zh="进口道", en="approach"),
        polygon=[(150, 300), (250, 300), (400, 400), (0, 400)],
        approach={"stop_line": [(0, 100), (400, 100)]},
    )
    with pytest.raises(ConfigError, match=r"zone 'a': approach.stop_line: .*draw it on the road"):
        CameraCounter("road-a", camera(approach, calibration=tilted), TrackingConfig(), FPS)
