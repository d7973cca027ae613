"""Waiting time per zone (enter, leave, short occlusion) and density from a homography."""

from __future__ import annotations

import numpy as np
import pytest

from crowdwatch.contracts.config import Calibration, LocalizedName, Zone
from crowdwatch.contracts.errors import ConfigError
from crowdwatch.edge.density import GroundPlane, density_per_m2, zone_areas_m2
from crowdwatch.edge.dwell import WaitSummary, ZoneWaits

Seen = list[int]  # track ids in the zone in one frame, one frame per second below


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        pytest.param([[]], WaitSummary(0, 0.0, 0.0), id="nobody: explicit zeros"),
        pytest.param([[1]] * 11, WaitSummary(1, 10.0, 10.0), id="one person waits 10 s"),
        pytest.param(
            [[1]] * 5 + [[1, 2]] * 5 + [[1, 2, 3]] * 3,
            WaitSummary(3, 12.0, 7.0),
            id="three people: longest and median",
        ),
        pytest.param([[1]] * 5 + [[]] * 5, WaitSummary(0, 0.0, 0.0), id="left the zone"),
        pytest.param(
            [[1]] * 5 + [[]] + [[1]] * 5, WaitSummary(1, 10.0, 10.0), id="occluded 1 s: keeps wait"
        ),
        pytest.param(
            [[1]] * 5 + [[]] * 4 + [[1]] * 3, WaitSummary(1, 2.0, 2.0), id="gone 4 s: new wait"
        ),
        pytest.param([[-1]] * 5, WaitSummary(0, 0.0, 0.0), id="unconfirmed tracks ignored"),
    ],
)
def test_waits(frames: list[Seen], expected: WaitSummary) -> None:
    waits = ZoneWaits("platform", grace_s=2.0)
    for second, ids in enumerate(frames):
        waits.update(np.array(ids, dtype=np.int64), ts=float(second))
    assert waits.summary(float(len(frames) - 1)) == expected


def test_a_person_lost_within_grace_still_counts_as_waiting_now() -> None:
    waits = ZoneWaits("platform", grace_s=2.0)
    waits.update(np.array([4]), ts=0.0)
    waits.update(np.array([], dtype=np.int64), ts=10.0)  # 4 unseen since 0 s: gone
    assert waits.summary(10.0).people == 0
    waits.update(np.array([5]), ts=20.0)
    assert waits.summary(21.5) == WaitSummary(1, 1.5, 1.5)


SQUARE_10M = Calibration(
    image_points=[(100, 100), (300, 100), (300, 300), (100, 300)],
    ground_points_m=[(0, 0), (10, 0), (10, 10), (0, 10)],
)
# A camera looking down a road 4 m wide: the far end (top, 20 m away) is narrower.
PERSPECTIVE = Calibration(
    image_points=[(300, 100), (500, 100), (700, 500), (100, 500)],
    ground_points_m=[(0, 20), (4, 20), (4, 0), (0, 0)],
)


def zone(polygon: list[tuple[float, float]], zone_id: str = "z") -> Zone:
    return Zone(id=zone_id, name=LocalizedName(zh="区", en="Zone"), polygon=polygon)


@pytest.mark.parametrize(
    ("calibration", "polygon", "area"),
    [
        (SQUARE_10M, [(100, 100), (300, 100), (300, 300), (100, 300)], 100.0),
        (SQUARE_10M, [(100, 100), (200, 100), (200, 200), (100, 200)], 25.0),
        (SQUARE_10M, [(100, 100), (300, 100), (100, 300)], 50.0),
        (PERSPECTIVE, [(300, 100), (500, 100), (700, 500), (100, 500)], 80.0),
        # The far (upper) half of the picture holds more road than the near half: 15 of 20 m.
        (PERSPECTIVE, [(300, 100), (500, 100), (600, 300), (200, 300)], 60.0),
    ],
)
def test_zone_area_from_a_known_homography(
    calibration: Calibration, polygon: list[tuple[float, float]], area: float
) -> None:
    plane = GroundPlane(calibration, (800, 600))
    assert plane.area_m2(np.array(polygon, dtype=np.float64)) == pytest.approx(area, rel=1e-6)


def test_ground_points_map_to_their_metres() -> None:
    plane = GroundPlane(PERSPECTIVE, (800, 600))
    ground = plane.to_ground(np.array(PERSPECTIVE.image_points, dtype=np.float64))
    expected = np.array(PERSPECTIVE.ground_points_m, dtype=np.float64)
    assert np.allclose(ground, expected, atol=1e-6)


def test_density_and_areas_per_zone() -> None:
    areas = zone_areas_m2(
        [zone([(100, 100), (200, 100), (200, 200), (100, 200)])], SQUARE_10M, (800, 600)
    )
    assert areas == {"z": pytest.approx(25.0)}
    assert density_per_m2(10, 25.0) == 0.4
    assert density_per_m2(10_000, 25.0) == 20.0  # capped at the contract's bound
    assert zone_areas_m2([zone([(0, 0), (1, 0), (1, 1)])], None, (800, 600)) is None


def test_a_zone_above_the_horizon_is_a_config_error() -> None:
    # Ground rows 300..500 of the picture; the vanishing line of that plane is at y = 200.
    near_field = Calibration(
        image_points=[(300, 300), (500, 300), (700, 500), (100, 500)],
        ground_points_m=[(0, 4), (4, 4), (4, 0), (0, 0)],
    )
    plane = GroundPlane(near_field, (800, 600))
    assert plane.area_m2(np.array([(300, 300), (500, 300), (700, 500), (100, 500)])) > 0
    sky = zone([(0, 100), (800, 100), (800, 400), (0, 400)], "sky")
    with pytest.raises(ConfigError, match=r"zone 'sky'.*horizon"):
        zone_areas_m2([sky], near_field, (800, 600))
