"""The wall's forecast band: where each beach and scenic spot is heading in 1-3 hours.

The forecast is the alert engine's (:func:`crowdwatch.analytics.forecast.forecast`), fed as
``crowdwatch reports backtest`` feeds it, so the band is the thing that backtest scores: the
site's 15-minute means over the last 45 minutes give the trend, the same local time on a
reference holiday gives the holiday ratio, and the two are blended.  The reference day is
the same holiday day last year (:meth:`HolidayCalendar.same_day_last_year`), else the first
of ``alerts.reference_days`` that the rollups still hold.

The band runs between the two ingredients (the trend alone and the reference holiday alone),
with the blend inside it: a wide band says the two disagree.  Without a reference day the
band is the trend's single line.  With no bucket in the last half hour there is no forecast
(a stale count projected forward would look like knowledge); the recent means are still sent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from crowdwatch.analytics.forecast import ReferenceTrend, forecast
from crowdwatch.contracts.config import CrowdwatchConfig, Site
from crowdwatch.dashboards.api_schema import FORECAST_DOCS
from crowdwatch.dashboards.snapshot import iso
from crowdwatch.reports.daily import VISITOR_KINDS
from crowdwatch.reports.holidays import HolidayCalendar
from crowdwatch.storage.queries import Resolution, reference_series, site_series

STEP = timedelta(minutes=15)
HORIZONS_MIN = (60, 120, 180)
WINDOW_MIN = 45
"""The trend window: three 15-minute means, the shortest the forecast accepts."""
RECENT = timedelta(hours=3)
"""How much of the past the wall draws beside the band."""
FRESH = timedelta(minutes=30)


@dataclass(frozen=True, slots=True)
class BandPoint:
    """The forecast ``horizon_min`` after the newest bucket."""

    horizon_min: int
    ts: datetime
    expected: float
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class SiteBand:
    site: Site
    recent: list[tuple[datetime, float]]
    """15-minute bucket start -> mean count, oldest first"""
    reference_day: date | None
    points: list[BandPoint]


def reference_candidates(
    config: CrowdwatchConfig, calendar: HolidayCalendar, day: date
) -> list[date]:
    """The days to take the holiday ratio from, in order of preference."""
    same = calendar.same_day_last_year(day)
    return ([] if same is None else [same]) + [d for d in config.alerts.reference_days if d != same]


def site_band(
    conn: psycopg.Connection,
    config: CrowdwatchConfig,
    site: Site,
    now: datetime,
    calendar: HolidayCalendar,
) -> SiteBand:
    """The recent means and the forecast band of one site (see the module docstring).

    Raises:
        StorageError: a query failed or the database is away.
    """
    tz = config.district.timezone
    series = site_series(conn, site.id, now - RECENT, now, Resolution.QUARTER_HOUR)
    recent = [(p.ts, p.count_mean) for p in series.points]
    if not recent or recent[-1][0] < now - FRESH:
        return SiteBand(site, recent, None, [])
    start, mean_now = recent[-1]
    window = [(ts, round(v)) for ts, v in recent if ts >= start - timedelta(minutes=WINDOW_MIN)]
    last = start + timedelta(minutes=max(HORIZONS_MIN)) + STEP
    reference: dict[datetime, float] = {}
    used: date | None = None
    today = start.astimezone(ZoneInfo(tz)).date()
    for day in reference_candidates(config, calendar, today):
        ref = reference_series(
            conn, site.id, start, last, day, tz, resolution=Resolution.QUARTER_HOUR
        )
        if start in {p.ts for p in ref.points}:
            reference, used = {p.ts: p.count_mean for p in ref.points}, day
            break
    points: list[BandPoint] = []
    for horizon in HORIZONS_MIN:
        then = reference.get(start + timedelta(minutes=horizon))
        trend = None if then is None or used is None else ReferenceTrend(reference[start], then)
        made = forecast(window, round(mean_now), site.capacity, horizon, WINDOW_MIN * 60, trend)
        if made is None:
            continue
        sides = [made.trend_count] + (
            [] if made.reference_count is None else [made.reference_count]
        )
        points.append(
            BandPoint(
                horizon, start + timedelta(minutes=horizon), made.expected, min(sides), max(sides)
            )
        )
    return SiteBand(site, recent, used if points else None, points)


def _share(count: float, capacity: int) -> float:
    return round(count / capacity, 4)


def band_json(band: SiteBand) -> dict[str, Any]:
    """One site's ``/api/forecast`` entry: counts and shares of capacity."""
    cap = band.site.capacity
    return {
        "id": band.site.id,
        "kind": band.site.kind.value,
        "name": {"zh": band.site.name.zh, "en": band.site.name.en},
        "capacity": cap,
        "reference_day": None if band.reference_day is None else band.reference_day.isoformat(),
        "recent": [
            {"ts": iso(ts), "count": round(v, 1), "occupancy": _share(v, cap)}
            for ts, v in band.recent
        ],
        "forecast": [
            {
                "horizon_min": p.horizon_min,
                "ts": iso(p.ts),
                "expected": round(p.expected, 1),
                "low": round(p.low, 1),
                "high": round(p.high, 1),
                "occupancy": _share(p.expected, cap),
                "occupancy_low": _share(p.low, cap),
                "occupancy_high": _share(p.high, cap),
            }
            for p in band.points
        ],
    }


def forecast_json(bands: Sequence[SiteBand], now: datetime) -> dict[str, Any]:
    """The body of ``/api/forecast``."""
    return {
        "generated_at": iso(now),
        "horizons_min": list(HORIZONS_MIN),
        "window_min": WINDOW_MIN,
        "sites": [band_json(b) for b in bands],
    }


def forecast_router(
    config: CrowdwatchConfig,
    database: Callable[[], AbstractContextManager[psycopg.Connection]],
) -> APIRouter:
    """``GET /api/forecast``: every beach and scenic spot's recent means and forecast band."""
    router = APIRouter()
    calendar = HolidayCalendar(config.reports.holidays)
    sites = [s for s in config.sites if s.kind in VISITOR_KINDS]

    @router.get("/api/forecast", **FORECAST_DOCS)
    def forecast_bands() -> JSONResponse:
        now = datetime.now(UTC)
        with database() as conn:
            bands = [site_band(conn, config, s, now, calendar) for s in sites]
        return JSONResponse(forecast_json(bands, now), headers={"Cache-Control": "no-store"})

    return router
