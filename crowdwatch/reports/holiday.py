"""The whole-holiday report: every beach and spot over a holiday period, against last year's.

A site's visitors over the period are the sum of its daily figures (each as the daily report
shows it: entries, or the estimate marked as one); its peak is the largest daily peak;
minutes above a level add up.  Last year's period is the same holiday's period a year
before (:meth:`~crowdwatch.reports.holidays.HolidayCalendar.period`), whatever its length,
and the days are also listed side by side by day number.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from crowdwatch.contracts.config import CrowdwatchConfig, Site
from crowdwatch.contracts.errors import ConfigError
from crowdwatch.reports.capacity import mean_stay_min
from crowdwatch.reports.daily import VISITOR_KINDS
from crowdwatch.reports.holidays import HolidayCalendar, holiday_name
from crowdwatch.reports.visitors import SiteDay, change_pct, site_day


class UnknownHolidayError(ConfigError):
    """The calendar has no such holiday in that year."""


@dataclass(frozen=True, slots=True)
class HolidaySite:
    site: Site
    days: list[SiteDay]
    last_year: list[SiteDay]

    @staticmethod
    def _total(days: list[SiteDay]) -> int | None:
        known = [v for v in map(_visits, days) if v is not None]
        return sum(known) if known else None

    @property
    def visits(self) -> int | None:
        return self._total(self.days)

    @property
    def last_year_visits(self) -> int | None:
        return self._total(self.last_year)

    @property
    def estimated(self) -> bool:
        return any(d.visits_estimated for d in self.days)

    @property
    def peak_day(self) -> SiteDay | None:
        with_peak = [d for d in self.days if d.peak is not None]
        return max(with_peak, key=lambda d: d.peak or 0, default=None)


@dataclass(frozen=True, slots=True)
class HolidayReport:
    holiday: str
    year: int
    days: list[date]
    last_year_days: list[date]
    config: CrowdwatchConfig
    sites: list[HolidaySite]

    def title(self) -> tuple[str, str]:
        zh, en = holiday_name(self.holiday)
        district = self.config.district.name
        return (
            f"{district.zh} {self.year}年{zh}假日指数",
            f"{district.en} {en} {self.year} holiday index",
        )

    def day_totals(self, which: str) -> list[int | None]:
        """District visitors per day of the period (``this`` or ``last``)."""
        out: list[int | None] = []
        count = len(self.days if which == "this" else self.last_year_days)
        for i in range(count):
            values = [_visits((s.days if which == "this" else s.last_year)[i]) for s in self.sites]
            known = [v for v in values if v is not None]
            out.append(sum(known) if known else None)
        return out


def _visits(day: SiteDay) -> int | None:
    """A day's visitors; None for a day without any data (no data is not "nobody")."""
    return day.visits if day.has_data else None


