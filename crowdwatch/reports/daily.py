"""The daily index report: every figure of one local day, and the days it is compared with.

One :class:`DailyReport` value feeds every form of the report (the page, the PNG/PDF poster,
CSV/Excel, the JSON API), so they cannot disagree.  Comparisons (visitors):

* **same holiday day last year** — day N of the same holiday period a year before (an
  ordinary day: the same weekday 52 weeks before);
* **previous holiday** — the same day number of the holiday period before;
* **ordinary weekend** — the latest Saturday or Sunday before that is neither a holiday nor a
  make-up workday.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

import psycopg

from crowdwatch.contracts.config import CrowdwatchConfig, Department, Site, SiteKind
from crowdwatch.contracts.congestion import CongestionLevel
from crowdwatch.reports.capacity import SiteCapacity, mean_stay_min, site_capacity
from crowdwatch.reports.holidays import DayInfo, DayKind, HolidayCalendar, holiday_name
from crowdwatch.reports.roads import RoadDay, level_key, road_day, road_json
from crowdwatch.reports.visitors import SiteDay, change_pct, local_day_bounds, site_day
from crowdwatch.storage.day_alerts import AlertOfDay, alerts_started

VISITOR_KINDS = (SiteKind.BEACH, SiteKind.SCENIC_SPOT)
"""Sites whose visitors the report counts; bus stops and roads get their own tables."""

DEPARTMENT_NAMES: dict[str, tuple[str, str]] = {
    Department.TRANSPORT: ("交通运输", "Transport"),
    Department.CULTURE_TOURISM: ("文化旅游", "Culture & tourism"),
    Department.TRAFFIC_POLICE: ("交警", "Traffic police"),
    Department.PUBLIC_SECURITY: ("公安", "Public security"),
}


@dataclass(frozen=True, slots=True)
class Comparison:
    """Visitors of a site on another day, for the change in percent."""

    key: str
    """``last_year`` | ``previous_holiday`` | ``ordinary_weekend``."""
    day: date | None
    visits: int | None
    change_pct: float | None


COMPARISON_LABELS = {
    "last_year": ("去年同期", "same day last year"),
    "previous_holiday": ("上个假日", "previous holiday"),
    "ordinary_weekend": ("普通周末", "ordinary weekend"),
}


@dataclass(frozen=True, slots=True)
class SiteReport:
    site: Site
    today: SiteDay
    capacity: SiteCapacity
    comparisons: list[Comparison]
    alerts: int
    traffic: RoadDay | None = None
    """A road: minutes at each congestion level (its people occupancy says nothing of jams)."""


@dataclass(frozen=True, slots=True)
class DepartmentAlerts:
    department: str
    alerts: int
    acknowledged: int
    median_ack_min: float | None


@dataclass(frozen=True, slots=True)
class DailyReport:
    day: date
    info: DayInfo
    config: CrowdwatchConfig
    visitor_sites: list[SiteReport]
    """Beaches and scenic spots, most visitors first."""
    stops: list[SiteReport]
    """Bus stops, most people waiting at the peak first."""
    roads: list[SiteReport]
    """Roads, most minutes at moderate congestion or worse first."""
    departments: list[DepartmentAlerts]
    generated_at: datetime

    @property
    def total_visits(self) -> int:
        return sum(s.today.visits or 0 for s in self.visitor_sites)

    def total_comparison(self, key: str) -> Comparison:
        """The district's visitors against ``key``'s day, over the sites with both figures."""
        now = before = 0
        day = None
        for site in self.visitor_sites:
            other = next(c for c in site.comparisons if c.key == key)
            day = other.day
            if site.today.visits is not None and other.visits is not None:
                now += site.today.visits
                before += other.visits
        found = before > 0
        return Comparison(
            key, day, before if found else None, change_pct(now, before) if found else None
        )

    def title(self) -> tuple[str, str]:
        district = self.config.district.name
        zh = f"{district.zh} 假日指数 {self.day.isoformat()}"
        en = f"{district.en} daily index {self.day.isoformat()}"
        if self.info.kind is DayKind.HOLIDAY and self.info.holiday is not None:
            name_zh, name_en = holiday_name(self.info.holiday)
            zh += f" {name_zh}第{self.info.period_day}天"
            en += f", {name_en} day {self.info.period_day}"
        return zh, en


def comparison_days(calendar: HolidayCalendar, day: date) -> dict[str, date | None]:
    """The day each comparison looks at."""
    return {
        "last_year": calendar.same_day_last_year(day),
        "previous_holiday": calendar.previous_holiday_day(day),
        "ordinary_weekend": calendar.ordinary_weekend_before(day),
    }


def _jammed_first(road: SiteReport) -> tuple[int, int, str]:
    traffic = road.traffic
    if traffic is None:
        return 0, 0, road.site.id
    return -traffic.moderate_or_worse, -traffic.severe, road.site.id


def _department_alerts(
    config: CrowdwatchConfig, alerts: Iterable[AlertOfDay]
) -> list[DepartmentAlerts]:
    by_department: dict[str, list[AlertOfDay]] = {}
    departments = {s.id: s.department.value for s in config.sites}
    for alert in alerts:
        department = alert.department or departments.get(alert.site_id, "unknown")
        by_department.setdefault(department, []).append(alert)
    out = []
    for department, rows in sorted(by_department.items()):
        waits = [
            (a.acknowledged_at - a.started_at).total_seconds() / 60
            for a in rows
            if a.acknowledged_at is not None
        ]
        out.append(
            DepartmentAlerts(
                department,
                len(rows),
                len(waits),
                round(statistics.median(waits), 1) if waits else None,
            )
        )
    return out


def build_daily_report(
    conn: psycopg.Connection,
    config: CrowdwatchConfig,
    day: date,
    *,
    calendar: HolidayCalendar | None = None,
    now: datetime | None = None,
) -> DailyReport:
    """Every figure of the local ``day`` and its comparisons.

    Args:
        conn: an open connection to a migrated database with fresh rollups.
        config: the district.
        day: the local date.
        calendar: default one built from ``reports.holidays``.
        now: when the report is made (shown on it); default the clock.

    Raises:
        StorageError: a query failed or the database is away.
        ConfigError: the calendar has no data for a year needed, or a zone's area is missing.
    """
    from datetime import UTC

    calendar = calendar or HolidayCalendar(config.reports.holidays)
    tz = config.district.timezone
    levels = config.reports.levels
    info = calendar.day(day)
    others = comparison_days(calendar, day)
    start, end = local_day_bounds(day, tz)
    alerts = alerts_started(conn, start, end)
    alerts_per_site: dict[str, int] = {}
    for alert in alerts:
        alerts_per_site[alert.site_id] = alerts_per_site.get(alert.site_id, 0) + 1

    def report_of(site: Site, compare: bool) -> SiteReport:
        stay = mean_stay_min(config.reports, site)
        own = config.reports.site(site.id)
        opening = own.opening if own is not None and own.opening else config.reports.opening
        today = site_day(conn, site, day, tz, levels, stay, opening)
        comparisons = []
        if compare:
            for key, other_day in others.items():
                other = (
                    None
                    if other_day is None
                    else site_day(conn, site, other_day, tz, levels, stay, opening)
                )
                visits = None if other is None or not other.has_data else other.visits
                comparisons.append(
                    Comparison(key, other_day, visits, change_pct(today.visits, visits))
                )
        return SiteReport(
            site, today, site_capacity(config, site), comparisons, alerts_per_site.get(site.id, 0)
        )

    visitor_sites = [report_of(s, True) for s in config.sites if s.kind in VISITOR_KINDS]
    visitor_sites.sort(key=lambda r: (-(r.today.visits or 0), r.site.id))
    stops = [report_of(s, False) for s in config.sites if s.kind is SiteKind.BUS_STOP]
    stops.sort(key=lambda r: (-(r.today.peak or 0), r.site.id))
    roads = [
        replace(report_of(s, False), traffic=road_day(conn, s, day, tz))
        for s in config.sites
        if s.kind is SiteKind.ROAD
    ]
    roads.sort(key=_jammed_first)
    return DailyReport(
        day=day,
        info=info,
        config=config,
        visitor_sites=visitor_sites,
        stops=stops,
        roads=roads,
        departments=_department_alerts(config, alerts),
        generated_at=now or datetime.now(UTC),
    )


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat().replace("+00:00", "Z")


def _site_json(report: SiteReport, tz: str) -> dict[str, Any]:
    from zoneinfo import ZoneInfo

    today = report.today
    extra = {} if report.traffic is None else {"congestion": road_json(report.traffic, tz)}
    peak_local = None if today.peak_at is None else today.peak_at.astimezone(ZoneInfo(tz))
    return {
        "site_id": report.site.id,
        "kind": report.site.kind.value,
        "name": {"zh": report.site.name.zh, "en": report.site.name.en},
        "visits": today.visits,
        "visits_estimated": today.visits_estimated,
        "entries": today.entries,
        "exits": today.exits,
        "person_hours": today.person_hours,
        "peak": today.peak,
        "peak_at": _iso(today.peak_at),
        "peak_local": None if peak_local is None else peak_local.strftime("%H:%M"),
        "minutes_above": today.minutes_above,
        "coverage": round(today.coverage, 3),
        "longest_wait_s": today.longest_wait_s,
        "alerts": report.alerts,
        "capacity": {
            "instantaneous": report.capacity.instantaneous,
            "daily": report.capacity.daily,
            "turnover": None
            if report.capacity.turnover is None
            else round(report.capacity.turnover, 2),
            "mean_stay_min": report.capacity.mean_stay_min,
            "zones": [
                {
                    "zone_id": z.zone_id,
                    "capacity": z.capacity,
                    "source": z.source,
                    "area_m2": z.area_m2,
                    "m2_per_person": z.m2_per_person,
                }
                for z in report.capacity.zones
            ],
        },
        "comparisons": {
            c.key: {
                "day": None if c.day is None else c.day.isoformat(),
                "visits": c.visits,
                "change_pct": c.change_pct,
            }
            for c in report.comparisons
        },
    } | extra


def report_json(report: DailyReport) -> dict[str, Any]:
    """The report as the API serves it (the page, poster and tables show the same numbers)."""
    tz = report.config.district.timezone
    title_zh, title_en = report.title()
    info = report.info
    return {
        "day": report.day.isoformat(),
        "title": {"zh": title_zh, "en": title_en},
        "day_kind": info.kind.value,
        "holiday": info.holiday,
        "holiday_day": info.period_day,
        "timezone": tz,
        "generated_at": _iso(report.generated_at),
        "levels": [
            {"id": lv.id, "at": lv.at, "name": {"zh": lv.name_zh, "en": lv.name_en}}
            for lv in report.config.reports.levels
        ],
        "congestion_levels": [
            {"id": level_key(lv), "level": int(lv), "name": {"zh": lv.zh, "en": lv.en}}
            for lv in CongestionLevel
        ],
        "total_visits": report.total_visits,
        "total_comparisons": {
            key: {
                "day": None if c.day is None else c.day.isoformat(),
                "visits": c.visits,
                "change_pct": c.change_pct,
            }
            for key in COMPARISON_LABELS
            for c in [report.total_comparison(key)]
        },
        "sites": [_site_json(r, tz) for r in report.visitor_sites],
        "stops": [_site_json(r, tz) for r in report.stops],
        "roads": [_site_json(r, tz) for r in report.roads],
        "departments": [
            {
                "department": d.department,
                "name": dict(
                    zip(
                        ("zh", "en"),
                        DEPARTMENT_NAMES.get(d.department, (d.department,) * 2),
                        strict=True,
                    )
                ),
                "alerts": d.alerts,
                "acknowledged": d.acknowledged,
                "median_ack_min": d.median_ack_min,
            }
            for d in report.departments
        ],
    }
