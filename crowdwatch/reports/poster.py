"""The daily index poster: one portrait page (PNG for the chat robots, PDF for print).

Drawn with matplotlib (``crowdwatch[reports]``), imported when a poster is made so the web
process starts without it.  Chinese needs a CJK font: the first of :data:`CJK_FONTS` that the
system has; without one the poster is drawn in English only and a warning says which
package to install (``fonts-wqy-microhei`` or ``fonts-noto-cjk`` on Debian).
"""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from crowdwatch.contracts.errors import ConfigError
from crowdwatch.reports.daily import COMPARISON_LABELS, DEPARTMENT_NAMES, DailyReport, SiteReport

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

CJK_FONTS = (
    "WenQuanYi Micro Hei",
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "Source Han Sans SC",
    "PingFang SC",
    "Microsoft YaHei",
    "SimHei",
)
TODAY_COLOR = "#1f5fa8"
BEFORE_COLOR = "#a8b8c8"
WIDTH_IN = 7.2
DPI = 150
"""7.2 in x 150 dpi = 1080 px wide: a phone screen's width in a chat, sharp when zoomed."""


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ConfigError(
            "the report's charts need matplotlib: pip install 'crowdwatch[reports]'"
        ) from exc
    return plt


def cjk_font() -> str | None:
    """The family name of an installed CJK font, or None."""
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    return next((name for name in CJK_FONTS if name in installed), None)


class _Text:
    """Bilingual labels, or English alone when no CJK font can draw Chinese."""

    def __init__(self, chinese: bool) -> None:
        self.chinese = chinese

    def __call__(self, zh: str, en: str, sep: str = " ") -> str:
        return f"{zh}{sep}{en}" if self.chinese else en


def _setup() -> tuple[Any, _Text]:
    plt = _pyplot()
    font = cjk_font()
    if font is None:
        logger.warning(
            "no CJK font installed: the report poster is drawn in English only "
            "(install fonts-wqy-microhei or fonts-noto-cjk)"
        )
        plt.rcParams["font.family"] = ["DejaVu Sans"]
    else:
        plt.rcParams["font.family"] = [font, "DejaVu Sans"]
    plt.rcParams["axes.unicode_minus"] = False
    plt.rcParams["svg.fonttype"] = "none"
    return plt, _Text(font is not None)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:+.1f}%"


def _visits(report: SiteReport) -> str:
    visits = report.today.visits
    if visits is None:
        return "—"
    return f"{visits:,}*" if report.today.visits_estimated else f"{visits:,}"


def _peak(report: SiteReport, tz: str) -> str:
    if report.today.peak is None or report.today.peak_at is None:
        return "—"
    local = report.today.peak_at.astimezone(ZoneInfo(tz)).strftime("%H:%M")
    return f"{report.today.peak:,} @{local}"


def draw_visitors_chart(ax: Axes, report: DailyReport, text: _Text) -> None:
    """Horizontal bars: each beach/spot today beside the same holiday day last year."""
    sites = report.visitor_sites[:12]
    names = [text(s.site.name.zh, s.site.name.en, "\n") for s in sites][::-1]
    today = [s.today.visits or 0 for s in sites][::-1]
    before = [next(c for c in s.comparisons if c.key == "last_year").visits or 0 for s in sites][
        ::-1
    ]
    rows = range(len(sites))
    height = 0.38
    ax.barh(
        [r + height / 2 for r in rows],
        today,
        height,
        color=TODAY_COLOR,
        label=text("今日", "today"),
    )
    ax.barh(
        [r - height / 2 for r in rows],
        before,
        height,
        color=BEFORE_COLOR,
        label=text("去年同期", "same day last year"),
    )
    for r, site in zip(rows, sites[::-1], strict=True):
        change = next(c for c in site.comparisons if c.key == "last_year").change_pct
        ax.text(
            (site.today.visits or 0),
            r + height / 2,
            f" {_visits(site)}  {_pct(change)}",
            va="center",
            fontsize=8,
        )
    ax.set_yticks(list(rows), names, fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=7, loc="lower right", frameon=False)
    right = max([*today, *before, 1])
    ax.set_xlim(0, right * 1.45)


ROW_IN = 0.36
"""Height of a table row (two lines: Chinese above English)."""


def _table_height(rows: int) -> float:
    return 0.45 + ROW_IN * (max(rows, 1) + 1)


