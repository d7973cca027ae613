"""The web API's contract for OpenAPI: every request body, response body and error status.

The routes build their JSON by hand (:mod:`crowdwatch.dashboards.snapshot`) and read bodies
with a size limit (:mod:`crowdwatch.dashboards.bodies`), so FastAPI cannot infer either;
this module declares them once, as pydantic models that forbid unknown keys, and
:func:`route_docs` turns them into the keyword arguments of each route decorator.  The
schema at ``/openapi.json`` is then a real contract: ``tests/test_web_schemathesis.py`` runs
schemathesis against the served app and fails on any response that does not match.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi.responses import HTMLResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from crowdwatch.analytics.readings import ZoneStatus
from crowdwatch.contracts.config import Department, SiteKind
from crowdwatch.contracts.messages import CountMethod
from crowdwatch.contracts.site_kinds import KindView
from crowdwatch.dashboards.bodies import DeclineBody, LoginBody, NoteBody
from crowdwatch.dashboards.trends import Trend
from crowdwatch.reports.holidays import DayKind
from crowdwatch.storage.queries import Resolution

Timestamp = str
"""UTC ISO 8601 with a ``Z``."""


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorOut(Out):
    """Every error: one line saying what is wrong and, where it helps, what to do."""

    error: str


class Names(Out):
    zh: str
    en: str


class Location(Out):
    lat: float
    lon: float


class TrafficOut(Out):
    """A road zone's (or road's) traffic: vehicles, their mean speed, its congestion level
    (GB/T 33171-2016, 1 smooth .. 5 severe); each null where not measured."""

    vehicles: int | None
    speed_kmh: float | None
    density: float | None
    """vehicles per km per lane (zones with lanes)"""
    level: int | None
    level_name: Names | None
    level_source: Literal["speed", "density"] | None
    """what the level was graded from: a measured speed, or the density by Greenshields'
    model"""
    level_note: Names | None
    """how the pages say a level from density: "from density, a model" (null otherwise)"""
    queue_m: float | None
    """the longest queue back from a stop line in the newest interval, metres (an approach
    zone; a road: its fullest approach; null elsewhere)"""
    queue_share: float | None
    """that queue over its approach's length (1.0: the approach's upstream end)"""
    spills_back: bool | None
    """the queue fills its approach (``queue_share`` 0.9 or more, where the road kind's
    spill-back alert fires): it blocks the junction behind"""


class ZoneOut(Out):
    zone_id: str
    camera_id: str
    name: Names
    capacity: int
    count: int | None
    occupancy: float | None
    status: ZoneStatus
    trend: Trend | None
    longest_wait_s: float | None
    method: CountMethod | None
    count_flag: str | None
    """why the newest reading was refused and ``count`` is the last usable one"""
    flagged_count: int | None
    """the refused reading (None for a frame the edge could not count in)"""
    ts: Timestamp | None
    age_s: float | None
    traffic: TrafficOut | None


class SiteOut(Out):
    id: str
    kind: SiteKind
    name: Names
    location: Location
    capacity: int
    department: Department
    count: int | None
    occupancy: float | None
    status: ZoneStatus
    trend: Trend | None
    longest_wait_s: float | None
    ts: Timestamp | None
    age_s: float | None
    traffic: TrafficOut | None
    """a road: its slowest zone's level and speed, vehicles over every zone"""
    zones: list[ZoneOut]


class SeriesPointOut(Out):
    """Besides ``ts``, one field per aggregate the metrics' declaration gives an ``api`` name
    (:mod:`crowdwatch.contracts.metrics`; tests/test_metrics.py keeps the two equal)."""

    ts: Timestamp
    count: int
    mean: float
    max: int
    peak_density: float | None
    vehicles: int | None
    speed_kmh: float | None
    veh_per_km_lane: float | None
    queue_m: float | None


class SeriesOut(Out):
    site_id: str
    zone_id: str | None
    start: Timestamp
    end: Timestamp
    resolution: Resolution
    points: list[SeriesPointOut]


class AlertOut(Out):
    id: int
    alert_key: str
    site_id: str
    zone_id: str | None
    rule_id: str
    department: str | None
    severity: Literal["info", "warning", "critical"]
    state: Literal["firing", "resolved"]
    value: float
    threshold: float
    started_at: Timestamp
    resolved_at: Timestamp | None
    summary: Names
    acknowledged_at: Timestamp | None
    acknowledged_by: str | None
    escalation_level: int
    escalated_at: Timestamp | None


