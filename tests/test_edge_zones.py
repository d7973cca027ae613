"""Zones on their own: point-in-polygon on feet, scaling to the real frame size, no I/O."""

from __future__ import annotations

import numpy as np
import pytest

from crowdwatch.contracts.config import LocalizedName, Zone
from crowdwatch.edge.detections import Detections
from crowdwatch.edge.zones import ZoneOccupancy, points_in_polygon

SQUARE = [(100.0, 100.0), (300.0, 100.0), (300.0, 300.0), (100.0, 300.0)]
# An L: the square minus its top-right quarter, to catch convex-only shortcuts.
ELL = [
    (100.0, 100.0),
    (200.0, 100.0),
    (200.0, 200.0),
    (300.0, 200.0),
    (300.0, 300.0),
    (100.0, 300.0),
]


def zone(polygon: list[tuple[float, float]], zone_id: str = "platform") -> Zone:
    return Zone(id=zone_id, name=LocalizedName(zh="候车区", en="Platform"), polygon=polygon)


def people_at(*feet: tuple[float, float]) -> Detections:
    """People standing at the given points (40 px wide, 100 px tall boxes)."""
    xyxy = np.array([[x - 20, y - 100, x + 20, y] for x, y in feet], dtype=np.float32)
    return Detections(
        xyxy=xyxy.reshape(-1, 4),
        confidence=np.full(len(feet), 0.9, dtype=np.float32),
        class_id=np.zeros(len(feet), dtype=np.int64),
    )


@pytest.mark.parametrize(
    ("polygon", "point", "inside"),
    [
        (SQUARE, (200, 200), True),
        (SQUARE, (50, 200), False),
        (SQUARE, (200, 350), False),
        (SQUARE, (300, 200), True),  # on the right edge
        (SQUARE, (200, 100), True),  # on the top edge
        (SQUARE, (100, 300), True),  # on a vertex
        (SQUARE, (300.5, 200), False),  # just outside the edge
        (ELL, (150, 150), True),
        (ELL, (250, 150), False),  # in the L's notch, inside its bounding box
        (ELL, (250, 250), True),
        (ELL, (200, 150), True),  # on the inner edge of the notch
    ],
    ids=[
        "inside",
        "left-of",
        "below",
        "on-right-edge",
        "on-top-edge",
        "on-vertex",
        "just-outside",
        "ell-inside",
        "ell-notch",
        "ell-lower-arm",
        "ell-inner-edge",
    ],
)
def test_points_in_polygon(
    polygon: list[tuple[float, float]], point: tuple[float, float], inside: bool
) -> None:
    mask = points_in_polygon(np.array([point], dtype=np.float32), np.array(polygon))
    assert mask.tolist() == [inside]


def test_points_in_polygon_of_no_points() -> None:
    assert points_in_polygon(np.zeros((0, 2)), np.array(SQUARE)).shape == (0,)


@pytest.mark.parametrize(
    ("config_size", "frame_size", "feet", "expected_mask"),
    [
        # Same size: the polygon is used as configured.
        ((400, 400), (400, 400), [(200, 200), (50, 50), (300, 300)], [True, False, True]),
        # The stream is twice the configured size: the square now spans 200..600.
        ((400, 400), (800, 800), [(200, 200), (500, 500), (650, 650)], [True, True, False]),
        # A substream at half size: the square spans 50..150.
        ((400, 400), (200, 200), [(100, 100), (200, 200), (150, 150)], [True, False, True]),
        # Only the width differs (a stretched stream): x scales, y stays.
        ((400, 400), (800, 400), [(400, 200), (250, 200), (700, 200)], [True, True, False]),
    ],
    ids=["same-size", "double", "half", "width-only"],
)
def test_zone_occupancy_scales_to_the_real_frame(
    config_size: tuple[int, int],
    frame_size: tuple[int, int],
    feet: list[tuple[float, float]],
    expected_mask: list[bool],
) -> None:
    occupancy = ZoneOccupancy(zone(SQUARE), config_size, frame_size)
    mask = occupancy.trigger(people_at(*feet))
    assert mask.tolist() == expected_mask
    assert occupancy.current_count == sum(expected_mask)


def test_zone_counts_feet_not_heads() -> None:
    occupancy = ZoneOccupancy(zone(SQUARE), (400, 400))
    # Head inside the zone, feet below it: the person stands outside.
    standing_below = people_at((200, 350))
    assert standing_below.xyxy[0, 1] < 300
    assert occupancy.trigger(standing_below).tolist() == [False]


def test_empty_frame_counts_zero_after_people_left() -> None:
    occupancy = ZoneOccupancy(zone(SQUARE), (400, 400))
    occupancy.trigger(people_at((200, 200), (150, 150)))
    assert occupancy.current_count == 2
    occupancy.trigger(Detections.empty())
    assert occupancy.current_count == 0


@pytest.mark.parametrize(
    ("xyxy_shape", "n_conf", "n_cls", "message"),
    [
        ((3, 5), 3, 3, "xyxy: expected shape (N, 4)"),
        ((3, 4), 2, 3, "confidence: expected shape (3,)"),
        ((3, 4), 3, 4, "class_id: expected shape (3,)"),
    ],
)
def test_detections_reject_mismatched_arrays(
    xyxy_shape: tuple[int, int], n_conf: int, n_cls: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Detections(
            xyxy=np.zeros(xyxy_shape, dtype=np.float32),
            confidence=np.zeros(n_conf, dtype=np.float32),
            class_id=np.zeros(n_cls, dtype=np.int64),
        )


def test_anchors_are_bottom_centres() -> None:
    detections = people_at((120, 340), (10, 20))
    assert detections.anchors().tolist() == [[120.0, 340.0], [10.0, 20.0]]
    assert len(detections) == 2
