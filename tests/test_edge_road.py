"""A road camera's interval counts: vehicles per zone apart from people, and their speed."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from crowdwatch.contracts.config import (
    Calibration,
    Camera,
    LocalizedName,
    TrackedClass,
    TrackingConfig,
    Zone,
)
from crowdwatch.contracts.messages import CountMessage
from crowdwatch.edge.counting import CameraCounter
from crowdwatch.edge.detections import Detections
from crowdwatch.edge.vehicles import road_detector

CAR, TRUCK, PERSON = 2, 7, 0
FPS = 10.0
# 1 px = 0.1 m on a flat road seen from above: 10 px per frame at 10 fps is 36 km/h.
TOP_DOWN = Calibration(
    image_points=[(0, 0), (400, 0), (400, 400), (0, 400)],
    ground_points_m=[(0, 0), (40, 0), (40, 40), (0, 40)],
)


def road_camera(classes: list[TrackedClass], calibration: Calibration | None) -> Camera:
    def zone(zone_id: str, x0: float, x1: float) -> Zone:
        return Zone(
            id=zone_id,
            name=LocalizedName(zh="车道", en=zone_id),
            polygon=[(x0, 0), (x1, 0), (x1, 400), (x0, 400)],
        )

    return Camera(
        id="cam-road",
        source="road.mp4",
        frame_size=(400, 400),
        classes=classes,
        calibration=calibration,
        zones=[zone("inbound", 0, 200), zone("outbound", 200, 400)],
    )


def frame(i: int) -> Detections:
    """Frame ``i``: two cars going down the inbound lanes at 36 km/h, a truck up the
    outbound lane at 18 km/h, and a person standing on the inbound verge."""
    boxes = [
        (50, 40 + 10 * i, 80, 60 + 10 * i, CAR),
        (120, 140 + 10 * i, 150, 160 + 10 * i, CAR),
        (300, 340 - 5 * i, 340, 370 - 5 * i, TRUCK),
        (180, 300, 190, 330, PERSON),
    ]
    xyxy = np.array([b[:4] for b in boxes], dtype=np.float32)
    return Detections(
        xyxy=xyxy,
        confidence=np.full(len(boxes), 0.9, dtype=np.float32),
        class_id=np.array([b[4] for b in boxes], dtype=np.int64),
    )


def run(camera: Camera, frames: int = 20) -> CountMessage:
    counter = CameraCounter("road-a", camera, TrackingConfig(), FPS)
    for i in range(frames):
        counter.observe(frame(i), i / FPS, camera.frame_size)
    message = counter.finish(datetime(2026, 10, 1, 1, 0, tzinfo=UTC), frames / FPS)
    assert message is not None
    return message


VEHICLES_AND_PEOPLE = [
    TrackedClass.PERSON,
    TrackedClass.CAR,
    TrackedClass.BUS,
    TrackedClass.TRUCK,
    TrackedClass.MOTORCYCLE,
]


def test_vehicles_and_their_speed_per_zone_people_apart() -> None:
    message = run(road_camera(VEHICLES_AND_PEOPLE, TOP_DOWN))
    zones = {z.zone_id: z for z in message.zones}
    assert (zones["inbound"].count, zones["inbound"].vehicles) == (1, 2)
    assert (zones["outbound"].count, zones["outbound"].vehicles) == (0, 1)
    assert zones["inbound"].mean_speed_kmh == pytest.approx(36.0, rel=0.05)
    assert zones["outbound"].mean_speed_kmh == pytest.approx(18.0, rel=0.05)
    # The message is valid v1 JSON that an old reader's fields still make sense of.
    again = CountMessage.model_validate_json(message.model_dump_json(by_alias=True))
    assert again.zones[0].vehicles == 2


def test_without_a_calibration_vehicles_but_no_speed() -> None:
    message = run(road_camera(VEHICLES_AND_PEOPLE, None))
    assert [(z.vehicles, z.mean_speed_kmh) for z in message.zones] == [(2, None), (1, None)]


def test_a_people_camera_sends_no_vehicle_fields() -> None:
    message = run(road_camera([TrackedClass.PERSON], TOP_DOWN))
    assert [(z.vehicles, z.mean_speed_kmh) for z in message.zones] == [(None, None)] * 2
    # Every box is a person to it, as before vehicles were counted apart.
    assert [z.count for z in message.zones] == [3, 1]


def test_a_lane_with_no_moving_vehicle_has_no_speed_not_zero() -> None:
    message = run(road_camera(VEHICLES_AND_PEOPLE, TOP_DOWN), frames=1)
    # One frame gives no track a speed yet: "not measured", never 0 km/h (a jam).
    assert [z.mean_speed_kmh for z in message.zones] == [None, None]
    assert [z.vehicles for z in message.zones] == [2, 1]


class _TwoClassesForOneVan:
    """A model that sees one van as a car and, overlapping, a truck."""

    def detect(self, image: np.ndarray) -> Detections:
        return Detections(
            xyxy=np.array([[10, 10, 60, 40], [11, 10, 61, 41]], dtype=np.float32),
            confidence=np.array([0.8, 0.6], dtype=np.float32),
            class_id=np.array([CAR, TRUCK], dtype=np.int64),
        )


def test_a_road_camera_runs_its_model_with_vehicle_classes_merged() -> None:
    image = np.zeros((400, 400, 3), dtype=np.uint8)
    road = road_detector(_TwoClassesForOneVan(), road_camera(VEHICLES_AND_PEOPLE, None))
    people = road_detector(_TwoClassesForOneVan(), road_camera([TrackedClass.PERSON], None))
    assert road.detect(image).class_id.tolist() == [CAR]
    assert len(people.detect(image)) == 2


def test_a_line_by_class_counts_only_its_classes_tracks() -> None:
    # Across the road at y=250: both cars cross it going down ("in"), the truck going up.
    def line(line_id: str, classes: list[str] | None) -> dict[str, object]:
        return {
            "id": line_id,
            "name": {"zh": "断面", "en": line_id},
            "start": [0, 250],
            "end": [400, 250],
            "in_direction": [0, 1],
            "classes": classes,
        }

    camera = Camera.model_validate(
        {
            **road_camera(VEHICLES_AND_PEOPLE, None).model_dump(),
            "lines": [line("all", None), line("trucks", ["truck"]), line("cars", ["car"])],
        }
    )
    message = run(camera, frames=32)
    counts = {c.line_id: (c.in_count, c.out_count) for c in message.lines}
    assert counts == {"all": (2, 1), "trucks": (0, 1), "cars": (2, 0)}