class RouteAdviceOut(Out):
    route: str
    kind: Literal["extra", "short_turn"]
    buses: int
    arrive_by: Timestamp
    clear_min_without: float | None
    clear_min_with: float | None
    stranded_avoided: int


class AdviceOut(Out):
    """The newest dispatch recommendation of a bus-stop alert."""

    as_of: Timestamp
    waiting: int
    arrival_rate_per_min: float | None
    target_min: float
    extra_buses: int
    routes: list[RouteAdviceOut]
    text: Names


class DecisionOut(Out):
    """What a dispatcher did, and the outcome: when the stop cleared after it."""

    id: int
    at: Timestamp
    who: str
    action: Literal["dispatched", "declined"]
    route: str | None
    buses: int | None
    reason: str
    recommended_buses: int | None
    """what the advice shown said for the route (declined: all routes); null: no advice"""
    cleared_at: Timestamp | None
    time_to_clear_s: float | None


class DispatchOut(Out):
    """Bus stops served by ``transit`` routes: the advice and the decisions."""

    routes: list[str]
    advice: AdviceOut | None
    advice_at: Timestamp | None
    decisions: list[DecisionOut]


class NotedAlertOut(AlertOut):
    ack_note: str | None
    dispatch: DispatchOut | None


class AlertEventOut(Out):
    at: Timestamp
    kind: str
    who: str
    note: str


class DispatchAlertOut(NotedAlertOut):
    history: list[AlertEventOut]


class DatabaseOut(Out):
    ok: bool
    detail: str | None
    as_of: Timestamp | None


class KindOut(Out):
    """A site kind as the pages show it (:mod:`crowdwatch.contracts.site_kinds`)."""

    id: SiteKind
    name: Names
    plural: Names
    view: KindView
    vehicles: bool = Field(
        description="its cameras count vehicles and their speed: shown with a congestion level"
    )


class StateOut(Out):
    """``/api/state`` and each ``state`` event of ``/api/stream``."""

    generated_at: Timestamp
    district: Names
    stale_after_s: float
    database: DatabaseOut
    kinds: list[KindOut]
    sites: list[SiteOut]
    alerts: list[AlertOut]


class RecentOut(Out):
    ts: Timestamp
    count: float
    """the 15-minute mean"""
    occupancy: float


class BandPointOut(Out):
    horizon_min: int
    ts: Timestamp
    expected: float
    """the blend of the trend and the reference holiday"""
    low: float
    high: float
    """the band: the lower and higher of the two ingredients"""
    occupancy: float
    occupancy_low: float
    occupancy_high: float


class SiteForecastOut(Out):
    id: str
    kind: SiteKind
    name: Names
    capacity: int
    reference_day: str | None
    """the holiday the forecast took its ratio from; None: the trend alone"""
    recent: list[RecentOut]
    forecast: list[BandPointOut]
    """empty without a fresh trend (no bucket in the last half hour, or too few)"""


class ForecastOut(Out):
    """``/api/forecast``: the wall's forecast band of every beach and scenic spot."""

    generated_at: Timestamp
    horizons_min: list[int]
    window_min: int
    sites: list[SiteForecastOut]


class ReportLevelOut(Out):
    id: str
    at: float
    """share of capacity"""
    name: Names


class ComparisonOut(Out):
    day: str | None
    visits: int | None
    change_pct: float | None


class Comparisons(Out):
    last_year: ComparisonOut
    previous_holiday: ComparisonOut
    ordinary_weekend: ComparisonOut


class ZoneCapacityOut(Out):
    zone_id: str
    capacity: int | None
    source: str
    area_m2: float | None
    m2_per_person: float | None


class SiteCapacityOut(Out):
    instantaneous: int
    daily: int | None
    turnover: float | None
    mean_stay_min: float | None
    zones: list[ZoneCapacityOut]


class CongestionLevelOut(Out):
    id: str
    """``smooth`` .. ``severe``: the keys of a road's ``minutes_at``"""
    level: int
    """1 smooth .. 5 severe (GB/T 33171-2016)"""
    name: Names


class RoadCongestionOut(Out):
    """A road's local day graded minute by minute from its slowest zone's mean speed
    (:mod:`crowdwatch.reports.roads`)."""

    minutes_at: dict[str, int]
    minutes_moderate_or_worse: int
    minutes_severe: int
    minutes_no_data: int
    """no message that minute, or vehicles without a measured speed"""
    minutes_total: int
    worst: str | None
    worst_level: int | None
    worst_name: Names | None
    worst_at: Timestamp | None
    """first minute at the worst level"""
    worst_local: str | None
    slowest_kmh: float | None


