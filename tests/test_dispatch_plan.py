"""The dispatch recommendation against cases worked out by hand (see each case's comment).

Every case: now = 17:00, K1 buses (80 seats) at +5, +15, +25 min unless said otherwise,
target 15 min, horizon 30 min.  The queue walk: at each bus, q += rate·Δt, then q -= seats.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from crowdwatch.analytics.dispatch_plan import (
    DispatchRecommendation,
    NoRecommendation,
    RouteService,
    ScheduledBus,
    ServiceKind,
    StopReading,
    Withheld,
    rate_from_entrance,
    rate_from_occupancy,
    recommend,
)

NOW = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)  # 17:00 in Asia/Shanghai


def at(minutes: float) -> datetime:
    return NOW + timedelta(minutes=minutes)


def buses(route: str, seats: int, *minutes: float) -> list[ScheduledBus]:
    return [ScheduledBus(route, at(m), seats) for m in minutes]


def reading(
    waiting: int | None,
    rate: float | None,
    *,
    age_s: float = 5,
    online: bool = True,
) -> StopReading:
    observed = None if waiting is None else NOW - timedelta(seconds=age_s)
    return StopReading("stop-xiwan-terminus", waiting, observed, online, rate)


K1 = RouteService("K1", bus_capacity=80, extra_bus_lead_min=10)
K1_BUSES = buses("K1", 80, 5, 15, 25)


@dataclass(frozen=True)
class Case:
    waiting: int
    rate: float | None
    service: RouteService
    timetable: list[ScheduledBus]
    kind: ServiceKind
    extra: int
    clear_without: float | None
    clear_with: float | None
    left_behind: float
    meets_target: bool


CASES = {
    # t5: 85+30=115-80=35; t15: 35+60=95-80=15; t25: 15+60=75 -> 0: clears at 25 > 15.
    # Extras at 10: 35+30=65 waiting -> ceil(65/80)=1 bus, clears at 10.
    "one extra bus": Case(85, 6.0, K1, K1_BUSES, ServiceKind.EXTRA, 1, 25, 10, 0, True),
    # Same queue, depot 20 min away (> target), short turn in 8: 35+18=53 -> 1 short turn at 8.
    "short turn when the depot is too far": Case(
        85,
        6.0,
        RouteService("K1", 80, extra_bus_lead_min=20, short_turn_lead_min=8),
        K1_BUSES,
        ServiceKind.SHORT_TURN,
        1,
        25,
        8,
        0,
        True,
    ),
    # Depot 20 min away, no short turn: at 20, 15+30=45 -> 1 bus, clears at 20: misses target.
    "late depot bus": Case(
        85,
        6.0,
        RouteService("K1", 80, extra_bus_lead_min=20),
        K1_BUSES,
        ServiceKind.EXTRA,
        1,
        25,
        20,
        0,
        False,
    ),
    # t5: 30+10=40 -> 0: the timetable clears it at 5, nothing to send.
    "timetable suffices": Case(30, 2.0, K1, K1_BUSES, ServiceKind.EXTRA, 0, 5, 5, 0, True),
    # 300 waiting, 10/min: t5: 350-80=270; t15: 370-80=290; t25: 390-80=310 left behind.
    # At 10: 270+50=320 -> 4 buses, clears at 10.
    "big queue": Case(300, 10.0, K1, K1_BUSES, ServiceKind.EXTRA, 4, None, 10, 310, True),
    # No bus in the horizon: 50+2·30=110 left at its end; at 10: 50+20=70 -> 1 bus.
    "no scheduled bus": Case(50, 2.0, K1, [], ServiceKind.EXTRA, 1, None, 10, 110, True),
    # Unknown arrival rate plans for those waiting: t5: 85-80=5; t15: 5 -> 0 at 15.
    "unknown arrival rate": Case(85, None, K1, K1_BUSES, ServiceKind.EXTRA, 0, 15, 15, 0, True),
    # Buses outside the horizon (at -1 and +31) do not count: no bus -> 20+0 left; 1 bus at 10.
    "buses outside the horizon": Case(
        20, 0.0, K1, buses("K1", 80, -1, 31), ServiceKind.EXTRA, 1, None, 10, 20, True
    ),
    # Nobody waiting: nothing is stranded.
    "empty stop": Case(0, 3.0, K1, K1_BUSES, ServiceKind.EXTRA, 0, 0, 0, 0, True),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_one_route_by_hand(case: Case) -> None:
    plan = recommend(reading(case.waiting, case.rate), [case.service], case.timetable, now=NOW)
    assert isinstance(plan, DispatchRecommendation)
    (route,) = plan.routes
    assert route.kind is case.kind
    assert route.buses == plan.extra_buses == case.extra
    assert route.clear_min_without == pytest.approx(case.clear_without)
    assert route.clear_min_with == pytest.approx(case.clear_with)
    assert route.left_behind == pytest.approx(case.left_behind)
    assert plan.meets_target is case.meets_target


def test_two_routes_share_the_platform_by_seats() -> None:
    # K1: 3 x 80 = 240 seats in the horizon, K3: 2 x 60 = 120 -> shares 2/3 and 1/3 of
    # 180 waiting and 9/min: K1 120 and 6/min, K3 60 and 3/min.
    k3 = RouteService("K3", bus_capacity=60, extra_bus_lead_min=12)
    timetable = K1_BUSES + buses("K3", 60, 10, 30)
    plan = recommend(reading(180, 9.0), [K1, k3], timetable, now=NOW)
    assert isinstance(plan, DispatchRecommendation)
    k1_plan, k3_plan = plan.routes
    assert (k1_plan.waiting, k1_plan.arrival_rate_per_min) == pytest.approx((120, 6))
    assert (k3_plan.waiting, k3_plan.arrival_rate_per_min) == pytest.approx((60, 3))
    assert (k1_plan.scheduled_capacity, k3_plan.scheduled_capacity) == (240, 120)
    # K1: t5 150-80=70; t15 130-80=50; t25 110-80=30 left. At 10: 70+30=100 -> 2 buses.
    assert (k1_plan.clear_min_without, k1_plan.left_behind) == (None, pytest.approx(30))
    assert (k1_plan.buses, k1_plan.clear_min_with) == (2, pytest.approx(10))
    # K3: t10 90-60=30; t30 90-60=30 left. At 12: 30+6=36 -> 1 bus, clears at 12.
    assert (k3_plan.clear_min_without, k3_plan.left_behind) == (None, pytest.approx(30))
    assert (k3_plan.buses, k3_plan.clear_min_with) == (1, pytest.approx(12))
    assert plan.extra_buses == 3
    assert plan.clear_min_without is None
    assert plan.clear_min_with == pytest.approx(12)
    assert plan.meets_target


def test_recommendation_follows_the_counts() -> None:
    quiet = recommend(reading(30, 2.0), [K1], K1_BUSES, now=NOW)
    crowded = recommend(reading(300, 10.0), [K1], K1_BUSES, now=NOW)
    assert isinstance(quiet, DispatchRecommendation)
    assert isinstance(crowded, DispatchRecommendation)
    assert (quiet.extra_buses, crowded.extra_buses) == (0, 4)


@pytest.mark.parametrize(
    ("stop", "services", "reason"),
    [
        (reading(None, None), [K1], Withheld.NO_DATA),
        (reading(85, 6.0, online=False), [K1], Withheld.OFFLINE),
        (reading(None, None, online=False), [K1], Withheld.OFFLINE),
        (reading(85, 6.0, age_s=121), [K1], Withheld.STALE),
        (reading(85, 6.0), [], Withheld.NO_ROUTES),
    ],
    ids=["no data", "offline", "offline without data", "stale", "no routes"],
)
def test_no_buses_on_a_guess(
    stop: StopReading, services: list[RouteService], reason: Withheld
) -> None:
    plan = recommend(stop, services, K1_BUSES, now=NOW, stale_after_s=120)
    assert isinstance(plan, NoRecommendation)
    assert plan.reason is reason
    assert plan.detail


def test_a_reading_just_inside_the_staleness_limit_is_used() -> None:
    plan = recommend(reading(85, 6.0, age_s=120), [K1], K1_BUSES, now=NOW, stale_after_s=120)
    assert isinstance(plan, DispatchRecommendation)


@pytest.mark.parametrize(
    ("target", "horizon", "error"),
    [(15, 30, None), (0, 30, ValueError), (31, 30, ValueError)],
)
def test_target_within_horizon(
    target: float, horizon: float, error: type[Exception] | None
) -> None:
    def run() -> object:
        return recommend(
            reading(85, 6.0), [K1], K1_BUSES, now=NOW, target_min=target, horizon_min=horizon
        )

    if error is None:
        assert isinstance(run(), DispatchRecommendation)
    else:
        with pytest.raises(error, match="target_min"):
            run()


@pytest.mark.parametrize(
    ("people_in", "window_s", "rate", "error"),
    [(30, 300, 6.0, None), (0, 60, 0.0, None), (10, 0, None, ValueError)],
)
def test_rate_from_entrance(
    people_in: int, window_s: float, rate: float | None, error: type[Exception] | None
) -> None:
    if error is not None:
        with pytest.raises(error, match="window_s"):
            rate_from_entrance(people_in, window_s)
    else:
        assert rate_from_entrance(people_in, window_s) == pytest.approx(rate)


def minute(m: float) -> datetime:
    return at(m)


@pytest.mark.parametrize(
    ("samples", "departures", "rate"),
    [
        # 40 -> 70 in 5 minutes.
        ([(minute(0), 40), (minute(5), 70)], [], 6.0),
        # A bus left at +1: only the samples after it (20 at +2, 32 at +6): 12 in 4 minutes.
        ([(minute(0), 40), (minute(2), 20), (minute(4), 26), (minute(6), 32)], [minute(1)], 3.0),
        # Without knowing the departure the fall reads as no arrivals, never as negative.
        ([(minute(0), 40), (minute(2), 20), (minute(6), 32)], [], 0.0),
        # One sample, or a span under a minute: no rate.
        ([(minute(0), 40)], [], None),
        ([(minute(0), 40), (minute(0.5), 45)], [], None),
        # A departure after the last sample is outside the samples: all are used.
        ([(minute(0), 10), (minute(2), 16)], [minute(3)], 3.0),
        ([], [], None),
    ],
)
def test_rate_from_rise_of_occupancy(
    samples: list[tuple[datetime, int]], departures: list[datetime], rate: float | None
) -> None:
    got = rate_from_occupancy(samples, departures)
    if rate is None:
        assert got is None
    else:
        assert got == pytest.approx(rate)
