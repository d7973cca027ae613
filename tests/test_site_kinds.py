"""Site kinds declared once (crowdwatch/contracts/site_kinds.py), and the configs of today.

No database, broker or browser: the declaration covers every kind, what the pages, Grafana,
alert texts and the simulator read comes from it, and a config that gives a stop's routes
on the site itself (as every config before the kinds had their own keys) still loads.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from factories import config_dict, site_dict

from crowdwatch.analytics.evaluator import AlertEvaluator
from crowdwatch.analytics.readings import zone_readings
from crowdwatch.analytics.routing import group_key
from crowdwatch.analytics.rules import effective_rule
from crowdwatch.analytics.summaries import suggested_action
from crowdwatch.contracts.config import ConfigError, SiteKind, parse_config
from crowdwatch.contracts.site_kinds import (
    KIND_ORDER,
    LEVEL_SEVERITY,
    SITE_KINDS,
    KindView,
    bus_routes,
    kind_rules,
    spec,
)
from crowdwatch.dashboards.api_schema import KindOut
from crowdwatch.dashboards.grafana.panel_sql import KIND_LABELS, PanelSql
from crowdwatch.reports.capacity import level_at, site_capacity
from crowdwatch.simulator.curves import expected_occupancy
from crowdwatch.storage.queries import ZoneLatest


def _site(site_id: str, kind: str, **extra: Any) -> dict[str, Any]:
    return site_dict(site_id) | {"kind": kind} | extra


def test_every_kind_is_declared_once_with_rules_of_its_own_kind() -> None:
    assert set(SITE_KINDS) == set(SiteKind)
    assert set(KIND_ORDER) == set(SiteKind)
    for kind, declared in SITE_KINDS.items():
        assert declared.kind is kind
        KindOut.model_validate(declared.describe())
        assert 0 <= declared.curve(12.0) <= 1.1
        assert declared.dwell_h > 0
    ids = [r["id"] for s in SITE_KINDS.values() for r in s.rules]
    assert len(ids) == len(set(ids))
    # A config can take every kind's standard rules as they are.
    raw = config_dict(*[_site(f"s-{k.value.replace('_', '-')}", k.value) for k in SiteKind])
    raw["alerts"] = {"kind_rules": True}
    config = parse_config(raw)
    assert sorted(r.id for r in config.alerts.rules) == sorted(ids)
    kind_of = {r["id"]: k for k, s in SITE_KINDS.items() for r in s.rules}
    assert all(rule.site_kinds == [kind_of[rule.id]] for rule in config.alerts.rules)


def test_kind_rules_add_only_the_kinds_in_use_and_a_given_rule_replaces_its_namesake() -> None:
    raw = config_dict(_site("stop-a", "bus_stop"))
    raw["alerts"] = {
        "kind_rules": True,
        "rules": [{"id": "stop-crowded", "metric": "people", "fire_at": 30}],
    }
    rules = {r.id: r for r in parse_config(raw).alerts.rules}
    assert sorted(rules) == ["stop-crowded", "stop-long-wait"]
    assert (rules["stop-crowded"].metric.value, rules["stop-crowded"].fire_at) == ("people", 30)
    assert rules["stop-long-wait"].site_kinds == [SiteKind.BUS_STOP]
    # Without the switch a config keeps exactly its own rules, as before.
    raw["alerts"] = {"rules": [{"id": "stop-crowded", "metric": "people", "fire_at": 30}]}
    assert [r.id for r in parse_config(raw).alerts.rules] == ["stop-crowded"]
    assert kind_rules(set()) == []


def test_routes_on_the_site_as_written_before_still_load_as_the_stops_routes() -> None:
    old = parse_config(config_dict(_site("stop-a", "bus_stop", routes=["K1", "202"])))
    new = parse_config(config_dict(_site("stop-a", "bus_stop", bus_stop={"routes": ["K1", "202"]})))
    assert old == new
    site = old.sites[0]
    assert bus_routes(site) == ["K1", "202"]
    assert group_key("route", site, "platform", "k") == "route:K1,202"
    beach = parse_config(config_dict(_site("beach-a", "beach", routes=[]))).sites[0]
    assert beach.bus_stop is None and bus_routes(beach) == []
    assert group_key("route", beach, "platform", "k") == "site:beach-a"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            {"kind": "beach", "routes": ["K1"]},
            "routes: only a bus_stop site has bus routes, this one is 'beach'; remove 'routes'",
        ),
        (
            {"kind": "beach", "bus_stop": {"routes": ["K1"]}},
            "bus_stop: settings of a bus_stop site, but this site is 'beach'; remove 'bus_stop'"
            " or set kind: bus_stop",
        ),
        (
            {"routes": ["K1"], "bus_stop": {"routes": ["K3"]}},
            "routes: give the routes once, as bus_stop: {routes: [...]}; remove 'routes'",
        ),
    ],
    ids=["routes-on-a-beach", "bus-stop-settings-on-a-beach", "routes-twice"],
)
def test_a_kind_setting_in_the_wrong_place_is_one_line_naming_the_fix(
    extra: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(config_dict(site_dict("site-a") | extra))
    message = str(raised.value)
    assert "\n" not in message
    assert "sites[0]" in message and expected in message


def test_alert_texts_follow_the_kind() -> None:
    raw = config_dict(_site("stop-a", "bus_stop", routes=["K1"]), _site("beach-a", "beach"))
    config = parse_config(raw)
    stop, beach = config.sites
    rule = effective_rule(config.alerts.rules[0], stop, "platform")
    assert rule is not None
    assert suggested_action(stop, rule).en == "add buses on route K1"
    assert suggested_action(beach, rule) == spec(SiteKind.BEACH).action


def test_pages_and_grafana_read_the_kinds_views_and_names() -> None:
    queue = [k.value for k, s in SITE_KINDS.items() if s.view is KindView.QUEUE]
    sections = [k.value for k, s in SITE_KINDS.items() if s.view is KindView.SECTIONS]
    assert queue == ["bus_stop"] and sections == ["beach"]
    sql = PanelSql("Asia/Shanghai", 120)
    assert "WHERE s.kind IN ('bus_stop')" in sql.bus_queues()
    assert "WHERE s.kind IN ('beach')" in sql.beach_sections()
    assert KIND_LABELS["scenic_spot"] == "景点 Scenic spots"


def test_the_simulator_follows_each_kinds_curve() -> None:
    for kind, declared in SITE_KINDS.items():
        for hour in (3.0, 10.0, 17.5):
            assert expected_occupancy(kind, hour) == pytest.approx(min(1.1, declared.curve(hour)))
    # The curves as they were before they moved into the kinds' declarations.
    before = {
        SiteKind.BUS_STOP: (0.0300, 0.4250, 0.1498, 0.9634),
        SiteKind.BEACH: (0.0300, 0.5266, 0.9148, 0.4886),
        SiteKind.ROAD: (0.0507, 0.8332, 0.3508, 0.9706),
        SiteKind.SCENIC_SPOT: (0.0400, 0.0571, 0.3834, 0.5228),
    }
    for kind, values in before.items():
        now = tuple(round(expected_occupancy(kind, h), 4) for h in (3.0, 10.0, 13.0, 17.5))
        assert now == values, kind


@pytest.mark.parametrize(
    ("count", "fired"),
    [
        (79, []),
        (80, ["yellow"]),
        (89, ["yellow"]),
        (90, ["yellow", "orange"]),
        (100, ["yellow", "orange", "red"]),
        (130, ["yellow", "orange", "red"]),
    ],
)
def test_beaches_and_spots_warn_at_the_reports_capacity_levels(
    count: int, fired: list[str]
) -> None:
    tourism = {"department": "culture_tourism", "capacity": 120}
    raw = config_dict(
        _site("beach-a", "beach"), _site("spot-b", "scenic_spot"), _site("stop-a", "bus_stop")
    )
    for site in raw["sites"][:2]:
        site |= tourism
        site["cameras"][0]["zones"][0]["capacity"] = 100
    # The beach's zone has no capacity of its own: 750 m² of sand at 7.5 m² a person is 100,
    # not the site's 120.
    del raw["sites"][0]["cameras"][0]["zones"][0]["capacity"]
    ground = {"zone": "platform", "ground": "beach_sand", "area_m2": 750}
    raw["reports"] = {"sites": [{"site": "beach-a", "zones": [ground]}]}
    raw["alerts"] = {"kind_rules": True}
    config = parse_config(raw)
    levels = {r.id: r for r in config.alerts.rules if r.id.split("-")[-1] in LEVEL_SEVERITY}
    assert sorted(levels) == [
        f"{p}-{c}" for p in ("beach", "spot") for c in ("orange", "red", "yellow")
    ]
    evaluator = AlertEvaluator(config.alerts.rules)
    t0 = datetime(2026, 10, 3, 6, tzinfo=UTC)
    # As the engine reads them: the newest row of each zone, through zone_readings.
    rows = [
        ZoneLatest(s, "platform", "cam1", t0, count, count, count) for s in ("beach-a", "spot-b")
    ]
    readings = [r for r in zone_readings(config, rows, [], t0) if r.site.id != "stop-a"]
    evaluator.evaluate(readings, t0)
    later = evaluator.evaluate(readings, t0 + timedelta(seconds=60))  # for_s: 60
    got: dict[str, list[tuple[str, str]]] = {"beach-a": [], "spot-b": []}
    for t in later:
        got[t.reading.site.id].append((t.rule.rule.id.split("-")[-1], t.rule.rule.severity))
    for reading in readings:
        site = reading.site
        # The same rungs the daily report counts minutes above, on the capacity it computes.
        capacity = site_capacity(config, site).zones[0].capacity
        assert capacity == reading.capacity == 100
        assert site.department.value == "culture_tourism"
        reached = level_at(count / capacity, config.reports.levels)
        ladder = [lv.id for lv in config.reports.levels]
        assert fired == ([] if reached is None else ladder[: ladder.index(reached.id) + 1])
    expected = sorted((c, LEVEL_SEVERITY[c]) for c in fired)
    assert {k: sorted(v) for k, v in got.items()} == {"beach-a": expected, "spot-b": expected}
