"""The dispatch recommendation of a crowded bus stop, as the alert carries it.

:mod:`crowdwatch.analytics.dispatch_plan` does the arithmetic; this module feeds it what the
alert engine knows at the moment it tells people (the zone's count, its age and camera
state, the count's recent rise, the stop's timetable from ``transit``) and turns the plan into
the contract's :class:`~crowdwatch.contracts.notification.DispatchAdvice` with its one-line
text::

    调度建议: 立即加派 K1 路 2 辆 (17:40 前到站); 预计 10 分钟疏散 (不加车 25 分钟), 少滞留约 15 人
    Dispatch now: 2 extra K1 buses (at the stop by 17:40); clears in 10 min (25 without), ~15 fewer stranded

The arrival rate is the rise of the zone's count since the last scheduled bus left (entrance
lines are not in the engine's memory).  No count, a stale count or an offline camera gives
no advice: buses are never sent on a guess.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import assert_never
from zoneinfo import ZoneInfo

from crowdwatch.analytics.dispatch_plan import (
    DispatchRecommendation,
    NoRecommendation,
    RouteDispatch,
    RouteService,
    ServiceKind,
    StopReading,
    rate_from_occupancy,
    recommend,
)
from crowdwatch.analytics.gtfs_import import GtfsTimetable, stop_buses
from crowdwatch.analytics.readings import ZoneReading, ZoneStatus
from crowdwatch.contracts.config import SiteKind, TransitConfig
from crowdwatch.contracts.notification import DispatchAdvice, RouteAdvice

logger = logging.getLogger(__name__)

RATE_WINDOW = timedelta(minutes=10)
"""How far back the count's rise is read for the arrival rate."""


def _min(minutes: float) -> str:
    return f"{minutes:.0f}"


def _route_zh(route: RouteDispatch, by: str) -> str:
    match route.kind:
        case ServiceKind.EXTRA:
            return f"{route.route} 路 {route.buses} 辆 ({by} 前到站)"
        case ServiceKind.SHORT_TURN:
            return f"{route.route} 路区间车 {route.buses} 辆 ({by} 前到站)"
        case _:
            assert_never(route.kind)


def _route_en(route: RouteDispatch, by: str) -> str:
    plural = "es" if route.buses != 1 else ""
    match route.kind:
        case ServiceKind.EXTRA:
            return f"{route.buses} extra {route.route} bus{plural} (at the stop by {by})"
        case ServiceKind.SHORT_TURN:
            return f"{route.buses} short-turn {route.route} bus{plural} (at the stop by {by})"
        case _:
            assert_never(route.kind)


def advice_text(plan: DispatchRecommendation, tz: ZoneInfo) -> tuple[str, str]:
    """The plan in one line each of Chinese and English (times local to ``tz``)."""
    horizon = _min(plan.horizon_min)
    sent = [r for r in plan.routes if r.buses > 0]
    if not sent:
        clear = plan.clear_min_without
        if clear is None:
            # People are left behind, yet none would still wait when an extra bus arrived.
            return "调度建议: 无需加车", "Dispatch: no extra bus needed"
        return (
            f"调度建议: 无需加车, 按时刻表 {_min(clear)} 分钟内疏散",
            f"Dispatch: no extra bus needed, scheduled buses clear the stop in {_min(clear)} min",
        )

    def by(route: RouteDispatch) -> str:
        at = plan.as_of + timedelta(minutes=route.arrive_in_min)
        return at.astimezone(tz).strftime("%H:%M")

    zh = "调度建议: 立即加派 " + "、".join(_route_zh(r, by(r)) for r in sent)
    en = "Dispatch now: " + ", ".join(_route_en(r, by(r)) for r in sent)
    with_, without = plan.clear_min_with, plan.clear_min_without
    if with_ is None:
        zh += f"; 加车后 {horizon} 分钟内仍无法疏散"
        en += f"; still not cleared within {horizon} min"
    else:
        if without is None:
            zh_without = f"不加车 {horizon} 分钟内无法疏散"
            en_without = f"not within {horizon} min without them"
        else:
            zh_without, en_without = f"不加车 {_min(without)} 分钟", f"{_min(without)} without"
        zh += f"; 预计 {_min(with_)} 分钟疏散 ({zh_without})"
        en += f"; clears in {_min(with_)} min ({en_without})"
    avoided = round(plan.stranded_avoided)
    if avoided > 0:
        zh += f", 少滞留约 {avoided} 人"
        en += f", ~{avoided} fewer stranded"
    return zh, en


def advice(plan: DispatchRecommendation, tz: ZoneInfo) -> DispatchAdvice:
    """The plan as the notification contract carries it."""
    zh, en = advice_text(plan, tz)
    return DispatchAdvice(
        as_of=plan.as_of,
        waiting=plan.waiting,
        arrival_rate_per_min=plan.arrival_rate_per_min,
        target_min=plan.target_min,
        routes=tuple(
            RouteAdvice(
                route=r.route,
                kind=r.kind.value,
                buses=r.buses,
                arrive_by=plan.as_of + timedelta(minutes=r.arrive_in_min),
                clear_min_without=r.clear_min_without,
                clear_min_with=r.clear_min_with,
                stranded_avoided=round(r.stranded_avoided),
            )
            for r in plan.routes
        ),
        text_zh=zh,
        text_en=en,
    )


@dataclass(frozen=True, slots=True)
class StopAdvisor:
    """Recommends buses for the bus stops of ``transit`` (one per engine).

    Args:
        transit: the routes, their stops and the targets.
        feed: the GTFS timetable of routes without headways (``None``: no feed configured).
        tz: the district's time zone.
        stale_after_s: a count older than this gives no advice (``alerts.stale_after_s``).
    """

    transit: TransitConfig
    feed: GtfsTimetable | None
    tz: ZoneInfo
    stale_after_s: float

    def advise(
        self, reading: ZoneReading, samples: Sequence[tuple[datetime, int]], now: datetime
    ) -> DispatchAdvice | None:
        """Advice for the stop of ``reading``; ``None`` for other sites or no usable count.

        Args:
            reading: the crowded zone at the stop, now.
            samples: the zone's recent counts ``(ts, count)`` (for the arrival rate).
            now: the time of the decision.
        """
        site = reading.site
        if site.kind is not SiteKind.BUS_STOP:
            return None
        routes = self.transit.routes_at(site.id)
        if not routes:
            return None
        start = now - RATE_WINDOW
        end = now + timedelta(minutes=self.transit.horizon_min)
        timetable = stop_buses(self.transit, self.feed, site.id, self.tz, start, end)
        departures = [b.at for b in timetable if b.at <= now]
        recent = [s for s in samples if start <= s[0] <= now]
        stop = StopReading(
            site_id=site.id,
            waiting=reading.count,
            observed_at=reading.ts,
            online=reading.status is not ZoneStatus.OFFLINE,
            arrival_rate_per_min=rate_from_occupancy(recent, departures),
        )
        services = [
            RouteService(r.id, r.bus_capacity, r.extra_bus_lead_min, r.short_turn_lead_min)
            for r in routes
        ]
        plan = recommend(
            stop,
            services,
            timetable,
            now=now,
            target_min=self.transit.target_min,
            horizon_min=self.transit.horizon_min,
            stale_after_s=self.stale_after_s,
        )
        if isinstance(plan, NoRecommendation):
            logger.info("no dispatch advice for %s: %s", site.id, plan.detail)
            return None
        return advice(plan, self.tz)