class ReportSiteOut(Out):
    """One site's day (:func:`crowdwatch.reports.daily.report_json`)."""

    site_id: str
    kind: SiteKind
    name: Names
    visits: int | None
    visits_estimated: bool
    """visits estimated from occupancy and the mean stay, not counted at entrance lines"""
    entries: int | None
    exits: int | None
    person_hours: float
    peak: int | None
    peak_at: Timestamp | None
    peak_local: str | None
    minutes_above: dict[str, int]
    coverage: float
    longest_wait_s: float | None
    alerts: int
    capacity: SiteCapacityOut
    comparisons: dict[str, ComparisonOut]
    congestion: RoadCongestionOut | None = None
    """roads only: minutes at each congestion level"""


class DepartmentReportOut(Out):
    department: str
    name: Names
    alerts: int
    acknowledged: int
    median_ack_min: float | None


class DailyReportOut(Out):
    """``/api/reports/daily/{day}``: the figures of the daily index report."""

    day: str
    title: Names
    day_kind: DayKind
    holiday: str | None
    holiday_day: int | None
    timezone: str
    generated_at: Timestamp
    levels: list[ReportLevelOut]
    congestion_levels: list[CongestionLevelOut]
    total_visits: int
    total_comparisons: Comparisons
    sites: list[ReportSiteOut]
    stops: list[ReportSiteOut]
    roads: list[ReportSiteOut]
    departments: list[DepartmentReportOut]


class HolidaySiteOut(Out):
    site_id: str
    name: Names
    visits: int | None
    visits_estimated: bool
    last_year_visits: int | None
    change_pct: float | None
    peak: int | None
    peak_at: Timestamp | None
    minutes_above: dict[str, int]
    per_day: list[int | None]


class HolidayReportOut(Out):
    """``/api/reports/holiday/{holiday}/{year}``: the whole holiday against last year's."""

    holiday: str
    year: int
    title: Names
    days: list[str]
    last_year_days: list[str]
    total_visits: int
    last_year_total: int | None
    change_pct: float | None
    per_day: list[int | None]
    last_year_per_day: list[int | None]
    sites: list[HolidaySiteOut]


class HealthOut(Out):
    status: Literal["ok", "error"]
    database: Literal["ok", "down"]
    error: str | None = None


class SessionOut(Out):
    name: str
    department: Department | None
    csrf: str
    expires_at: Timestamp


class TokenOut(Out):
    token: str
    token_type: Literal["bearer"]
    expires_at: Timestamp


class LoggedOut(Out):
    logged_out: Literal[True]


class DispatchAlertsOut(Out):
    user: SessionOut
    alerts: list[DispatchAlertOut]


class DispatchHistoryOut(Out):
    hours: int
    alerts: list[NotedAlertOut]


_WHY = {
    400: "the body is not valid JSON",
    401: "no, a forged, expired or logged-out session; or a wrong name or password",
    403: "wrong CSRF token, or another department's alert",
    404: "unknown site, zone or alert",
    409: "the alert is no longer firing, or the route does not serve its stop",
    413: "the body is over 16 KiB",
    415: "the body is not application/json",
    422: "a parameter or the body has the wrong shape (the message names the field)",
    429: "too many failed logins; Retry-After says when to try again",
    503: "the database is unavailable",
}


def route_docs(
    ok: type[BaseModel] | Any,
    *errors: int,
    body: type[BaseModel] | None = None,
    body_required: bool = True,
    unavailable: type[BaseModel] = ErrorOut,
) -> dict[str, Any]:
    """Keyword arguments for a route decorator that document its body and every response.

    Args:
        ok: the model (or ``list[Model]``) of the 200 response.
        *errors: the error statuses the route answers besides 200.
        body: the model of the JSON request body, if the route reads one.
        body_required: whether the body may be left out (an empty body).
        unavailable: the model of the 503 response (``/api/state`` and ``/healthz`` answer
            503 with their usual shape).

    Returns:
        ``responses`` (and ``openapi_extra`` with the request body) for ``@router.get(...)``.
    """
    responses: dict[int | str, dict[str, Any]] = {200: {"model": ok}}
    for status in errors:
        model = unavailable if status == 503 else ErrorOut
        responses[status] = {"model": model, "description": _WHY[status]}
    docs: dict[str, Any] = {"responses": responses}
    if body is not None:
        docs["openapi_extra"] = {
            "requestBody": {
                "required": body_required,
                "content": {"application/json": {"schema": body.model_json_schema()}},
            }
        }
    return docs