def _table(ax: Axes, header: list[str], rows: list[list[str]], title: str) -> None:
    """A table filling ``ax`` exactly (the axes were sized for its rows)."""
    ax.axis("off")
    ax.set_title(title, loc="left", fontsize=10, pad=4)
    shown = rows or [["—"] + [""] * (len(header) - 1)]
    from matplotlib.transforms import Bbox

    table = ax.table(
        cellText=shown, colLabels=header, bbox=Bbox.from_bounds(0, 0, 1, 1), cellLoc="left"
    )
    table.auto_set_font_size(False)
    table.set_fontsize(7.5)
    for (row, _), cell in table.get_celld().items():
        cell.set_edgecolor("#dddddd")
        if row == 0:
            cell.set_facecolor("#eef2f6")


def _site_rows(report: DailyReport, text: _Text) -> list[list[str]]:
    tz = report.config.district.timezone
    rows = []
    for site in report.visitor_sites:
        change = next(c for c in site.comparisons if c.key == "last_year").change_pct
        above = site.today.minutes_above
        rows.append(
            [
                text(site.site.name.zh, site.site.name.en, "\n"),
                _visits(site),
                _pct(change),
                _peak(site, tz),
                " / ".join(str(above[level.id]) for level in report.config.reports.levels),
            ]
        )
    return rows


def _stop_rows(report: DailyReport, text: _Text) -> list[list[str]]:
    tz = report.config.district.timezone
    rows = []
    for stop in report.stops[:5]:
        wait = stop.today.longest_wait_s
        rows.append(
            [
                text(stop.site.name.zh, stop.site.name.en, "\n"),
                _peak(stop, tz),
                "—" if wait is None else f"{wait / 60:.0f} min",
                str(stop.alerts),
            ]
        )
    return rows


def _road_rows(report: DailyReport, text: _Text) -> list[list[str]]:
    tz = report.config.district.timezone
    rows = []
    for road in report.roads[:5]:
        traffic = road.traffic
        if traffic is None:
            continue
        worst = "—"
        if traffic.worst is not None and traffic.worst_at is not None:
            local = traffic.worst_at.astimezone(ZoneInfo(tz)).strftime("%H:%M")
            short = traffic.worst.name.lower().replace("_", " ")  # the cell is narrow
            worst = text(traffic.worst.zh, short, "\n") + f" @{local}"
        rows.append(
            [
                text(road.site.name.zh, road.site.name.en, "\n"),
                str(traffic.moderate_or_worse),
                str(traffic.severe),
                str(traffic.minutes_no_data),
                worst,
            ]
        )
    return rows


def _department_rows(report: DailyReport, text: _Text) -> list[list[str]]:
    rows = []
    for dep in report.departments:
        zh, en = DEPARTMENT_NAMES.get(dep.department, (dep.department, dep.department))
        rows.append(
            [
                text(zh, en),
                str(dep.alerts),
                str(dep.acknowledged),
                "—" if dep.median_ack_min is None else f"{dep.median_ack_min:.1f} min",
            ]
        )
    return rows


