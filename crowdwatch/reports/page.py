"""The daily index report as one HTML page, readable on a phone (390 px wide) in the sun.

Server-rendered, no script: a leader opens the link from the chat robot on a weak signal and
reads the headline in ten seconds.  Chinese first, English beneath; the visitors chart is
matplotlib's SVG of the poster's chart, so page and poster draw the same numbers.
"""

from __future__ import annotations

from html import escape
from zoneinfo import ZoneInfo

from crowdwatch.contracts.congestion import CongestionLevel
from crowdwatch.contracts.errors import ConfigError
from crowdwatch.reports.daily import COMPARISON_LABELS, DEPARTMENT_NAMES, DailyReport, SiteReport

CSS = """
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"PingFang SC","Noto Sans CJK SC",
"WenQuanYi Micro Hei",sans-serif;color:#111;background:#fff}
main{max-width:720px;margin:0 auto;padding:12px}
h1{font-size:20px;margin:4px 0 0}
.en{color:#555;font-size:13px;font-weight:normal}
.kpi{background:#1f5fa8;color:#fff;border-radius:8px;padding:10px 12px;margin:10px 0}
.kpi b{font-size:28px}
.kpi .cmp{display:flex;gap:10px;flex-wrap:wrap;font-size:13px;margin-top:4px}
.kpi .up,.kpi .down{color:#fff;font-weight:bold}
h2{font-size:16px;margin:18px 0 6px;border-left:4px solid #1f5fa8;padding-left:6px}
table{width:100%;border-collapse:collapse;font-size:13px}
th,td{padding:5px 4px;border-bottom:1px solid #ddd;text-align:right;vertical-align:top}
th:first-child,td:first-child{text-align:left}
th{background:#eef2f6;font-weight:600}
.up{color:#b02020}.down{color:#1a7a30}
.chart svg{width:100%;height:auto}
.note{color:#555;font-size:12px}
a{color:#1f5fa8}
.lv{display:inline-block;width:9px;height:9px;border-radius:2px;margin-right:2px}
#roads{font-size:12px}#roads th,#roads td{padding:4px 1px}#roads .en{font-size:11px}
"""

LEVEL_COLOURS = {
    CongestionLevel.SMOOTH: "#2fd37a",
    CongestionLevel.MOSTLY_SMOOTH: "#a6e05a",
    CongestionLevel.LIGHT: "#ffc400",
    CongestionLevel.MODERATE: "#ff7a1a",
    CongestionLevel.SEVERE: "#e0102e",
}
"""The wall's colours of the five levels, so a road reads the same on both."""

_SHORT_EN = {
    CongestionLevel.SMOOTH: "smooth",
    CongestionLevel.MOSTLY_SMOOTH: "mostly",
    CongestionLevel.LIGHT: "light",
    CongestionLevel.MODERATE: "moderate",
    CongestionLevel.SEVERE: "severe",
}


def _pct(value: float | None) -> str:
    if value is None:
        return "—"
    cls = "up" if value > 0 else "down" if value < 0 else ""
    return f'<span class="{cls}">{value:+.1f}%</span>'


def _name(zh: str, en: str) -> str:
    return f'{escape(zh)}<br><span class="en">{escape(en)}</span>'


def _visits(site: SiteReport) -> str:
    if site.today.visits is None:
        return "—"
    mark = '<abbr title="估算 estimate">*</abbr>' if site.today.visits_estimated else ""
    return f"{site.today.visits:,}{mark}"


def _peak(site: SiteReport, tz: str) -> str:
    if site.today.peak is None or site.today.peak_at is None:
        return "—"
    local = site.today.peak_at.astimezone(ZoneInfo(tz)).strftime("%H:%M")
    return f"{site.today.peak:,}<br><span class='en'>{local}</span>"


def _level_zh(level: CongestionLevel) -> str:
    # Four characters break two and two on a phone, never 中度拥 / 堵.
    zh = escape(level.zh)
    return zh if len(zh) <= 2 else f"{zh[:2]}<br>{zh[2:]}"


