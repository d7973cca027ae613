"""The daily index report on the web: the page, its PNG/PDF/CSV/Excel, and its JSON.

::

    GET /reports                               the report of today (local), as a redirect
    GET /reports/daily/{YYYY-MM-DD}            the page (phone-first, Chinese then English)
    GET /reports/daily/{YYYY-MM-DD}.{png,pdf,csv,xlsx}   the same figures as files
    GET /api/reports/daily/{YYYY-MM-DD}        the same figures as JSON
    GET /reports/holiday/{holiday}/{year}      the whole holiday (national_day, ...) against
    GET /api/reports/holiday/{holiday}/{year}  the same holiday last year; and as JSON

Every form is made from one :class:`~crowdwatch.reports.daily.DailyReport` read at request
time from the rollups.  A bad date is a 422 naming the format; a day the holiday calendar
does not know, or a missing ``crowdwatch[reports]`` part, is a 422 with the fix.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import psycopg
from fastapi import APIRouter
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from crowdwatch.contracts.config import CrowdwatchConfig
from crowdwatch.contracts.errors import ConfigError
from crowdwatch.dashboards.api_schema import (
    HOLIDAY_API_DOCS,
    HOLIDAY_PAGE_DOCS,
    REPORT_API_DOCS,
    REPORT_FILE_DOCS,
    REPORT_TODAY_DOCS,
)
from crowdwatch.dashboards.bodies import preview
from crowdwatch.reports.daily import DailyReport, build_daily_report, report_json
from crowdwatch.reports.holiday import HolidayReport
from crowdwatch.reports.holidays import HolidayCalendar

FORMATS = {
    "png": "image/png",
    "pdf": "application/pdf",
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def _parse(name: str) -> tuple[date, str] | str:
    """(day, format) of ``2025-10-03`` or ``2025-10-03.png``, else the problem."""
    stem, _, fmt = name.partition(".")
    if fmt and fmt not in FORMATS:
        return f"unknown format {preview(fmt)}; expected one of {', '.join(FORMATS)}"
    try:
        day = date.fromisoformat(stem) if len(stem) == 10 else None
    except ValueError:
        day = None
    if day is None:
        return f"expected a day as YYYY-MM-DD, got {preview(stem)}"
    return day, fmt or "html"


def reports_router(
    config: CrowdwatchConfig,
    database: Callable[[], AbstractContextManager[psycopg.Connection]],
) -> APIRouter:
    """The report routes of the web app (``database`` opens one short-lived connection)."""
    router = APIRouter()
    calendar = HolidayCalendar(config.reports.holidays)
    tz = ZoneInfo(config.district.timezone)

    def build(day: date) -> DailyReport:
        with database() as conn:
            return build_daily_report(conn, config, day, calendar=calendar)

    def problem(message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=422)

    @router.get("/reports", **REPORT_TODAY_DOCS)
    def today() -> Response:
        day = datetime.now(UTC).astimezone(tz).date()
        return RedirectResponse(f"/reports/daily/{day.isoformat()}", status_code=302)

    @router.get("/reports/daily/{name}", **REPORT_FILE_DOCS)
    def report_file(name: str) -> Response:
        parsed = _parse(name)
        if isinstance(parsed, str):
            return problem(parsed)
        day, fmt = parsed
        try:
            report = build(day)
            if fmt == "html":
                from crowdwatch.reports.page import render_page

                return HTMLResponse(
                    render_page(report, base=f"/reports/daily/{day.isoformat()}"),
                    headers={"Cache-Control": "no-store"},
                )
            content = _file(report, fmt)
        except ConfigError as exc:
            return problem(str(exc))
        disposition = f'inline; filename="crowdwatch-report-{day.isoformat()}.{fmt}"'
        return Response(
            content,
            media_type=FORMATS[fmt],
            headers={"Cache-Control": "no-store", "Content-Disposition": disposition},
        )

    @router.get("/api/reports/daily/{name}", **REPORT_API_DOCS)
    def report_api(name: str) -> JSONResponse:
        parsed = _parse(name)
        if isinstance(parsed, str) or parsed[1] != "html":
            return problem(parsed if isinstance(parsed, str) else "expected a day as YYYY-MM-DD")
        try:
            body = report_json(build(parsed[0]))
        except ConfigError as exc:
            return problem(str(exc))
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    def holiday(name: str, year: str) -> HolidayReport | str:
        if not year.isdigit() or not 2000 <= int(year) <= 2100:
            return f"expected a year such as 2025, got {preview(year)}"
        if not name.replace("_", "").isalnum() or len(name) > 40:
            return f"expected a holiday key such as national_day, got {preview(name)}"
        from crowdwatch.reports.holiday import build_holiday_report

        with database() as conn:
            return build_holiday_report(conn, config, name, int(year), calendar=calendar)

    @router.get("/reports/holiday/{name}/{year}", **HOLIDAY_PAGE_DOCS)
    def holiday_page(name: str, year: str) -> Response:
        from crowdwatch.reports.holiday import render_holiday_page

        try:
            found = holiday(name, year)
        except ConfigError as exc:
            return problem(str(exc))
        if isinstance(found, str):
            return problem(found)
        return HTMLResponse(render_holiday_page(found), headers={"Cache-Control": "no-store"})

    @router.get("/api/reports/holiday/{name}/{year}", **HOLIDAY_API_DOCS)
    def holiday_api(name: str, year: str) -> JSONResponse:
        from crowdwatch.reports.holiday import holiday_json

        try:
            found = holiday(name, year)
        except ConfigError as exc:
            return problem(str(exc))
        if isinstance(found, str):
            return problem(found)
        return JSONResponse(holiday_json(found), headers={"Cache-Control": "no-store"})

    return router


def _file(report: DailyReport, fmt: str) -> bytes:
    # Imported per format: the CSV needs nothing beyond the standard library.
    if fmt == "csv":
        from crowdwatch.reports.tables import report_csv

        return report_csv(report)
    if fmt == "xlsx":
        from crowdwatch.reports.tables import report_xlsx

        return report_xlsx(report)
    from crowdwatch.reports.poster import poster_pdf, poster_png

    return poster_png(report) if fmt == "png" else poster_pdf(report)
