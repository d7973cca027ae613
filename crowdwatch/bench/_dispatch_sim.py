"""A simulated holiday afternoon at a bus terminus, with and without dispatch recommendations.

This is a simulation, not a measurement at a real stop::

    passengers ── Poisson arrivals, rate ∝ the simulator's bus_stop holiday curve ──► queue per route
    buses ─────── the routes' headway timetable, each boarding up to its capacity (FIFO)
    camera ────── every minute: the people waiting (± count_error) and the entrance line's
                  arrivals over the last 5 minutes
    dispatcher ── ``delay_min`` after the stop turned crowded (waiting >= fire_at), sends the
                  buses that :func:`crowdwatch.analytics.dispatch_plan.recommend` says then
                  (it follows the counts); they reach the stop after the route's lead time

Two policies without recommendations: ``timetable`` (no extra bus at all) and ``one_per_alert``
(today's alert, "add buses on K1, K3": each time the stop's alert fires the dispatcher sends one
depot bus per route; the alert clears below ``2/3 * fire_at``, hysteresis as a rule's
``clear_at``).
A passenger is *stranded* from the first bus of their route that leaves without them until
they board; the figures are stranded passenger-minutes and the longest wait.  Passengers pick a
route in proportion to its scheduled seats, the same split the recommendation assumes.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import assert_never
from zoneinfo import ZoneInfo

from crowdwatch.analytics.dispatch_plan import (
    DispatchRecommendation,
    RouteService,
    ScheduledBus,
    ServiceKind,
    StopReading,
    rate_from_entrance,
    recommend,
)
from crowdwatch.analytics.timetable import headway_buses
from crowdwatch.contracts.config import BusRoute, Headway, SiteKind
from crowdwatch.simulator.crowd import poisson
from crowdwatch.simulator.curves import expected_occupancy

TZ = ZoneInfo("Asia/Shanghai")
STOP = "stop-xiwan-terminus"
ROUTES = (
    BusRoute(
        id="K1",
        bus_capacity=80,
        stops=[STOP],
        headways=[Headway(start="06:00", end="22:00", every_min=10)],
        extra_bus_lead_min=12,
    ),
    BusRoute(
        id="K3",
        bus_capacity=60,
        stops=[STOP],
        headways=[Headway(start="06:00", end="22:00", every_min=15)],
        extra_bus_lead_min=20,
        short_turn_lead_min=8,
    ),
)
"""The terminus's routes: 8 + 4 = 12 scheduled seats a minute."""
STEP_MIN = 0.1
RATE_WINDOW_MIN = 5.0


class Policy(StrEnum):
    TIMETABLE = "timetable"
    ONE_PER_ALERT = "one_per_alert"
    RECOMMENDATION = "recommendation"


@dataclass(frozen=True, slots=True)
class SimSettings:
    day: date = date(2026, 10, 1)
    start_hour: float = 14.0
    end_hour: float = 20.0
    peak_arrivals_per_min: float = 18.0
    """arrivals at the curve's highest point of the afternoon (scheduled seats: 12 a minute)"""
    fire_at: int = 60
    """people waiting at which the dispatcher looks at the recommendation"""
    delay_min: float = 3.0
    """minutes from the recommendation to the dispatcher sending the buses"""
    target_min: float = 15.0
    horizon_min: float = 30.0
    count_error: float = 0.1
    """the camera's count is off by up to this share (uniform), as a real counter is"""
    seed: int = 0


@dataclass(slots=True)
class Outcome:
    passengers: int = 0
    boarded: int = 0
    stranded_passenger_min: float = 0.0
    longest_wait_min: float = 0.0
    total_wait_min: float = 0.0
    extra_buses: int = 0
    short_turns: int = 0
    recommendations: int = 0

    def figures(self) -> dict[str, float | int]:
        return {
            "passengers": self.passengers,
            "stranded_passenger_min": round(self.stranded_passenger_min, 1),
            "longest_wait_min": round(self.longest_wait_min, 1),
            "mean_wait_min": round(self.total_wait_min / max(1, self.passengers), 2),
            "extra_buses": self.extra_buses,
            "short_turns": self.short_turns,
        }


@dataclass(slots=True)
class _Waiting:
    arrived: float
    missed: float | None = None
    """minute the first bus of the route left without this passenger"""


@dataclass(slots=True)
class _Stop:
    queues: dict[str, deque[_Waiting]]
    buses: list[tuple[float, str, int]]
    """(minute, route, seats), kept sorted; the scheduled and the extra ones"""
    arrivals: list[float] = field(default_factory=list)
    """minutes people crossed the entrance line, for the arrival rate"""