def draw_poster(report: DailyReport) -> Figure:
    """The whole poster as a matplotlib figure (close it with ``plt.close``)."""
    plt, text = _setup()
    n_sites = max(len(report.visitor_sites[:12]), 1)
    heights = [
        1.0,
        1.2 + 0.5 * n_sites,
        _table_height(len(report.visitor_sites)),
        _table_height(min(len(report.stops), 5)),
        _table_height(min(len(report.roads), 5)),
        _table_height(len(report.departments)),
        0.4,
    ]
    gap = 0.55  # inches between blocks: room for each block's title
    fig: Figure = plt.figure(figsize=(WIDTH_IN, sum(heights) + gap * len(heights)), dpi=DPI)
    grid = fig.add_gridspec(
        len(heights), 1, height_ratios=heights, hspace=gap / (sum(heights) / len(heights))
    )
    head = fig.add_subplot(grid[0])
    head.axis("off")
    title_zh, title_en = report.title()
    if text.chinese:
        head.text(0, 0.95, title_zh, fontsize=15, va="top")
    head.text(0, 0.6 if text.chinese else 0.95, title_en, fontsize=10, va="top", color="#333333")
    total = report.total_comparison("last_year")
    head.text(
        0,
        0.2,
        text("全区游客", "Visitors")
        + f"  {report.total_visits:,}   "
        + text("较去年同期", "vs last year")
        + f" {_pct(total.change_pct)}",
        fontsize=12,
        color=TODAY_COLOR,
        va="top",
    )
    chart = fig.add_subplot(grid[1])
    chart.set_anchor("N")
    draw_visitors_chart(chart, report, text)
    chart.set_title(text("各景点游客", "Visitors per beach and spot"), loc="left", fontsize=10)
    levels = "/".join(f"{level.at * 100:g}" for level in report.config.reports.levels) + "%"
    _table(
        fig.add_subplot(grid[2]),
        [
            text("景点", "Site", "\n"),
            text("游客", "Visitors", "\n"),
            text("较去年", "vs last yr", "\n"),
            text("峰值@时间", "Peak @time", "\n"),
            text("超预警分钟", "Min. above", "\n") + f"\n{levels}",
        ],
        _site_rows(report, text),
        text("景区与海滩", "Beaches and scenic spots"),
    )
    _table(
        fig.add_subplot(grid[3]),
        [
            text("公交站", "Bus stop", "\n"),
            text("最多候车", "Most waiting", "\n"),
            text("最长等候", "Longest wait", "\n"),
            text("告警", "Alerts", "\n"),
        ],
        _stop_rows(report, text),
        text("最拥挤公交站", "Busiest bus stops"),
    )
    _table(
        fig.add_subplot(grid[4]),
        [
            text("道路", "Road", "\n"),
            text("中度拥堵+(分)", "Moderate+ (min)", "\n"),
            text("严重拥堵(分)", "Severe (min)", "\n"),
            text("无数据(分)", "No data (min)", "\n"),
            text("最严重", "Worst", "\n"),
        ],
        _road_rows(report, text),
        text("道路拥堵", "Road congestion") + " (GB/T 33171-2016)",
    )
    _table(
        fig.add_subplot(grid[5]),
        [
            text("部门", "Department", "\n"),
            text("告警", "Alerts", "\n"),
            text("已确认", "Acknowledged", "\n"),
            text("确认用时中位", "Median to ack", "\n"),
        ],
        _department_rows(report, text),
        text("各部门告警", "Alerts by department"),
    )
    foot = fig.add_subplot(grid[6])
    foot.axis("off")
    labels = ", ".join(text(zh, en) for zh, en in COMPARISON_LABELS.values())
    foot.text(
        0,
        0.9,
        text("* 估算：人时 ÷ 平均停留时间", "* estimate: person-hours / mean stay", " · ")
        + f"\n{labels} · "
        + report.generated_at.astimezone(ZoneInfo(report.config.district.timezone)).strftime(
            "%Y-%m-%d %H:%M"
        ),
        fontsize=7,
        color="#666666",
        va="top",
    )
    return fig


def _render(report: DailyReport, fmt: str) -> bytes:
    plt = _pyplot()
    fig = draw_poster(report)
    try:
        out = io.BytesIO()
        fig.savefig(out, format=fmt, dpi=DPI, bbox_inches="tight", facecolor="white")
        return out.getvalue()
    finally:
        plt.close(fig)


def poster_png(report: DailyReport) -> bytes:
    """The poster as PNG (1080 px wide)."""
    return _render(report, "png")


def poster_pdf(report: DailyReport) -> bytes:
    """The poster as a one-page PDF."""
    return _render(report, "pdf")


def visitors_chart_svg(report: DailyReport) -> str:
    """The visitors chart alone, as inline SVG for the page."""
    plt, text = _setup()
    fig = plt.figure(figsize=(5.2, 0.9 + 0.5 * max(len(report.visitor_sites[:12]), 1)))
    try:
        draw_visitors_chart(fig.add_subplot(), report, text)
        out = io.StringIO()
        fig.savefig(out, format="svg", bbox_inches="tight")
        svg = out.getvalue()
    finally:
        plt.close(fig)
    # Keep only the <svg> element (the XML prologue and DOCTYPE do not belong inside HTML).
    return svg[svg.index("<svg") :]


def line_chart_svg(
    this: list[int | None], last: list[int | None], label: str, last_label: str
) -> str:
    """Visitors per holiday day, this year's beside last year's, as inline SVG."""
    plt, _ = _setup()
    fig = plt.figure(figsize=(5.2, 2.6))
    try:
        ax = fig.add_subplot()
        days = [i + 1 for i in range(len(this))]
        ax.plot(
            days,
            [float("nan") if v is None else v for v in this],
            "o-",
            color=TODAY_COLOR,
            label=label,
        )
        if last:
            ax.plot(
                [i + 1 for i in range(len(last))],
                [float("nan") if v is None else v for v in last],
                "o--",
                color=BEFORE_COLOR,
                label=last_label,
            )
        ax.set_xticks(days)
        ax.tick_params(labelsize=8)
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(fontsize=8, frameon=False)
        ax.set_ylim(bottom=0)
        out = io.StringIO()
        fig.savefig(out, format="svg", bbox_inches="tight")
        svg = out.getvalue()
    finally:
        plt.close(fig)
    return svg[svg.index("<svg") :]