def _span(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def build_holiday_report(
    conn: psycopg.Connection,
    config: CrowdwatchConfig,
    holiday: str,
    year: int,
    *,
    calendar: HolidayCalendar | None = None,
) -> HolidayReport:
    """Every beach and spot over ``holiday``'s period of ``year`` and of the year before.

    Raises:
        UnknownHolidayError: no such period that year.
        StorageError: a query failed.
    """
    calendar = calendar or HolidayCalendar(config.reports.holidays)
    found = calendar.period(holiday, year)
    if found is None:
        raise UnknownHolidayError(
            f"no {holiday} holiday in {year}; expected a key such as national_day, "
            "spring_festival, labour_day"
        )
    days = _span(*found)
    before = calendar.period(holiday, year - 1)
    last_days = _span(*before) if before is not None else []
    tz = config.district.timezone
    levels = config.reports.levels
    sites = []
    for site in config.sites:
        if site.kind not in VISITOR_KINDS:
            continue
        stay = mean_stay_min(config.reports, site)
        sites.append(
            HolidaySite(
                site,
                [site_day(conn, site, d, tz, levels, stay) for d in days],
                [site_day(conn, site, d, tz, levels, stay) for d in last_days],
            )
        )
    sites.sort(key=lambda s: (-(s.visits or 0), s.site.id))
    return HolidayReport(holiday, year, days, last_days, config, sites)


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat().replace("+00:00", "Z")


def holiday_json(report: HolidayReport) -> dict[str, Any]:
    """The whole-holiday figures as the API serves them."""
    this, last = report.day_totals("this"), report.day_totals("last")
    total = sum(v for v in this if v is not None)
    total_last = sum(v for v in last if v is not None) if any(v is not None for v in last) else None
    title_zh, title_en = report.title()
    sites = []
    for s in report.sites:
        peak = s.peak_day
        sites.append(
            {
                "site_id": s.site.id,
                "name": {"zh": s.site.name.zh, "en": s.site.name.en},
                "visits": s.visits,
                "visits_estimated": s.estimated,
                "last_year_visits": s.last_year_visits,
                "change_pct": change_pct(s.visits, s.last_year_visits),
                "peak": None if peak is None else peak.peak,
                "peak_at": None if peak is None else _iso(peak.peak_at),
                "minutes_above": {
                    lv.id: sum(d.minutes_above[lv.id] for d in s.days)
                    for lv in report.config.reports.levels
                },
                "per_day": [_visits(d) for d in s.days],
            }
        )
    return {
        "holiday": report.holiday,
        "year": report.year,
        "title": {"zh": title_zh, "en": title_en},
        "days": [d.isoformat() for d in report.days],
        "last_year_days": [d.isoformat() for d in report.last_year_days],
        "total_visits": total,
        "last_year_total": total_last,
        "change_pct": change_pct(total, total_last),
        "per_day": this,
        "last_year_per_day": last,
        "sites": sites,
    }


def _chart(report: HolidayReport) -> str:
    """District visitors per holiday day, this year and last, as inline SVG (matplotlib)."""
    from crowdwatch.reports.poster import line_chart_svg

    try:
        return line_chart_svg(
            report.day_totals("this"),
            report.day_totals("last"),
            str(report.year),
            str(report.year - 1),
        )
    except ConfigError as exc:
        return f'<p class="note">{escape(str(exc))}</p>'


def _number(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def render_holiday_page(report: HolidayReport) -> str:
    """The whole-holiday page (phone-first, Chinese then English)."""
    from crowdwatch.reports.page import CSS

    body = holiday_json(report)
    title_zh, title_en = report.title()
    tz = ZoneInfo(report.config.district.timezone)

    def pct(value: float | None) -> str:
        if value is None:
            return "—"
        cls = "up" if value > 0 else "down" if value < 0 else ""
        return f'<span class="{cls}">{value:+.1f}%</span>'

    rows = []
    for s in body["sites"]:
        peak = "—"
        if s["peak"] is not None and s["peak_at"] is not None:
            at = datetime.fromisoformat(s["peak_at"].replace("Z", "+00:00")).astimezone(tz)
            peak = f"{s['peak']:,}<br><span class='en'>{at:%m-%d %H:%M}</span>"
        mark = "*" if s["visits_estimated"] else ""
        rows.append(
            f"<tr><td>{escape(s['name']['zh'])}<br><span class='en'>{escape(s['name']['en'])}"
            f"</span></td><td>{_number(s['visits'])}{mark}</td>"
            f"<td>{_number(s['last_year_visits'])}</td><td>{pct(s['change_pct'])}</td>"
            f"<td>{peak}</td></tr>"
        )
    last_per_day = body["last_year_per_day"]
    days = "".join(
        f"<tr><td>第{i + 1}天 day {i + 1}<br><span class='en'>{d}</span></td>"
        f"<td>{_number(v)}</td>"
        f"<td>{_number(last_per_day[i] if i < len(last_per_day) else None)}</td></tr>"
        for i, (d, v) in enumerate(zip(body["days"], body["per_day"], strict=True))
    )
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{escape(title_zh)}</title><style>{CSS}</style></head>
<body><main>
<h1>{escape(title_zh)}<br><span class="en">{escape(title_en)}</span></h1>
<div class="kpi">假期游客 <span class="en" style="color:#dde">Visitors over the holiday</span><br>
<b id="total-visits">{body["total_visits"]:,}</b>
<div class="cmp"><span>去年同期 same holiday last year: {pct(body["change_pct"])}</span>
<span>{body["days"][0]} – {body["days"][-1]}</span></div></div>
<h2>每日游客 <span class="en">Visitors per day</span></h2>
<div class="chart">{_chart(report)}</div>
<table id="days"><tr><th>假期日<br><span class="en">Day</span></th><th>{report.year}</th><th>{report.year - 1}</th></tr>{days}</table>
<h2>各景点 <span class="en">Beaches and spots</span></h2>
<table id="sites"><tr><th>景点<br><span class="en">Site</span></th><th>游客<br><span class="en">Visitors</span></th>
<th>去年<br><span class="en">Last year</span></th><th>变化<br><span class="en">Change</span></th>
<th>峰值<br><span class="en">Peak</span></th></tr>{"".join(rows)}</table>
<p class="note">* 估算 = 人时 ÷ 平均停留时间 · estimate = person-hours / mean stay</p>
</main></body></html>
"""
