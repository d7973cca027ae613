"""The alert engine: pure rule evaluation (table-driven), then the engine on real DB + broker."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from factories import config_dict, make_config, site_dict

from crowdwatch.analytics.evaluator import AlertEvaluator, camera_readings
from crowdwatch.analytics.forecast import ReferenceTrend, forecast
from crowdwatch.analytics.history import CountHistory
from crowdwatch.analytics.readings import ZoneReading, ZoneStatus, zone_readings
from crowdwatch.analytics.routing import in_mute_window
from crowdwatch.analytics.rules import alert_key, effective_rule, rule_applies
from crowdwatch.analytics.summaries import AlertFacts, alert_text
from crowdwatch.contracts.config import AlertRule, MuteWindow, parse_config
from crowdwatch.contracts.errors import ConfigError
from crowdwatch.contracts.messages import AlertMessage
from crowdwatch.storage.queries import CameraStatusRow, ZoneLatest

T0 = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
CONFIG = make_config()  # one bus stop "stop-a", zone "platform", capacity 50
SITE = CONFIG.sites[0]
ZONE = SITE.cameras[0].zones[0]
KEY = "stop-a/platform/crowded"


def reading(
    count: int | None, *, wait_s: float | None = None, density: float | None = None
) -> ZoneReading:
    status = ZoneStatus.OK if count is not None else ZoneStatus.STALE
    return ZoneReading(SITE, "cam1", ZONE, status, count, T0, 0.0, wait_s, density)


def rule(**overrides: Any) -> AlertRule:
    fields: dict[str, Any] = {"id": "crowded", "metric": "occupancy_ratio", "fire_at": 0.8}
    fields.update(overrides)
    return AlertRule.model_validate(fields)


# Each step: (seconds after T0, people in the 50-person zone or None for no data).
# Expected: the transition state at each step ("" for none).
EVALUATION_CASES = [
    ("fires at the threshold", rule(), [(0, 40)], ["firing"]),
    ("stays quiet below it", rule(), [(0, 39)], [""]),
    ("no re-fire while firing", rule(), [(0, 45), (5, 50)], ["firing", ""]),
    (
        "hysteresis: resolves only below clear_at",
        rule(clear_at=0.5),
        [(0, 45), (5, 30), (10, 25), (15, 24)],
        ["firing", "", "", "resolved"],
    ),
    ("clear_at defaults to fire_at", rule(), [(0, 40), (5, 39)], ["firing", "resolved"]),
    (
        "pending period before firing",
        rule(for_s=60),
        [(0, 45), (30, 45), (60, 45), (65, 45)],
        ["", "", "firing", ""],
    ),
    (
        "a dip restarts the pending period",
        rule(for_s=60),
        [(0, 45), (30, 30), (60, 45), (90, 45), (120, 45)],
        ["", "", "", "", "firing"],
    ),
    ("no data never fires", rule(), [(0, None)], [""]),
    (
        "no data never resolves",
        rule(clear_at=0.5),
        [(0, 45), (5, None), (10, None), (15, 10)],
        ["firing", "", "", "resolved"],
    ),
    (
        "no data restarts the pending period",
        rule(for_s=60),
        [(0, 45), (30, None), (60, 45), (90, 45)],
        ["", "", "", ""],
    ),
    ("people metric", rule(metric="people", fire_at=30), [(0, 29), (5, 30)], ["", "firing"]),
    (
        "flapping around one threshold: every crossing notifies",
        rule(),
        [(0, 40), (5, 39), (10, 40), (15, 39)],
        ["firing", "resolved", "firing", "resolved"],
    ),
    (
        "flapping damped by hysteresis",
        rule(clear_at=0.6),
        [(0, 40), (5, 39), (10, 40), (15, 31), (20, 29)],
        ["firing", "", "", "", "resolved"],
    ),
    (
        "keep_firing_for: a short dip does not resolve",
        rule(keep_firing_for_s=60),
        [(0, 40), (5, 30), (30, 41), (40, 30), (90, 30), (100, 30)],
        ["firing", "", "", "", "", "resolved"],
    ),
    (
        "override: stop-a has its own thresholds",
        rule(overrides=[{"sites": ["stop-a"], "fire_at": 0.9, "clear_at": 0.7}]),
        [(0, 40), (5, 45), (10, 36), (15, 34)],
        ["", "firing", "", "resolved"],
    ),
    (
        "override on another zone does not apply",
        rule(overrides=[{"zones": ["other"], "enabled": False}]),
        [(0, 40)],
        ["firing"],
    ),
    (
        "override can switch a rule off for a zone",
        rule(overrides=[{"zones": ["platform"], "enabled": False}]),
        [(0, 50)],
        [""],
    ),
]


@pytest.mark.parametrize(
    ("alert_rule", "steps", "expected"),
    [pytest.param(r, s, e, id=name) for name, r, s, e in EVALUATION_CASES],
)
def test_evaluation(
    alert_rule: AlertRule, steps: list[tuple[int, int | None]], expected: list[str]
) -> None:
    evaluator = AlertEvaluator([alert_rule])
    states = []
    for offset, count in steps:
        transitions = evaluator.evaluate([reading(count)], T0 + timedelta(seconds=offset))
        assert len(transitions) <= 1
        states.append(transitions[0].state if transitions else "")
        for t in transitions:
            assert t.key == KEY
    assert states == expected


def test_a_restored_firing_key_is_not_notified_again() -> None:
    evaluator = AlertEvaluator([rule(clear_at=0.5)])
    evaluator.restore([KEY])

    assert evaluator.evaluate([reading(45)], T0) == []
    assert [t.state for t in evaluator.evaluate([reading(10)], T0)] == ["resolved"]


def test_revert_lets_the_next_evaluation_retry() -> None:
    evaluator = AlertEvaluator([rule(for_s=60)])
    evaluator.evaluate([reading(45)], T0)
    [fired] = evaluator.evaluate([reading(45)], T0 + timedelta(seconds=60))

    evaluator.revert(fired)

    assert KEY not in evaluator.firing
    [again] = evaluator.evaluate([reading(45)], T0 + timedelta(seconds=65))
    assert again.state == "firing" and again.pending_since == T0


def test_transition_message_follows_the_contract() -> None:
    evaluator = AlertEvaluator([rule(severity="critical")])
    [transition] = evaluator.evaluate([reading(45)], T0)

    message = transition.message()

    assert isinstance(message, AlertMessage)
    assert (message.alert_key, message.site_id, message.zone_id, message.rule_id) == (
        KEY,
        "stop-a",
        "platform",
        "crowded",
    )
    assert (message.state, message.severity, message.value, message.threshold) == (
        "firing",
        "critical",
        0.9,
        0.8,
    )
    # 09:00 UTC is 17:00 in the district (Asia/Shanghai).
    assert message.summary_zh == (
        "甲站 候车区: 45 人候车, 达到容量的 90% (阈值 80%, 自 17:00) — 建议: 加派车辆"
    )
    assert message.summary_en == (
        "Stop A platform: 45 waiting, 90% of capacity (threshold 80%, since 17:00) — add buses"
    )


def _site(site_id: str, kind: str) -> dict[str, Any]:
    site = site_dict(site_id)
    site["kind"] = kind
    return site


@pytest.mark.parametrize(
    ("kinds", "sites", "site_id", "kind", "applies"),
    [
        ([], [], "stop-a", "bus_stop", True),
        (["beach"], [], "stop-a", "bus_stop", False),
        (["beach", "bus_stop"], [], "stop-a", "bus_stop", True),
        ([], ["beach-a"], "stop-a", "bus_stop", False),
        ([], ["stop-a"], "stop-a", "bus_stop", True),
        (["bus_stop"], ["beach-a"], "beach-a", "beach", False),
    ],
)
def test_rule_scope(
    kinds: list[str], sites: list[str], site_id: str, kind: str, applies: bool
) -> None:
    config = make_config(config_dict(_site("stop-a", "bus_stop"), _site("beach-a", "beach")))
    alert_rule = rule(site_kinds=kinds, sites=sites)
    assert rule_applies(alert_rule, config.site(site_id)) is applies


def test_alert_key() -> None:
    assert alert_key("beach-moon", "north", "beach-full") == "beach-moon/north/beach-full"


NOW = T0 + timedelta(hours=1)


@pytest.mark.parametrize(
    ("age_s", "camera_state", "status", "count"),
    [
        (10, None, ZoneStatus.OK, 12),
        (10, "online", ZoneStatus.OK, 12),
        (121, "online", ZoneStatus.STALE, None),
        (10, "offline", ZoneStatus.OFFLINE, None),
        (None, None, ZoneStatus.NO_DATA, None),
        (None, "offline", ZoneStatus.OFFLINE, None),
    ],
)
def test_zone_readings_classify_freshness(
    age_s: int | None, camera_state: str | None, status: ZoneStatus, count: int | None
) -> None:
    zones = []
    if age_s is not None:
        zones.append(
            ZoneLatest("stop-a", "platform", "cam1", NOW - timedelta(seconds=age_s), 12, 12, 12)
        )
    cameras = []
    if camera_state is not None:
        cameras.append(CameraStatusRow("stop-a", "cam1", NOW, camera_state, 0, 0, 0, ""))

    [zone] = zone_readings(CONFIG, zones, cameras, NOW)  # stale_after_s defaults to 120

    assert (zone.status, zone.count) == (status, count)
    assert zone.capacity == 50


# Metrics other than a count: waiting time, density, rise, forecast, no data.

METRIC_CASES = [
    ("longest wait in minutes", "longest_wait_min", 10, {"wait_s": 600}, "firing"),
    ("a shorter wait stays quiet", "longest_wait_min", 10, {"wait_s": 599}, ""),
    ("no waiting time (no tracking) is no data", "longest_wait_min", 10, {}, ""),
    ("density per m2", "density_per_m2", 2.0, {"density": 2.5}, "firing"),
    ("lower density stays quiet", "density_per_m2", 2.0, {"density": 1.2}, ""),
]


@pytest.mark.parametrize(
    ("metric", "fire_at", "extra", "expected"),
    [pytest.param(m, f, x, e, id=name) for name, m, f, x, e in METRIC_CASES],
)
def test_other_metrics(metric: str, fire_at: float, extra: dict[str, Any], expected: str) -> None:
    evaluator = AlertEvaluator([rule(metric=metric, fire_at=fire_at)])
    transitions = evaluator.evaluate([reading(10, **extra)], T0)
    assert [t.state for t in transitions] == ([expected] if expected else [])


def _ramp(history: CountHistory, counts: list[int], step_s: int = 60) -> datetime:
    ts = T0
    for i, count in enumerate(counts):
        ts = T0 + timedelta(seconds=i * step_s)
        history.add(("stop-a", "platform"), ts, count)
    return ts


def _reading_at(count: int, ts: datetime) -> ZoneReading:
    return ZoneReading(SITE, "cam1", ZONE, ZoneStatus.OK, count, ts, 0.0)


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        pytest.param(
            [10, 12, 15, 18, 20, 22, 24, 26, 28, 29, 30], "firing", id="rose-20-in-10-min"
        ),
        pytest.param([10, 12, 15, 18, 20, 22, 24, 26, 28, 29, 29], "", id="rose-19"),
        pytest.param([10, 30], "", id="too-little-history"),
    ],
)
def test_rate_of_rise(counts: list[int], expected: str) -> None:
    history = CountHistory(timedelta(hours=1))
    last = _ramp(history, counts)
    evaluator = AlertEvaluator([rule(metric="rise", fire_at=20, window_s=600)], history)

    transitions = evaluator.evaluate([_reading_at(counts[-1], last)], last)

    assert [t.state for t in transitions] == ([expected] if expected else [])
    if expected:
        assert "rising 20/10 min" in transitions[0].message().summary_en


def test_forecast_blends_trend_and_reference_holiday() -> None:
    ramp = [(T0 + timedelta(minutes=m), 20 + 2 * m) for m in range(11)]  # +2 people a minute

    trend_only = forecast(ramp, 40, 50, 15, 600)
    blended = forecast(ramp, 40, 50, 15, 600, ReferenceTrend(now_mean=40, then_mean=50))

    assert trend_only is not None and blended is not None
    assert trend_only.rate_per_min == pytest.approx(2.0)
    assert trend_only.expected == pytest.approx(70)  # 40 + 2 * 15
    assert blended.reference_count == pytest.approx(50)  # 40 * 50 / 40
    assert blended.expected == pytest.approx(60)  # mean of 70 and 50
    assert blended.occupancy == pytest.approx(1.2)
    assert blended.minutes_to_full == pytest.approx(7.5)  # 10 people at 20/15 per minute
    assert forecast(ramp[:2], 22, 50, 15, 600) is None, "two samples are no trend"


def test_forecast_rule_fires_before_the_zone_is_full_and_explains_itself() -> None:
    history = CountHistory(timedelta(hours=1))
    last = _ramp(history, [20 + 2 * m for m in range(11)])
    evaluator = AlertEvaluator(
        [rule(id="filling", metric="forecast_occupancy", fire_at=1.0, horizon_min=15)],
        history,
        lambda site, zone, horizon: ReferenceTrend(40, 50),
    )

    [fired] = evaluator.evaluate([_reading_at(40, last)], last)

    assert fired.value == pytest.approx(1.2)
    assert "forecast 120% of capacity in 15 min, full in ~8 min" in fired.message().summary_en
    assert "(trend +20/10 min, last holiday +25%)" in fired.message().summary_en
    assert "上个假日 +25%" in fired.message().summary_zh


def test_no_data_is_its_own_alert_per_camera() -> None:
    evaluator = AlertEvaluator([rule(id="camera-down", metric="no_data_s", fire_at=120)])
    stale = ZoneReading(SITE, "cam1", ZONE, ZoneStatus.OFFLINE, None, T0, 0.0)
    fresh = ZoneReading(SITE, "cam1", ZONE, ZoneStatus.OK, 5, T0 + timedelta(minutes=5), 0.0)

    quiet = evaluator.evaluate([], T0, camera_readings([stale], T0 + timedelta(seconds=60), T0))
    now = T0 + timedelta(seconds=130)
    [down] = evaluator.evaluate([], now, camera_readings([stale], now, T0))
    later = T0 + timedelta(minutes=5)
    [back] = evaluator.evaluate([fresh], later, camera_readings([fresh], later, T0))

    assert quiet == []
    assert (down.state, down.key, down.value) == ("firing", "stop-a/cam:cam1/camera-down", 130)
    assert down.message().summary_en.startswith("Stop A camera cam1: no data for 2 min (offline)")
    assert back.state == "resolved"


def test_dispatcher_text_for_a_bus_stop_with_routes() -> None:
    raw = config_dict(site_dict("stop-x"))
    raw["sites"][0]["routes"] = ["K1", "202"]
    site = make_config(raw).sites[0]
    eff = effective_rule(rule(id="queue", metric="people", fire_at=80), site, "platform")
    assert eff is not None
    facts = AlertFacts(count=85, capacity=50, longest_wait_s=14 * 60, rise=20, rise_window_s=600)

    text = alert_text(
        "firing", site, ZONE.name, "cam1", eff, 80, facts, since=T0 - timedelta(minutes=5)
    )

    assert text.en == (
        "Stop A platform: 85 waiting, 170% of capacity, longest wait 14 min, rising 20/10 min"
        " (threshold 80 people, since 16:55) — add buses on route K1, 202"
    )
    assert text.zh == (
        "甲站 候车区: 85 人候车, 达到容量的 170%, 最长等候 14 分钟, 10 分钟内增加 20 人"
        " (阈值 80 人, 自 16:55) — 建议: 加派 K1、202 路车辆"
    )


def test_a_rule_action_text_wins() -> None:
    action = {"zh": "关闭北入口", "en": "close the north entrance"}
    eff = effective_rule(rule(action=action), SITE, "platform")
    assert eff is not None
    text = alert_text(
        "firing", SITE, ZONE.name, "cam1", eff, 0.8, AlertFacts(count=45, capacity=50)
    )
    assert text.en.endswith("— close the north entrance")
    assert text.zh.endswith("— 建议: 关闭北入口")


@pytest.mark.parametrize(
    ("start", "end", "weekdays", "local", "inside"),
    [
        ("23:00", "06:00", [], datetime(2026, 10, 1, 23, 30), True),
        ("23:00", "06:00", [], datetime(2026, 10, 2, 5, 59), True),
        ("23:00", "06:00", [], datetime(2026, 10, 2, 6, 0), False),
        ("23:00", "06:00", [], datetime(2026, 10, 1, 12, 0), False),
        ("09:00", "17:00", [6, 7], datetime(2026, 10, 3, 10, 0), True),  # a Saturday
        ("09:00", "17:00", [6, 7], datetime(2026, 10, 2, 10, 0), False),  # a Friday
        ("23:00", "06:00", [4], datetime(2026, 10, 2, 1, 0), True),  # Thursday night
    ],
)
def test_mute_windows_in_local_time(
    start: str, end: str, weekdays: list[int], local: datetime, inside: bool
) -> None:
    from zoneinfo import ZoneInfo

    window = MuteWindow(id="w", start=start, end=end, weekdays=weekdays)
    at = local.replace(tzinfo=ZoneInfo("Asia/Shanghai")).astimezone(UTC)
    assert in_mute_window(window, at, "Asia/Shanghai") is inside


def test_count_history_ignores_duplicates_and_places_late_samples() -> None:
    history = CountHistory(timedelta(minutes=30))
    zone = ("stop-a", "platform")
    assert history.add(zone, T0 + timedelta(minutes=10), 30)
    assert not history.add(zone, T0 + timedelta(minutes=10), 99), "a duplicate changes nothing"
    assert history.add(zone, T0, 10), "a late sample goes in its place"
    assert history.samples(zone, T0) == [(T0, 10), (T0 + timedelta(minutes=10), 30)]
    assert history.rise(zone, timedelta(minutes=10)) == 20


def _alerts_config(rules: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    raw = config_dict(site_dict("stop-a"))
    raw["alerts"] = {"rules": rules, **extra}
    return raw


BAD_RULES = [
    (
        "unknown metric",
        _alerts_config([{"id": "x", "metric": "vibes", "fire_at": 1}]),
        "alerts.rules[0].metric: Input should be",
    ),
    (
        "clear above fire",
        _alerts_config([{"id": "x", "metric": "people", "fire_at": 10, "clear_at": 12}]),
        "alerts.rules[0]: clear_at (12) must not be above fire_at (10)",
    ),
    (
        "override clear above fire",
        _alerts_config(
            [{"id": "x", "metric": "people", "fire_at": 10, "overrides": [{"clear_at": 11}]}]
        ),
        "alerts.rules[0]: overrides[0]: clear_at (11) must not be above fire_at (10)",
    ),
    (
        "unknown site",
        _alerts_config([{"id": "x", "metric": "people", "fire_at": 10, "sites": ["nowhere"]}]),
        "alerts.rules[0].sites: rule 'x' names unknown site(s) ['nowhere']",
    ),
    (
        "unknown site in an override",
        _alerts_config(
            [{"id": "x", "metric": "people", "fire_at": 9, "overrides": [{"sites": ["nope"]}]}]
        ),
        "alerts.rules[0].overrides[0].sites: unknown site(s) ['nope']",
    ),
    (
        "unknown zone in an override",
        _alerts_config(
            [{"id": "x", "metric": "people", "fire_at": 9, "overrides": [{"zones": ["roof"]}]}]
        ),
        "alerts.rules[0].overrides[0].zones: unknown zone(s) ['roof'] of sites ['stop-a']",
    ),
    (
        "unknown channel in a route",
        _alerts_config([], routes=[{"notify": ["pager"]}]),
        "alerts: Value error, routes[0]: unknown channel(s) ['pager']",
    ),
    (
        "robot without a URL",
        _alerts_config([], channels=[{"id": "bot", "type": "wecom"}]),
        "alerts.channels[0].url: Field required",
    ),
    (
        "unregistered channel type",
        _alerts_config([], channels=[{"id": "bot", "type": "slack", "url": "http://x/y"}]),
        "alerts.channels[0].type: unknown channel type 'slack'; expected one of webhook, wecom,"
        " dingtalk, feishu, email, grafana",
    ),
    (
        "channel without a type",
        _alerts_config([], channels=[{"id": "bot", "url": "http://x/y"}]),
        "alerts.channels[0].type: a channel needs a 'type': one of webhook,",
    ),
    (
        "a setting of another channel type",
        _alerts_config([], channels=[{"id": "h", "type": "webhook", "url": "u", "secret": "s"}]),
        "alerts.channels[0].secret: unknown key",
    ),
]


@pytest.mark.parametrize(
    ("raw", "message"), [pytest.param(r, m, id=name) for name, r, m in BAD_RULES]
)
def test_invalid_rules_refuse_to_load_with_the_yaml_path(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, origin="district.yaml")
    assert message.replace("Value error, ", "") in str(caught.value)
    assert str(caught.value).startswith("district.yaml: ")


def test_reference_days_and_full_alert_config_load() -> None:
    raw = _alerts_config(
        [{"id": "x", "metric": "forecast_occupancy", "fire_at": 1.0, "mute_windows": ["night"]}],
        channels=[{"id": "hook", "type": "webhook", "url": "http://127.0.0.1:9/hook"}],
        routes=[
            {
                "departments": ["transport"],
                "notify": ["hook"],
                "escalation": [{"after_min": 5, "notify": ["hook"]}],
            }
        ],
        mute_windows=[{"id": "night", "start": "23:00", "end": "06:00"}],
        reference_days=["2026-05-01"],
    )
    config = parse_config(raw)
    assert config.alerts.reference_days == [date(2026, 5, 1)]
    assert config.alerts.routes[0].escalation[0].after_min == 5
