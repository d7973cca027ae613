"""Capacity from ground area and area per person, daily capacity, the warning ladder."""

from __future__ import annotations

import copy

import pytest
from factories import make_config
from report_history import report_config_dict

from crowdwatch.contracts.config import Calibration
from crowdwatch.contracts.errors import ConfigError
from crowdwatch.contracts.ground import ground_area_m2
from crowdwatch.contracts.reports import DEFAULT_LEVELS
from crowdwatch.reports.capacity import level_at, site_capacity

# 100x100 px seen as a 40 m x 25 m rectangle of sand = 1000 m²
FLAT = Calibration(
    image_points=[(0, 0), (100, 0), (100, 100), (0, 100)],
    ground_points_m=[(0, 0), (40, 0), (40, 25), (0, 25)],
)
# A camera looking down a beach: the far edge (top of the image) is 4x wider on the ground
PERSPECTIVE = Calibration(
    image_points=[(25, 0), (75, 0), (100, 100), (0, 100)],
    ground_points_m=[(0, 50), (40, 50), (40, 0), (0, 0)],
)


@pytest.mark.parametrize(
    ("polygon", "calibration", "expected"),
    [
        ([(0, 0), (100, 0), (100, 100), (0, 100)], FLAT, 1000.0),
        ([(0, 0), (50, 0), (50, 100), (0, 100)], FLAT, 500.0),
        ([(25, 0), (75, 0), (100, 100), (0, 100)], PERSPECTIVE, 2000.0),
    ],
)
def test_ground_area(
    polygon: list[tuple[float, float]], calibration: Calibration, expected: float
) -> None:
    assert ground_area_m2(polygon, calibration) == pytest.approx(expected, rel=1e-9)


def _config(
    zones: list[dict[str, object]], calibrated: bool = True, **site: object
) -> dict[str, object]:
    raw = copy.deepcopy(report_config_dict())
    camera = raw["sites"][0]["cameras"][0]  # type: ignore[index]
    if calibrated:
        camera["calibration"] = FLAT.model_dump(mode="json")
    raw["reports"]["sites"] = [{"site": "beach-a", "zones": zones, **site}]  # type: ignore[index]
    return raw


def test_zone_capacity_from_sand_area_and_daily_capacity_from_turnover() -> None:
    config = make_config(
        _config(
            [{"zone": "sand", "ground": "beach_sand"}], opening={"start": "06:00", "end": "20:00"}
        )
    )
    capacity = site_capacity(config, config.site("beach-a"))
    zone = capacity.zones[0]
    # 1000 m² / 7.5 m² per person (GB/T 50298-2018 beach sand, middle of 5-10)
    assert (zone.capacity, zone.source, zone.area_m2, zone.m2_per_person) == (
        133,
        "area",
        1000.0,
        7.5,
    )
    # 14 opening hours / 2 h mean stay = turnover 7; daily = site capacity 100 x 7
    assert (capacity.turnover, capacity.daily) == (7.0, 700)


def test_bathing_water_with_a_given_area_and_own_area_per_person() -> None:
    raw = _config([{"zone": "sand", "ground": "bathing_water", "area_m2": 3000}], calibrated=False)
    raw["reports"]["area_per_person_m2"] = {"bathing_water": 20}  # type: ignore[index]
    config = make_config(raw)
    assert site_capacity(config, config.site("beach-a")).zones[0].capacity == 150


def test_a_zone_without_area_or_calibration_is_a_clear_error() -> None:
    config = make_config(_config([{"zone": "sand", "ground": "beach_sand"}], calibrated=False))
    with pytest.raises(ConfigError, match=r"beach-a/sand needs an area: give area_m2 or calibrate"):
        site_capacity(config, config.site("beach-a"))


@pytest.mark.parametrize(
    ("ratio", "level"),
    [(0.79, None), (0.8, "yellow"), (0.95, "orange"), (1.0, "red"), (1.7, "red")],
)
def test_levels_80_90_100(ratio: float, level: str | None) -> None:
    found = level_at(ratio, list(DEFAULT_LEVELS))
    assert (found.id if found else None) == level


@pytest.mark.parametrize(
    ("reports", "problem"),
    [
        ({"sites": [{"site": "nowhere"}]}, "reports.sites[0].site: unknown site 'nowhere'"),
        (
            {"sites": [{"site": "beach-a", "zones": [{"zone": "x", "ground": "beach_sand"}]}]},
            "reports.sites[0].zones[0].zone: site 'beach-a' has no zone 'x'",
        ),
        ({"channels": ["leaders"]}, "reports.channels: ['leaders'] are not ids of alerts.channels"),
        (
            {
                "levels": [
                    {"id": "a", "name_zh": "甲", "name_en": "a", "at": 0.9, "color": "#000000"},
                    {"id": "b", "name_zh": "乙", "name_en": "b", "at": 0.8, "color": "#000000"},
                ]
            },
            "levels must rise strictly",
        ),
        ({"send_at": "25:00"}, "send_at"),
        ({"mean_stay_min": {"beech": 60}}, "reports.mean_stay_min: unknown site kind(s) ['beech']"),
        ({"opening": {"start": "20:00", "end": "06:00"}}, "end 06:00 must be after start 20:00"),
    ],
)
def test_bad_reports_config_names_the_path(reports: dict[str, object], problem: str) -> None:
    raw = copy.deepcopy(report_config_dict())
    raw["reports"] = reports
    with pytest.raises(ConfigError) as caught:
        make_config(raw)
    assert problem in str(caught.value)
