"""Congestion levels of GB/T 33171-2016: thresholds by road class, density rule, hysteresis."""

from __future__ import annotations

import pytest

from crowdwatch.contracts.congestion import (
    GB_T_33171,
    CongestionLevel,
    CongestionLevels,
    RoadClass,
    SpeedThresholds,
    speed_from_density,
)

L = CongestionLevel


@pytest.mark.parametrize(
    ("road", "speed", "level"),
    [
        (RoadClass.EXPRESSWAY, 100.0, L.SMOOTH),
        (RoadClass.EXPRESSWAY, 65.1, L.SMOOTH),
        (RoadClass.EXPRESSWAY, 65.0, L.MOSTLY_SMOOTH),
        (RoadClass.EXPRESSWAY, 50.1, L.MOSTLY_SMOOTH),
        (RoadClass.EXPRESSWAY, 50.0, L.LIGHT),
        (RoadClass.EXPRESSWAY, 35.0, L.MODERATE),
        (RoadClass.EXPRESSWAY, 20.1, L.MODERATE),
        (RoadClass.EXPRESSWAY, 20.0, L.SEVERE),
        (RoadClass.EXPRESSWAY, 0.0, L.SEVERE),
        (RoadClass.ARTERIAL, 40.5, L.SMOOTH),
        (RoadClass.ARTERIAL, 40.0, L.MOSTLY_SMOOTH),
        (RoadClass.ARTERIAL, 30.0, L.LIGHT),
        (RoadClass.ARTERIAL, 20.0, L.MODERATE),
        (RoadClass.ARTERIAL, 15.5, L.MODERATE),
        (RoadClass.ARTERIAL, 15.0, L.SEVERE),
        (RoadClass.SECONDARY, 36.0, L.SMOOTH),
        (RoadClass.SECONDARY, 35.0, L.MOSTLY_SMOOTH),
        (RoadClass.SECONDARY, 25.0, L.LIGHT),
        (RoadClass.SECONDARY, 15.0, L.MODERATE),
        (RoadClass.SECONDARY, 10.0, L.SEVERE),
    ],
)
def test_levels_by_road_class(road: RoadClass, speed: float, level: CongestionLevel) -> None:
    assert GB_T_33171[road].level(speed) is level


def test_level_names_are_the_standards() -> None:
    assert [level.zh for level in L] == ["畅通", "基本畅通", "轻度拥堵", "中度拥堵", "严重拥堵"]


def test_a_road_has_its_own_thresholds() -> None:
    tunnel = SpeedThresholds((50, 40, 30, 20), free_flow_kmh=60)
    assert tunnel.level(45) is L.MOSTLY_SMOOTH
    assert GB_T_33171[RoadClass.EXPRESSWAY].level(45) is L.LIGHT


@pytest.mark.parametrize(
    ("bounds", "free_flow", "message"),
    [
        ((65, 50, 50, 20), 100, r"expected four falling speeds .* got \[65, 50, 50, 20\]"),
        ((20, 35, 50, 65), 100, r"expected four falling speeds"),
        ((65, 50, 35, 0), 100, r"expected four falling speeds"),
        ((65, 50, 35, 20), 60, r"free_flow_kmh must be above the smooth threshold 65, got 60"),
    ],
)
def test_bad_thresholds_are_refused(
    bounds: tuple[float, float, float, float], free_flow: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        SpeedThresholds(bounds, free_flow_kmh=free_flow)


@pytest.mark.parametrize(
    ("density", "speed", "level"),
    [
        (0.0, 60.0, L.SMOOTH),
        (15.0, 54.0, L.SMOOTH),
        (75.0, 30.0, L.LIGHT),
        (105.0, 18.0, L.MODERATE),
        (150.0, 0.0, L.SEVERE),
        (400.0, 0.0, L.SEVERE),
    ],
)
def test_density_rule_on_an_arterial(density: float, speed: float, level: CongestionLevel) -> None:
    arterial = GB_T_33171[RoadClass.ARTERIAL]
    assert speed_from_density(density, arterial) == pytest.approx(speed)
    levels = CongestionLevels(arterial)
    graded = levels.update_density(density, ts=0.0)
    assert (graded.level, graded.source) == (level, "density")


def test_density_rule_refuses_a_negative_density() -> None:
    with pytest.raises(ValueError, match=r"density: expected vehicles per km per lane >= 0"):
        speed_from_density(-1.0, GB_T_33171[RoadClass.ARTERIAL])


Series = list[tuple[float, float]]  # (ts seconds, speed km/h)


@pytest.mark.parametrize(
    ("series", "margin", "hold", "expected"),
    [
        pytest.param(
            [(0, 70), (60, 64), (120, 66), (180, 64), (240, 66)],
            2.0,
            0.0,
            [L.SMOOTH] * 5,
            id="wobbling round 65 within the margin: no flicker",
        ),
        pytest.param(
            [(0, 70), (60, 64), (120, 66)],
            0.0,
            0.0,
            [L.SMOOTH, L.MOSTLY_SMOOTH, L.SMOOTH],
            id="without hysteresis it flickers",
        ),
        pytest.param(
            [(0, 70), (60, 30), (120, 30), (180, 30)],
            2.0,
            120.0,
            [L.SMOOTH, L.SMOOTH, L.SMOOTH, L.MODERATE],
            id="a jam must hold 2 min before the level changes",
        ),
        pytest.param(
            [(0, 70), (60, 30), (120, 70), (180, 30), (240, 70)],
            2.0,
            120.0,
            [L.SMOOTH] * 5,
            id="a brief dip now and then never holds",
        ),
        pytest.param(
            [(0, 15), (60, 21), (120, 23), (180, 36), (240, 38)],
            2.0,
            0.0,
            [L.SEVERE, L.SEVERE, L.MODERATE, L.MODERATE, L.LIGHT],
            id="clearing: each step up needs the margin",
        ),
        pytest.param(
            [(0, 70), (60, 10), (120, 10)],
            2.0,
            60.0,
            [L.SMOOTH, L.SMOOTH, L.SEVERE],
            id="a sudden jam jumps straight to severe once it holds",
        ),
    ],
)
def test_hysteresis_on_an_expressway(
    series: Series, margin: float, hold: float, expected: list[CongestionLevel]
) -> None:
    levels = CongestionLevels(GB_T_33171[RoadClass.EXPRESSWAY], margin_kmh=margin, hold_s=hold)
    assert [levels.update_speed(v, ts=t).level for t, v in series] == expected


def test_the_level_keeps_when_it_began_and_reports_the_latest_speed() -> None:
    levels = CongestionLevels(GB_T_33171[RoadClass.EXPRESSWAY], hold_s=0.0)
    levels.update_speed(30.0, ts=10.0)
    now = levels.update_speed(31.0, ts=70.0)
    assert (now.level, now.speed_kmh, now.source, now.since) == (L.MODERATE, 31.0, "speed", 10.0)


def test_bad_hysteresis_is_refused() -> None:
    with pytest.raises(ValueError, match=r"hysteresis: expected margin_kmh >= 0"):
        CongestionLevels(GB_T_33171[RoadClass.ARTERIAL], margin_kmh=-1)
