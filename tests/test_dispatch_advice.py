"""The dispatch advice an alert carries: the plan's fields and its one-line text, by hand.

NOW is 17:00 in the district; K1 buses (80 seats) reach the stop at +5, +15, +25 min; the
target is 15 min.  The queue walks are those of ``test_dispatch_plan.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from factories import config_dict, make_config, site_dict

from crowdwatch.analytics.channels.text import plain_text
from crowdwatch.analytics.dispatch_advice import StopAdvisor, advice
from crowdwatch.analytics.dispatch_plan import (
    DispatchRecommendation,
    RouteService,
    ScheduledBus,
    StopReading,
    recommend,
)
from crowdwatch.analytics.readings import ZoneReading, ZoneStatus
from crowdwatch.contracts.config import CrowdwatchConfig
from crowdwatch.contracts.notification import Notification, NotificationEvent, NotifiedAlert

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)  # 17:00 local
K1 = RouteService("K1", bus_capacity=80, extra_bus_lead_min=10)


def at(minutes: float) -> datetime:
    return NOW + timedelta(minutes=minutes)


def k1_buses(*minutes: float) -> list[ScheduledBus]:
    return [ScheduledBus("K1", at(m), 80) for m in minutes]


def plan(
    waiting: int, rate: float, services: list[RouteService], timetable: list[ScheduledBus]
) -> DispatchRecommendation:
    found = recommend(StopReading("stop-a", waiting, NOW, True, rate), services, timetable, now=NOW)
    assert isinstance(found, DispatchRecommendation)
    return found


def test_one_extra_bus_by_hand() -> None:
    # t5: 85+30-80=35; t15: 35+60-80=15 still waiting at the target; t25: 15+60-80 -> 0.
    # One bus at 10: 35+30=65 -> 0; t15: 30-80 -> 0 waiting at the target: 15 avoided.
    got = advice(plan(85, 6.0, [K1], k1_buses(5, 15, 25)), TZ)
    [k1] = got.routes
    assert (k1.route, k1.kind, k1.buses) == ("K1", "extra", 1)
    assert k1.arrive_by == at(10)
    assert (k1.clear_min_without, k1.clear_min_with) == (pytest.approx(25), pytest.approx(10))
    assert k1.stranded_avoided == 15
    assert (got.waiting, got.arrival_rate_per_min, got.target_min) == (85, 6.0, 15)
    assert got.text_zh == (
        "调度建议: 立即加派 K1 路 1 辆 (17:10 前到站); 预计 10 分钟疏散 (不加车 25 分钟), 少滞留约 15 人"
    )
    assert got.text_en == (
        "Dispatch now: 1 extra K1 bus (at the stop by 17:10); clears in 10 min (25 without), "
        "~15 fewer stranded"
    )


def test_two_routes_one_short_turn_and_a_timetable_that_never_clears() -> None:
    # 300 waiting, 10/min, K1 only (depot 20 min > target, short turn in 8): t5 270; at 8:
    # 270+30=300 -> 4 short turns (320 seats), t15: 0+70-80 -> 0.  Without: t15 270+100-80=290.
    k1 = RouteService("K1", 80, extra_bus_lead_min=20, short_turn_lead_min=8)
    got = advice(plan(300, 10.0, [k1], k1_buses(5, 15, 25)), TZ)
    [route] = got.routes
    assert (route.kind, route.buses, route.stranded_avoided) == ("short_turn", 4, 290)
    assert route.clear_min_without is None
    assert got.text_en == (
        "Dispatch now: 4 short-turn K1 buses (at the stop by 17:08); clears in 8 min "
        "(not within 30 min without them), ~290 fewer stranded"
    )
    assert got.text_zh.startswith(
        "调度建议: 立即加派 K1 路区间车 4 辆 (17:08 前到站); 预计 8 分钟疏散"
    )


def test_only_routes_that_need_buses_are_named() -> None:
    # Seats 240 (K1) and 120 (K3): K1 gets 120 waiting and 6/min, K3 60 and 3/min.
    # K1: t5 150-80=70; t15 70+60-80=50 at the target; at 10: 70+30=100 -> 2 buses, 50 avoided.
    # K3 (60 seats at +3, +13): t3 60+9-60=9; t13 9+30-60 -> 0: cleared at 13, nothing.
    k3 = RouteService("K3", bus_capacity=60, extra_bus_lead_min=12)
    timetable = [
        *k1_buses(5, 15, 25),
        ScheduledBus("K3", at(3), 60),
        ScheduledBus("K3", at(13), 60),
    ]
    got = advice(plan(180, 9.0, [K1, k3], timetable), TZ)
    assert [(r.route, r.buses, r.stranded_avoided) for r in got.routes] == [
        ("K1", 2, 50),
        ("K3", 0, 0),
    ]
    assert "K3" not in got.text_en and "K3" not in got.text_zh
    assert got.text_en.startswith("Dispatch now: 2 extra K1 buses (at the stop by 17:10)")
    assert got.extra_buses == 2


def test_timetable_suffices() -> None:
    # t5: 30+10-80 -> 0: cleared at 5, nothing to send.
    got = advice(plan(30, 2.0, [K1], k1_buses(5, 15, 25)), TZ)
    assert got.extra_buses == 0
    assert got.text_en == "Dispatch: no extra bus needed, scheduled buses clear the stop in 5 min"
    assert got.text_zh == "调度建议: 无需加车, 按时刻表 5 分钟内疏散"


def test_chat_text_says_it_in_one_line() -> None:
    dispatch = advice(plan(85, 6.0, [K1], k1_buses(5, 15, 25)), TZ)
    alert = NotifiedAlert(
        alert_key="stop-a/platform/crowded",
        site_id="stop-a",
        zone_id="platform",
        rule_id="crowded",
        state="firing",
        severity="warning",
        value=1.7,
        threshold=0.8,
        ts=NOW,
        summary_zh="甲站 候车区: 85 人候车",
        summary_en="Stop A platform: 85 waiting",
        dispatch=dispatch,
    )
    n = Notification(
        id="a" * 32,
        event=NotificationEvent.FIRING,
        level=0,
        group="site:stop-a",
        department="transport",
        severity="warning",
        at=NOW,
        title_zh="t",
        title_en="t",
        alerts=(alert,),
    )
    lines = plain_text(n).split("\n")
    assert lines[3] == f"{dispatch.text_zh} / {dispatch.text_en}"
    assert len(lines) == 4
    # The contract carries it both ways.
    assert Notification.from_json(n.to_json()) == n


def transit_config() -> CrowdwatchConfig:
    raw = config_dict(site_dict("stop-a"))
    raw["transit"] = {
        "routes": [
            {
                "id": "K1",
                "bus_capacity": 80,
                "stops": ["stop-a"],
                "headways": [{"start": "16:05", "end": "19:00", "every_min": 15}],
            }
        ]
    }
    return make_config(raw)


def reading(
    config: CrowdwatchConfig, status: ZoneStatus, count: int | None, age_s: float
) -> ZoneReading:
    site = config.sites[0]
    zone = site.cameras[0].zones[0]
    return ZoneReading(site, "cam1", zone, status, count, NOW - timedelta(seconds=age_s), age_s)


@pytest.mark.parametrize(
    ("status", "count", "age_s", "advised"),
    [
        (ZoneStatus.OK, 85, 5, True),
        (ZoneStatus.STALE, None, 300, False),
        (ZoneStatus.OFFLINE, None, 30, False),
        (ZoneStatus.NO_DATA, None, 0, False),
    ],
    ids=["fresh", "stale", "offline", "no data"],
)
def test_advisor_never_advises_on_a_guess(
    status: ZoneStatus, count: int | None, age_s: float, advised: bool
) -> None:
    config = transit_config()
    assert config.transit is not None
    advisor = StopAdvisor(config.transit, None, TZ, stale_after_s=120)
    # The count rose 40 -> 85 over 5 min since the 16:50 bus: 9/min.
    samples = [(at(-5), 40), (at(0), 85)]
    got = advisor.advise(reading(config, status, count, age_s), samples, NOW)
    assert (got is not None) is advised
    if got is not None:
        assert got.arrival_rate_per_min == pytest.approx(9.0)
        assert got.waiting == 85