BODY_ERRORS = (400, 413, 415, 422)
LOGIN_DOCS = route_docs(SessionOut, *BODY_ERRORS, 401, 429, body=LoginBody)
TOKEN_DOCS = route_docs(TokenOut, *BODY_ERRORS, 401, 429, body=LoginBody)
LOGOUT_DOCS = route_docs(LoggedOut)
ME_DOCS = route_docs(SessionOut, 401)
ACTION_DOCS = route_docs(
    NotedAlertOut, *BODY_ERRORS, 401, 403, 404, 409, 503, body=NoteBody, body_required=False
)
DECLINE_DOCS = route_docs(NotedAlertOut, *BODY_ERRORS, 401, 403, 404, 409, 503, body=DeclineBody)
DISPATCH_ALERTS_DOCS = route_docs(DispatchAlertsOut, 401, 503)
DISPATCH_HISTORY_DOCS = route_docs(DispatchHistoryOut, 401, 422, 503)
STATE_DOCS = route_docs(StateOut, 503, unavailable=StateOut)
SITES_DOCS = route_docs(list[SiteOut], 503)
SITE_DOCS = route_docs(SiteOut, 404, 422, 503)
SERIES_DOCS = route_docs(SeriesOut, 404, 422, 503)
ALERTS_DOCS = route_docs(list[AlertOut], 503)
HEALTH_DOCS = route_docs(HealthOut, 503, unavailable=HealthOut)
FORECAST_DOCS = route_docs(ForecastOut, 503)
# A bad day, format, year or holiday key, an unknown day of the calendar and a missing
# ``crowdwatch[reports]`` part are 422s that name the fix (see report_pages).
REPORT_API_DOCS = route_docs(DailyReportOut, 422, 503)
HOLIDAY_API_DOCS = route_docs(HolidayReportOut, 422, 503)


GTFS_RT_DOCS: dict[str, Any] = {
    "response_class": Response,
    "responses": {
        200: {
            "content": {
                "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}}
            },
            "description": "a GTFS-realtime FeedMessage (full dataset)",
        },
        501: {"model": ErrorOut, "description": "gtfs-realtime-bindings is not installed"},
        503: {"model": ErrorOut, "description": _WHY[503]},
    },
}


class EventStreamResponse(StreamingResponse):
    """A Server-Sent Events response (its media type is what the schema declares)."""

    media_type = "text/event-stream"


PAGE_DOCS: dict[str, Any] = {
    "response_class": HTMLResponse,
    "responses": {
        200: {"content": {"text/html": {"schema": {"type": "string"}}}, "description": "page"},
        304: {"description": "the client's copy (If-None-Match) is current"},
    },
}
STREAM_DOCS: dict[str, Any] = {
    "response_class": EventStreamResponse,
    "responses": {
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "Server-Sent Events: `state` (a StateOut) and `ping`",
        }
    },
}

_BINARY = {"schema": {"type": "string", "format": "binary"}}
# Explicit content, not ``model``: FastAPI would document a model under the route's own media
# type (text/html), while the errors are JSON.
_ERROR_JSON = {"application/json": {"schema": ErrorOut.model_json_schema()}}
_REPORT_ERRORS: dict[int | str, dict[str, Any]] = {
    422: {
        "content": _ERROR_JSON,
        "description": "a bad day, format, year or holiday key; a day the holiday calendar "
        "does not know; or the crowdwatch[reports] part is not installed (the message says which)",
    },
    503: {"content": _ERROR_JSON, "description": _WHY[503]},
}
REPORT_TODAY_DOCS: dict[str, Any] = {
    "response_class": Response,
    "responses": {
        302: {
            "description": "to today's report (the district's local day)",
            "headers": {"Location": {"schema": {"type": "string"}}},
        }
    },
}
REPORT_FILE_DOCS: dict[str, Any] = {
    "response_class": HTMLResponse,
    "responses": {
        200: {
            "content": {
                "text/html": {"schema": {"type": "string"}},
                "image/png": _BINARY,
                "application/pdf": _BINARY,
                "text/csv": {"schema": {"type": "string"}},
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": _BINARY,
            },
            "description": "`{day}`: the page; `{day}.png`, `.pdf`: the poster; "
            "`{day}.csv`, `.xlsx`: the figures as tables",
        },
        **_REPORT_ERRORS,
    },
}
HOLIDAY_PAGE_DOCS: dict[str, Any] = {
    "response_class": HTMLResponse,
    "responses": {
        200: {"content": {"text/html": {"schema": {"type": "string"}}}, "description": "page"},
        **_REPORT_ERRORS,
    },
}
