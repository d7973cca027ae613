"""A road's congestion level through the alert engine and the simulator (GB/T 33171-2016)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest
from factories import approach_road_dict, config_dict, make_config, road_dict, site_dict

from crowdwatch.analytics.evaluator import AlertEvaluator, congestion_level
from crowdwatch.analytics.readings import ZoneReading, ZoneStatus
from crowdwatch.contracts.config import CrowdwatchConfig, Site, SiteKind, parse_config
from crowdwatch.contracts.congestion import CongestionLevel, RoadClass
from crowdwatch.contracts.errors import ConfigError
from crowdwatch.contracts.ground import road_length_m
from crowdwatch.contracts.site_kinds import kind_rules, road_thresholds, spec
from crowdwatch.simulator.crowd import SimulatedCamera

T0 = datetime(2026, 10, 1, 1, 0, tzinfo=UTC)


def road_config(road: dict[str, Any] | None = None) -> CrowdwatchConfig:
    raw = config_dict(road_dict(road))
    raw["alerts"]["rules"] = kind_rules({SiteKind.ROAD})
    return make_config(raw)


def reading(site: Site, speed: float | None, vehicles: int | None, ts: datetime) -> ZoneReading:
    zone = site.cameras[0].zones[0]
    return ZoneReading(
        site, "cam1", zone, ZoneStatus.OK, 0, ts, 0.0, vehicles=vehicles, mean_speed_kmh=speed
    )


@pytest.mark.parametrize(
    ("road", "speed", "vehicles", "expected"),
    [
        (None, 45.0, 20, CongestionLevel.SMOOTH),  # arterial by default: > 40
        (None, 18.0, 60, CongestionLevel.MODERATE),
        (None, 15.0, 80, CongestionLevel.SEVERE),
        ({"road_class": "expressway"}, 45.0, 20, CongestionLevel.LIGHT),
        ({"speed_thresholds_kmh": [50, 40, 30, 25]}, 28.0, 20, CongestionLevel.MODERATE),
        (None, None, 0, CongestionLevel.SMOOTH),  # an empty road is no jam
        (None, None, 12, None),  # vehicles not yet measured: no data, not a level
        (None, None, None, None),  # a camera that counts no vehicles
    ],
)
def test_the_level_of_a_road_zone(
    road: dict[str, Any] | None,
    speed: float | None,
    vehicles: int | None,
    expected: CongestionLevel | None,
) -> None:
    site = road_config(road).sites[0]
    level = congestion_level(reading(site, speed, vehicles, T0))
    assert level == (None if expected is None else float(expected))


def test_moderate_congestion_for_5_min_fires_for_the_traffic_police_and_resolves() -> None:
    config = road_config()
    site = config.sites[0]
    evaluator = AlertEvaluator(config.alerts.rules)
    # Speeds each minute: smooth, then a jam builds (moderate from minute 2), then clears.
    speeds = [45, 32, 19, 18, 16, 14, 12, 13, 17, 19, 25, 28, 30, 35, 42]
    events = []
    for minute, speed in enumerate(speeds):
        now = T0 + timedelta(minutes=minute)
        for t in evaluator.evaluate([reading(site, speed, 60, now)], now):
            events.append((minute, t.state, t.value))
            if t.state == "firing":
                text = t.message()
    # Moderate or worse from minute 2; firing 5 min later; below moderate from minute 10,
    # resolved after keep_firing_for_s (2 min).
    assert events == [(7, "firing", 5.0), (12, "resolved", 3.0)]
    assert site.department.value == "traffic_police"
    assert text.summary_zh.startswith("隧道出口 车行道: 60 辆车, 平均车速 13 km/h (严重拥堵)")
    assert "中度拥堵" in text.summary_zh  # the threshold, named as the standard names it
    assert "direct traffic, divert it if needed" in text.summary_en


def test_a_bus_stop_camera_that_also_counts_the_road_speaks_of_people() -> None:
    raw = config_dict(site_dict("stop-a"))
    config = make_config(raw)
    site = config.sites[0]
    evaluator = AlertEvaluator(config.alerts.rules)
    zone = site.cameras[0].zones[0]
    crowded = ZoneReading(
        site, "cam1", zone, ZoneStatus.OK, 45, T0, 0.0, vehicles=12, mean_speed_kmh=30.0
    )
    [fired] = evaluator.evaluate([crowded], T0)
    assert fired.message().summary_en.startswith("Stop A platform: 45 waiting")
    assert "vehicles" not in fired.message().summary_en


def test_a_road_without_speeds_neither_fires_nor_resolves() -> None:
    config = road_config()
    site = config.sites[0]
    evaluator = AlertEvaluator(config.alerts.rules)
    fired = []
    for minute in range(7):
        now = T0 + timedelta(minutes=minute)
        fired += evaluator.evaluate([reading(site, 10.0, 90, now)], now)
    assert [t.state for t in fired] == ["firing"]
    # The camera loses its calibration (or no vehicle was followed long enough): no data.
    for minute in range(7, 20):
        now = T0 + timedelta(minutes=minute)
        assert evaluator.evaluate([reading(site, None, 90, now)], now) == []
    assert len(evaluator.firing) == 1


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (
            {"road": {"speed_thresholds_kmh": [30, 40, 20, 10]}},
            r"sites\[0\]\.road\.speed_thresholds_kmh: .*expected four falling speeds",
        ),
        ({"road": {"road_class": "motorway"}}, r"sites\[0\]\.road\.road_class"),
        ({"kind": "beach"}, r"road: settings of a road site, but this site is 'beach'"),
    ],
)
def test_bad_road_settings_fail_with_the_fix(patch: dict[str, Any], message: str) -> None:
    site = road_dict({"road_class": "expressway"}) | patch
    with pytest.raises(ConfigError, match=message):
        parse_config(config_dict(site))


def test_the_road_kind_declares_vehicles_and_its_rule() -> None:
    road = spec(SiteKind.ROAD)
    assert road.vehicles and road.describe()["vehicles"] is True
    assert not spec(SiteKind.BEACH).vehicles
    congested, spillback = road.rules
    assert (congested["metric"], congested["fire_at"], congested["for_s"]) == (
        "congestion_level",
        4,
        300,
    )
    assert (spillback["metric"], spillback["fire_at"], spillback["for_s"]) == (
        "queue_spillback",
        0.9,
        60,
    )
    site = road_config({"road_class": "expressway"}).sites[0]
    assert road_thresholds(site).bounds == (65, 50, 35, 20)
    assert road_thresholds(road_config().sites[0]).bounds == (40, 30, 20, 15)
    assert RoadClass.SECONDARY.value == "secondary"


def _day(camera: SimulatedCamera) -> dict[float, tuple[int, float, int]]:
    """Vehicles, speed and people at each quarter hour of a simulated holiday."""
    out = {}
    for q in range(4 * 24):
        hour = q / 4
        message = camera.counts(T0 + timedelta(minutes=15 * q), hour, 5.0, 900.0)
        zone = message.zones[0]
        assert zone.vehicles is not None and zone.mean_speed_kmh is not None
        out[hour] = (zone.vehicles, zone.mean_speed_kmh, zone.count)
    return out


def test_the_simulator_drives_holiday_traffic_with_a_jam_that_builds_and_clears() -> None:
    config = road_config()
    site = config.sites[0]
    day = _day(SimulatedCamera(site, site.cameras[0], seed=7))
    thresholds = road_thresholds(site)

    def level(hour: float) -> CongestionLevel:
        return thresholds.level(day[hour][1])

    assert all(people == 0 for _, _, people in day.values())  # nobody on the carriageway
    assert level(4.0) == CongestionLevel.SMOOTH
    assert level(9.5) >= CongestionLevel.MODERATE  # inbound morning peak
    assert level(13.5) <= CongestionLevel.MOSTLY_SMOOTH  # clears by midday
    assert level(17.5) >= CongestionLevel.MODERATE  # outbound evening peak
    assert level(22.0) == CongestionLevel.SMOOTH
    assert day[9.5][0] > 3 * day[4.0][0]  # the jam is vehicles, not a made-up speed
    # It builds over time and clears over time, never jumping from smooth to severe.
    levels = [level(q / 4) for q in range(4 * 24)]
    assert max(abs(a - b) for a, b in pairwise(levels)) <= 2


def test_the_simulator_queues_at_a_stop_line_and_spills_back_only_in_the_jam() -> None:
    config = make_config(config_dict(approach_road_dict()))
    site = config.sites[0]
    zone = site.cameras[0].zones[0]
    length = road_length_m(zone, site.cameras[0].calibration)
    assert length == pytest.approx(99.2, abs=0.1)
    simulated = SimulatedCamera(site, site.cameras[0], seed=7)
    queues = {}
    for q in range(4 * 24):
        message = simulated.counts(T0 + timedelta(minutes=15 * q), q / 4, 5.0, 900.0)
        queue = message.zones[0].queue_length_m
        assert queue is not None and 0.0 <= queue <= length
        queues[q / 4] = queue / length
    assert queues[4.0] < 0.1  # a few cars at a red light at night
    assert max(queues[h] for h in (9.0, 9.5, 10.0)) >= 0.5  # the inbound peak's jam
    assert max(queues[h] for h in (17.0, 17.5, 18.0)) >= 0.5  # the outbound one's
    assert queues[22.0] < 0.25
    # A section that is no approach publishes no queue.
    plain = SimulatedCamera(road_config().sites[0], road_config().sites[0].cameras[0], seed=7)
    assert plain.counts(T0, 9.5, 5.0, 900.0).zones[0].queue_length_m is None
