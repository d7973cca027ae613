"""From "the stop is crowded" to "send 2 more K1 buses now": a dispatch recommendation.

Pure arithmetic over typed values, no I/O, so a dispatcher (and a test) can redo it by hand.

For a bus stop and each route serving it, over the next ``horizon_min`` minutes::

    people waiting now W, arriving at λ per minute (entrance line, or the rise of the count)
    scheduled buses b1, b2, ... reach the stop at t1 < t2 < ..., each with capacity c

    route r gets the share s_r of W and λ: its seats on the scheduled buses of the horizon over
    all routes' seats (people wait for their own route; the camera sees one platform)

    queue q(0) = s_r·W; at each bus k: q += s_r·λ·(t_k - t_(k-1)); q -= min(q, c_k)
    cleared at the first bus that leaves nobody behind; left behind = q after the last
    scheduled bus of the horizon (everyone at its end when no bus comes)

When the scheduled buses do not clear the route's queue within ``target_min``, extra buses are
added that reach the stop ``extra_bus_lead_min`` after the dispatcher sends them: as many as the
queue then needs, ``ceil(q(lead) / c)``.  A route that can turn a bus back mid-route
(``short_turn_lead_min``) gets a short turn instead only when depot buses would arrive after the
target; short turns cost the riders beyond the turning point a bus, so depot buses come first.
The clearance time with and without them comes from the same walk, and so do the people still
waiting at ``target_min`` with and without them: their difference is the stranded passengers the
extra buses are expected to take away (what the dispatcher's message says they avoid).

No camera reading, an offline camera or a reading older than ``stale_after_s`` gives no
recommendation at all (:class:`NoRecommendation`): buses are never sent on a guess.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

MAX_EXTRA_BUSES = 20
"""More than this on one route is not a dispatch, it is an evacuation: the plan stops there."""

_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class ScheduledBus:
    """A bus that reaches the stop (and boards) at ``at``."""

    route: str
    at: datetime
    capacity: int


@dataclass(frozen=True, slots=True)
class RouteService:
    """A route at the stop, and how fast an extra bus can reach it."""

    route: str
    bus_capacity: int
    extra_bus_lead_min: float
    """minutes from sending a bus out of the depot to its arrival at the stop"""
    short_turn_lead_min: float | None = None
    """minutes for a bus turned back mid-route to reach the stop; ``None``: no short turn"""


@dataclass(frozen=True, slots=True)
class StopReading:
    """What the camera says about the stop now."""

    site_id: str
    waiting: int | None
    """people counted waiting; ``None``: the camera never sent a count"""
    observed_at: datetime | None
    online: bool
    arrival_rate_per_min: float | None
    """people arriving per minute; ``None``: unknown (the plan then covers those waiting now)"""


class Withheld(StrEnum):
    """Why a stop gets no recommendation."""

    NO_DATA = "no_data"
    OFFLINE = "offline"
    STALE = "stale"
    NO_ROUTES = "no_routes"


@dataclass(frozen=True, slots=True)
class NoRecommendation:
    site_id: str
    reason: Withheld
    detail: str


class ServiceKind(StrEnum):
    EXTRA = "extra"
    """buses sent from the depot (Jinan's 加班车)"""
    SHORT_TURN = "short_turn"
    """buses turned back mid-route to serve the stop (区间车)"""


@dataclass(frozen=True, slots=True)
class RouteDispatch:
    """One route's part of the plan."""

    route: str
    waiting: float
    """this route's share of the people waiting"""
    arrival_rate_per_min: float
    scheduled_buses: int
    scheduled_capacity: int
    """seats on the route's scheduled buses in the horizon"""
    left_behind: float
    """people the last scheduled bus of the horizon leaves behind (see the module doc)"""
    clear_min_without: float | None
    """minutes until a scheduled bus leaves nobody behind; ``None``: not within the horizon"""
    kind: ServiceKind
    buses: int
    """extra (or short-turn) buses to send now; 0 when the timetable clears the stop in time"""
    arrive_in_min: float
    clear_min_with: float | None
    stranded_at_target_without: float = 0.0
    """people still waiting at ``target_min`` with the timetable's buses alone"""
    stranded_at_target_with: float = 0.0
    """the same with the recommended buses too"""

    @property
    def stranded_avoided(self) -> float:
        """People the recommended buses take away by ``target_min`` (0 when none are sent)."""
        return max(0.0, self.stranded_at_target_without - self.stranded_at_target_with)


@dataclass(frozen=True, slots=True)
class DispatchRecommendation:
    site_id: str
    as_of: datetime
    waiting: int
    arrival_rate_per_min: float | None
    target_min: float
    horizon_min: float
    routes: tuple[RouteDispatch, ...]

    @property
    def extra_buses(self) -> int:
        return sum(r.buses for r in self.routes)

    @property
    def clear_min_without(self) -> float | None:
        """When every route's queue has cleared without extra buses (``None``: not in the horizon)."""
        return _latest([r.clear_min_without for r in self.routes])

    @property
    def clear_min_with(self) -> float | None:
        return _latest([r.clear_min_with for r in self.routes])

    @property
    def stranded_avoided(self) -> float:
        return sum(r.stranded_avoided for r in self.routes)

    @property
    def meets_target(self) -> bool:
        """Whether the plan clears every route within ``target_min``."""
        clear = self.clear_min_with
        return clear is not None and clear <= self.target_min


def _latest(minutes: list[float | None]) -> float | None:
    if any(m is None for m in minutes):
        return None
    return max((m for m in minutes if m is not None), default=0.0)


def rate_from_entrance(people_in: int, window_s: float) -> float:
    """Arrivals per minute from an entrance line's "in" crossings over ``window_s``.

    Example:
        >>> rate_from_entrance(30, 300)
        6.0
    """
    if window_s <= 0:
        raise ValueError(f"window_s must be positive, got {window_s}")
    return people_in * 60.0 / window_s


def rate_from_occupancy(
    samples: Sequence[tuple[datetime, int]], departures: Sequence[datetime] = ()
) -> float | None:
    """Arrivals per minute from the rise of the count since the last bus left.

    A departure empties part of the queue, so only samples after the last departure (within
    the samples' span) are used: the rise between the first and the last of them over their
    span.  ``None`` when fewer than two such samples span at least a minute.

    Example:
        >>> from datetime import datetime as dt
        >>> rate_from_occupancy([(dt(2026, 10, 1, 17, 0), 40), (dt(2026, 10, 1, 17, 5), 70)])
        6.0
    """
    ordered = sorted(samples, key=lambda s: s[0])
    if ordered:
        gone = [d for d in departures if ordered[0][0] <= d <= ordered[-1][0]]
        if gone:
            last = max(gone)
            ordered = [s for s in ordered if s[0] >= last]
    if len(ordered) < 2:
        return None
    span_min = (ordered[-1][0] - ordered[0][0]).total_seconds() / 60.0
    if span_min < 1.0:
        return None
    return max(0.0, (ordered[-1][1] - ordered[0][1]) / span_min)


def recommend(
    reading: StopReading,
    services: Sequence[RouteService],
    timetable: Sequence[ScheduledBus],
    *,
    now: datetime,
    target_min: float = 15.0,
    horizon_min: float = 30.0,
    stale_after_s: float = 120.0,
) -> DispatchRecommendation | NoRecommendation:
    """How many extra buses per route clear the stop within ``target_min``.

    Args:
        reading: the camera's latest count at the stop, its age and the arrival rate.
        services: the routes serving the stop.
        timetable: scheduled buses at the stop (any span; those in the horizon are used).
        now: the time of the decision (timezone-aware, like the timetable).
        target_min: minutes within which the stop should be cleared.
        horizon_min: minutes of timetable to look at ("the next N minutes"), at least target.
        stale_after_s: a reading older than this gives no recommendation.

    Returns:
        The plan, or why there is none (no data, offline or stale camera, no routes).
    """
    if not 0 < target_min <= horizon_min:
        raise ValueError(f"need 0 < target_min <= horizon_min, got {target_min}, {horizon_min}")
    withheld = _withheld(reading, services, now, stale_after_s)
    if withheld is not None:
        return withheld
    assert reading.waiting is not None  # _withheld refused the rest
    rate = reading.arrival_rate_per_min or 0.0
    end = now + timedelta(minutes=horizon_min)
    buses = sorted((b for b in timetable if now < b.at <= end), key=lambda b: b.at)
    shares = _demand_shares(services, buses)
    plans = tuple(
        _plan_route(
            service,
            [b for b in buses if b.route == service.route],
            reading.waiting * shares[service.route],
            rate * shares[service.route],
            now,
            target_min,
            horizon_min,
        )
        for service in services
    )
    return DispatchRecommendation(
        site_id=reading.site_id,
        as_of=now,
        waiting=reading.waiting,
        arrival_rate_per_min=reading.arrival_rate_per_min,
        target_min=target_min,
        horizon_min=horizon_min,
        routes=plans,
    )


def _withheld(
    reading: StopReading, services: Sequence[RouteService], now: datetime, stale_after_s: float
) -> NoRecommendation | None:
    site = reading.site_id
    if not reading.online:
        return NoRecommendation(site, Withheld.OFFLINE, "camera offline: no buses on a guess")
    if reading.waiting is None or reading.observed_at is None:
        return NoRecommendation(site, Withheld.NO_DATA, "no count from the stop's camera yet")
    age_s = (now - reading.observed_at).total_seconds()
    if age_s > stale_after_s:
        return NoRecommendation(
            site, Withheld.STALE, f"last count {age_s:.0f} s old (stale after {stale_after_s:g} s)"
        )
    if not services:
        return NoRecommendation(site, Withheld.NO_ROUTES, "no bus route configured for the stop")
    return None


def _demand_shares(
    services: Sequence[RouteService], buses: Sequence[ScheduledBus]
) -> dict[str, float]:
    seats = {s.route: 0 for s in services}
    for bus in buses:
        if bus.route in seats:
            seats[bus.route] += bus.capacity
    total = sum(seats.values())
    if total == 0:
        # No scheduled bus at all in the horizon: nothing tells the routes apart.
        return {route: 1.0 / len(seats) for route in seats}
    return {route: n / total for route, n in seats.items()}


def _plan_route(
    service: RouteService,
    buses: list[ScheduledBus],
    waiting: float,
    rate: float,
    now: datetime,
    target_min: float,
    horizon_min: float,
) -> RouteDispatch:
    arrivals = [(b.at - now).total_seconds() / 60.0 for b in buses]
    seats = [b.capacity for b in buses]
    schedule = list(zip(arrivals, seats, strict=True))
    clear_without, left = _walk(waiting, rate, schedule)
    if not buses:
        left = waiting + rate * horizon_min
    kind, lead = _choose_service(service, target_min)
    count = 0
    clear_with = clear_without
    stranded_without = _queue_before(
        waiting, rate, [b for b in schedule if b[0] <= target_min], target_min
    )
    stranded_with = stranded_without
    if clear_without is None or clear_without > target_min:
        before = [(t, c) for t, c in schedule if t <= lead]
        queue_at_lead = _queue_before(waiting, rate, before, lead)
        count = min(MAX_EXTRA_BUSES, math.ceil(queue_at_lead / service.bus_capacity - _EPS))
        extras = [(lead, service.bus_capacity)] * count
        # Extras reaching the stop with a scheduled bus board after it (sort is stable).
        merged = sorted([*schedule, *extras], key=lambda x: x[0])
        clear_with, _ = _walk(waiting, rate, merged)
        by_target = [b for b in merged if b[0] <= target_min]
        stranded_with = _queue_before(waiting, rate, by_target, target_min)
    return RouteDispatch(
        route=service.route,
        waiting=waiting,
        arrival_rate_per_min=rate,
        scheduled_buses=len(buses),
        scheduled_capacity=sum(seats),
        left_behind=left,
        clear_min_without=clear_without,
        kind=kind,
        buses=count,
        arrive_in_min=lead,
        clear_min_with=clear_with,
        stranded_at_target_without=stranded_without,
        stranded_at_target_with=stranded_with,
    )


def _choose_service(service: RouteService, target_min: float) -> tuple[ServiceKind, float]:
    depot = service.extra_bus_lead_min
    turn = service.short_turn_lead_min
    if depot > target_min and turn is not None and turn < depot:
        return ServiceKind.SHORT_TURN, turn
    return ServiceKind.EXTRA, depot


def _after_each_bus(
    waiting: float, rate: float, buses: Sequence[tuple[float, int]]
) -> Iterator[tuple[float, float]]:
    """``(minute, people left)`` as each bus, in time order, boards up to its seats."""
    queue, last_t = waiting, 0.0
    for t, seats in buses:
        queue += rate * (t - last_t)
        queue -= min(queue, seats)
        last_t = t
        yield t, queue


def _walk(
    waiting: float, rate: float, buses: Sequence[tuple[float, int]]
) -> tuple[float | None, float]:
    """(minutes until a bus leaves nobody behind or None, queue after the last bus)."""
    if waiting <= _EPS:
        return 0.0, 0.0
    cleared, queue = None, waiting
    for t, queue in _after_each_bus(waiting, rate, buses):
        if cleared is None and queue <= _EPS:
            cleared = t
    return cleared, max(0.0, queue)


def _queue_before(
    waiting: float, rate: float, buses: Sequence[tuple[float, int]], at: float
) -> float:
    """People waiting at minute ``at``, after the scheduled buses up to then have boarded."""
    last_t, queue = [(0.0, waiting), *_after_each_bus(waiting, rate, buses)][-1]
    return max(0.0, queue + rate * (at - last_t))