def simulate(settings: SimSettings, policy: Policy) -> Outcome:
    """One afternoon under ``policy``: the same arrivals for every policy of a seed."""
    rng = random.Random(settings.seed)
    camera_rng = random.Random(settings.seed + 1)
    start = datetime.combine(settings.day, time(), TZ) + timedelta(hours=settings.start_hour)
    length = (settings.end_hour - settings.start_hour) * 60.0
    timetable = [
        b
        for route in ROUTES
        for b in headway_buses(route, TZ, start, start + timedelta(minutes=length))
    ]
    seats = {r.id: sum(b.capacity for b in timetable if b.route == r.id) for r in ROUTES}
    shares = [seats[r.id] / sum(seats.values()) for r in ROUTES]
    stop = _Stop(
        queues={r.id: deque() for r in ROUTES},
        buses=sorted((_minute(b.at, start), b.route, b.capacity) for b in timetable),
    )
    peak = max(
        expected_occupancy(SiteKind.BUS_STOP, settings.start_hour + i / 60.0)
        for i in range(int(length) + 1)
    )
    outcome = Outcome()
    dispatcher = _Dispatcher(settings, policy, start)
    steps = round(length / STEP_MIN)
    for step in range(steps):
        now = step * STEP_MIN
        hour = settings.start_hour + now / 60.0
        rate = settings.peak_arrivals_per_min * expected_occupancy(SiteKind.BUS_STOP, hour) / peak
        for _ in range(poisson(rng, rate * STEP_MIN)):
            arrived = now + rng.random() * STEP_MIN
            route = rng.choices([r.id for r in ROUTES], weights=shares)[0]
            stop.queues[route].append(_Waiting(arrived))
            stop.arrivals.append(arrived)
            outcome.passengers += 1
        end = now + STEP_MIN
        while stop.buses and stop.buses[0][0] < end:
            at, route, capacity = stop.buses.pop(0)
            _board(stop.queues[route], max(at, now), capacity, outcome)
        if step % round(1 / STEP_MIN) == 0:  # the dispatcher sees the stop each minute
            dispatcher.look(stop, now, end, camera_rng, outcome)
    for queue in stop.queues.values():
        for person in queue:  # still waiting at the end: their wait so far counts
            _account(person, length, outcome)
    return outcome


@dataclass(slots=True)
class _Dispatcher:
    settings: SimSettings
    policy: Policy
    start: datetime
    firing: bool = False
    act_at: float | None = None
    """minute the dispatcher acts on the recommendation (None: nothing pending)"""

    def look(
        self, stop: _Stop, now: float, end: float, rng: random.Random, outcome: Outcome
    ) -> None:
        settings = self.settings
        counted = _count(_waiting(stop), settings.count_error, rng)
        fires = counted >= settings.fire_at and not self.firing
        self.firing = counted >= settings.fire_at * 2 / 3 if self.firing else fires
        sent_at = end + settings.delay_min
        match self.policy:
            case Policy.TIMETABLE:
                return
            case Policy.ONE_PER_ALERT:
                if fires:
                    for route in ROUTES:
                        bus = (sent_at + route.extra_bus_lead_min, route.id, route.bus_capacity)
                        stop.buses.append(bus)
                        outcome.extra_buses += 1
                    stop.buses.sort()
            case Policy.RECOMMENDATION:
                # The page's recommendation follows the counts: the dispatcher, ``delay_min``
                # after the stop turned crowded, sends what it says at that moment (the buses
                # already on their way are in its timetable, so it never asks twice).
                if self.act_at is None:
                    if counted >= settings.fire_at:
                        self.act_at = now + settings.delay_min
                    return
                if now < self.act_at:
                    return
                self.act_at = None
                plan = _recommend(stop, counted, settings, self.start, end)
                if plan is not None and plan.extra_buses > 0:
                    outcome.recommendations += 1
                    _send(stop, plan, end, outcome)
            case _:
                assert_never(self.policy)


def _minute(at: datetime, start: datetime) -> float:
    return (at - start).total_seconds() / 60.0


def _waiting(stop: _Stop) -> int:
    return sum(len(q) for q in stop.queues.values())


def _board(queue: deque[_Waiting], at: float, capacity: int, outcome: Outcome) -> None:
    for _ in range(min(capacity, len(queue))):
        person = queue.popleft()
        _account(person, at, outcome)
        outcome.boarded += 1
    for person in queue:
        if person.missed is None and person.arrived <= at:
            person.missed = at


def _account(person: _Waiting, at: float, outcome: Outcome) -> None:
    wait = max(0.0, at - person.arrived)
    outcome.total_wait_min += wait
    outcome.longest_wait_min = max(outcome.longest_wait_min, wait)
    if person.missed is not None:
        outcome.stranded_passenger_min += at - person.missed


def _count(true_count: int, error: float, rng: random.Random) -> int:
    """What the camera counts: the truth off by up to ``error`` of it."""
    return max(0, round(true_count * (1 + rng.uniform(-1, 1) * error)))


def _recommend(
    stop: _Stop, counted: int, settings: SimSettings, start: datetime, now_min: float
) -> DispatchRecommendation | None:
    crossed = sum(1 for t in stop.arrivals if now_min - RATE_WINDOW_MIN < t <= now_min)
    now = start + timedelta(minutes=now_min)
    reading = StopReading(
        STOP, counted, now, True, rate_from_entrance(crossed, RATE_WINDOW_MIN * 60)
    )
    services = [
        RouteService(r.id, r.bus_capacity, r.extra_bus_lead_min, r.short_turn_lead_min)
        for r in ROUTES
    ]
    # The buses already on their way, extra ones included, are "scheduled" for the plan.
    coming = [
        ScheduledBus(route, start + timedelta(minutes=at), seats) for at, route, seats in stop.buses
    ]
    plan = recommend(
        reading,
        services,
        coming,
        now=now,
        target_min=settings.target_min,
        horizon_min=settings.horizon_min,
    )
    return plan if isinstance(plan, DispatchRecommendation) else None


def _send(stop: _Stop, plan: DispatchRecommendation, sent_at: float, outcome: Outcome) -> None:
    for route in plan.routes:
        for _ in range(route.buses):
            stop.buses.append((sent_at + route.arrive_in_min, route.route, _capacity(route.route)))
            outcome.extra_buses += 1
            if route.kind is ServiceKind.SHORT_TURN:
                outcome.short_turns += 1
    stop.buses.sort()


def _capacity(route_id: str) -> int:
    return next(r.bus_capacity for r in ROUTES if r.id == route_id)


def gain_pct(before: float, after: float) -> float:
    """How much smaller ``after`` is than ``before``, in percent (0 when before is 0)."""
    return 0.0 if before <= 0 else round(100.0 * (before - after) / before, 1)