def _road_row(road: SiteReport, tz: str) -> str:
    traffic = road.traffic
    name = f"<td>{_name(road.site.name.zh, road.site.name.en)}</td>"
    if traffic is None:
        return f"<tr>{name}" + "<td>—</td>" * 7 + "</tr>"
    cells = "".join(f"<td>{traffic.minutes_at[lv]}</td>" for lv in CongestionLevel)
    if traffic.worst is None or traffic.worst_at is None:
        worst = "—"
    else:
        local = traffic.worst_at.astimezone(ZoneInfo(tz)).strftime("%H:%M")
        worst = (
            f'<span class="lv" style="background:{LEVEL_COLOURS[traffic.worst]}"></span>'
            f"{_level_zh(traffic.worst)}<br><span class='en'>{local}</span>"
        )
    return f"<tr>{name}{cells}<td>{traffic.minutes_no_data}</td><td>{worst}</td></tr>"


def _chart(report: DailyReport) -> str:
    if not report.visitor_sites:
        return ""
    try:
        from crowdwatch.reports.poster import visitors_chart_svg

        return f'<div class="chart">{visitors_chart_svg(report)}</div>'
    except ConfigError as exc:
        return f'<p class="note">{escape(str(exc))}</p>'


def render_page(report: DailyReport, *, base: str) -> str:
    """The page's HTML.

    Args:
        report: the day's figures.
        base: the URL path of this report without extension (``/reports/daily/2025-10-03``);
            the downloads are ``base + ".png"`` etc.
    """
    tz = report.config.district.timezone
    levels = report.config.reports.levels
    title_zh, title_en = report.title()
    totals = "".join(
        f"<span>{escape(zh)} {escape(en)}: {_pct(c.change_pct)}"
        f"{'' if c.day is None else ' (' + c.day.isoformat() + ')'}</span>"
        for key, (zh, en) in COMPARISON_LABELS.items()
        for c in [report.total_comparison(key)]
    )
    level_heads = "".join(
        f'<th title="{escape(lv.name_zh)} {escape(lv.name_en)}">'
        f'<span class="lv" style="background:{lv.color}"></span>{lv.at * 100:g}%</th>'
        for lv in levels
    )
    site_rows = []
    for site in report.visitor_sites:
        cmp = {c.key: c for c in site.comparisons}
        site_rows.append(
            f"<tr><td>{_name(site.site.name.zh, site.site.name.en)}</td>"
            f"<td>{_visits(site)}</td><td>{_pct(cmp['last_year'].change_pct)}</td>"
            f"<td>{_peak(site, tz)}</td>"
            + "".join(f"<td>{site.today.minutes_above[lv.id]}</td>" for lv in levels)
            + "</tr>"
        )
    compare_rows = []
    for site in report.visitor_sites:
        cells = "".join(
            f"<td>{'—' if c.visits is None else f'{c.visits:,}'}<br>{_pct(c.change_pct)}</td>"
            for c in site.comparisons
        )
        compare_rows.append(
            f"<tr><td>{_name(site.site.name.zh, site.site.name.en)}</td>{cells}</tr>"
        )
    stop_rows = [
        f"<tr><td>{_name(s.site.name.zh, s.site.name.en)}</td><td>{_peak(s, tz)}</td>"
        f"<td>{'—' if s.today.longest_wait_s is None else f'{s.today.longest_wait_s / 60:.0f}'}</td>"
        f"<td>{s.alerts}</td></tr>"
        for s in report.stops[:8]
    ]
    road_rows = [_road_row(r, tz) for r in report.roads]
    road_heads = "".join(
        f'<th title="{escape(lv.zh)} {escape(lv.en)}">'
        f'<span class="lv" style="background:{LEVEL_COLOURS[lv]}"></span>{_level_zh(lv)}'
        f"<br><span class='en'>{_SHORT_EN[lv]}</span></th>"
        for lv in CongestionLevel
    )
    dep_rows = []
    for dep in report.departments:
        zh, en = DEPARTMENT_NAMES.get(dep.department, (dep.department, dep.department))
        median = "—" if dep.median_ack_min is None else f"{dep.median_ack_min:.1f}"
        dep_rows.append(
            f"<tr><td>{_name(zh, en)}</td><td>{dep.alerts}</td><td>{dep.acknowledged}</td>"
            f"<td>{median}</td></tr>"
        )
    cmp_heads = "".join(
        f"<th>{escape(zh)}<br><span class='en'>{escape(en)}</span></th>"
        for zh, en in COMPARISON_LABELS.values()
    )
    empty = '<tr><td colspan="9">—</td></tr>'
    shares = [site.today.coverage for site in report.visitor_sites]
    coverage = sum(shares) / len(shares) if shares else 0.0
    made = report.generated_at.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")
    info = report.info
    whole = ""
    if info.holiday is not None and info.period_first is not None:
        whole = (
            f' · <a id="whole-holiday" href="/reports/holiday/{escape(info.holiday)}/'
            f'{info.period_first.year}">全假期 whole holiday</a>'
        )
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{escape(title_zh)}</title><style>{CSS}</style></head>
<body><main>
<h1>{escape(title_zh)}<br><span class="en">{escape(title_en)}</span></h1>
<div class="kpi">全区游客 <span class="en" style="color:#dde">Visitors</span><br>
<b id="total-visits">{report.total_visits:,}</b>
<div class="cmp">{totals}</div>
<div class="cmp" id="coverage">数据覆盖 data coverage: {coverage:.0%} of the opening hours' 15-minute steps</div></div>
<h2>各景点游客 <span class="en">Visitors per beach and spot</span></h2>
{_chart(report)}
<table id="sites"><tr><th>景点<br><span class="en">Site</span></th><th>游客<br><span class="en">Visitors</span></th>
<th>较去年<br><span class="en">vs last yr</span></th><th>峰值<br><span class="en">Peak</span></th>
{level_heads}</tr>{"".join(site_rows) or empty}</table>
<p class="note">预警列为达到该级别的分钟数（每15分钟平均在馆人数）。* 估算 = 人时 ÷ 平均停留时间。<br>
Level columns: minutes at or above the level (15-minute mean occupancy). * estimate = person-hours / mean stay.</p>
<h2>对比 <span class="en">Comparisons</span></h2>
<table id="comparisons"><tr><th>景点<br><span class="en">Site</span></th>{cmp_heads}</tr>{"".join(compare_rows) or empty}</table>
<h2>公交站 <span class="en">Busiest bus stops</span></h2>
<table id="stops"><tr><th>站点<br><span class="en">Stop</span></th><th>最多候车<br><span class="en">Most waiting</span></th>
<th>最长等候(分)<br><span class="en">Longest wait (min)</span></th><th>告警<br><span class="en">Alerts</span></th></tr>
{"".join(stop_rows) or empty}</table>
<h2>道路拥堵 <span class="en">Road congestion (minutes)</span></h2>
<table id="roads"><tr><th>道路<br><span class="en">Road</span></th>{road_heads}
<th>无数据<br><span class="en">no data</span></th><th>最严重<br><span class="en">Worst</span></th></tr>
{"".join(road_rows) or empty}</table>
<p class="note">各级别的分钟数按 GB/T 33171-2016 由每分钟平均车速评定（多方向的道路取最慢方向）；最严重列为首次达到的时间。<br>
Minutes at each level, graded by GB/T 33171-2016 from each minute's mean vehicle speed (a road with several directions: its slowest); Worst: first time at that level.</p>
<h2>各部门告警 <span class="en">Alerts by department</span></h2>
<table id="departments"><tr><th>部门<br><span class="en">Department</span></th><th>告警<br><span class="en">Alerts</span></th>
<th>已确认<br><span class="en">Acked</span></th><th>确认用时中位(分)<br><span class="en">Median to ack (min)</span></th></tr>
{"".join(dep_rows) or empty}</table>
<p class="note">下载 Download: <a href="{base}.png">PNG</a> · <a href="{base}.pdf">PDF</a> ·
<a href="{base}.csv">CSV</a> · <a href="{base}.xlsx">Excel</a> · <a href="/api/reports/daily/{report.day.isoformat()}">JSON</a>{whole}<br>
生成 Generated {made}</p>
</main></body></html>
"""
