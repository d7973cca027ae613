"""The report's figures as one table: CSV (always) and Excel (with openpyxl).

One row per site of the day (beaches and spots, then bus stops, then roads), the columns of
the API's site objects, so a department can sort and sum them.  The congestion columns come
last and are filled on road rows only (minutes at each GB/T 33171-2016 level).
"""

from __future__ import annotations

import csv
import io
from typing import Any

from crowdwatch.contracts.errors import ConfigError
from crowdwatch.reports.daily import COMPARISON_LABELS, DailyReport, report_json

COLUMNS = (
    ("day", "日期", "day"),
    ("section", "类别", "section"),
    ("site_id", "编号", "site id"),
    ("name_zh", "名称", "name (zh)"),
    ("name_en", "Name", "name (en)"),
    ("visits", "游客人次", "visitors"),
    ("visits_estimated", "估算", "estimated"),
    ("entries", "进入", "entries"),
    ("exits", "离开", "exits"),
    ("person_hours", "人时", "person-hours"),
    ("peak", "峰值", "peak"),
    ("peak_local", "峰值时间", "peak time"),
    ("coverage", "数据覆盖", "data coverage"),
    ("longest_wait_min", "最长等候(分)", "longest wait (min)"),
    ("alerts", "告警", "alerts"),
    ("capacity", "瞬时容量", "capacity"),
    ("daily_capacity", "日容量", "daily capacity"),
)

CONGESTION_COLUMNS = (
    ("minutes_moderate_or_worse", "中度拥堵及以上分钟", "min moderate or worse"),
    ("minutes_severe", "严重拥堵分钟", "min severe"),
    ("minutes_no_data", "无数据分钟", "min no data (no message, or no speed)"),
    ("worst_name", "最严重级别", "worst level"),
    ("worst_local", "最严重时间", "worst at"),
    ("slowest_kmh", "最低车速(km/h)", "slowest (km/h)"),
)
"""A road's day beside its minutes per level (the keys of its ``congestion`` object)."""


def table_rows(report: DailyReport) -> tuple[list[str], list[list[Any]]]:
    """(header, rows) with levels and comparisons as extra columns."""
    body = report_json(report)
    levels = body["levels"]
    header = [f"{zh} / {en}" for _, zh, en in COLUMNS]
    header += [f"超{lv['name']['zh']}分钟 / min above {lv['name']['en']}" for lv in levels]
    for zh, en in COMPARISON_LABELS.values():
        header += [f"{zh}日期 / {en} day", f"{zh}人次 / {en}", f"{zh}% / vs {en} %"]
    congestion = body["congestion_levels"]
    header += [f"{lv['name']['zh']}分钟 / min {lv['name']['en']}" for lv in congestion]
    header += [f"{zh} / {en}" for _, zh, en in CONGESTION_COLUMNS]
    rows: list[list[Any]] = []
    for section in ("sites", "stops", "roads"):
        for site in body[section]:
            wait = site["longest_wait_s"]
            values = {
                "day": body["day"],
                "section": section,
                "site_id": site["site_id"],
                "name_zh": site["name"]["zh"],
                "name_en": site["name"]["en"],
                "longest_wait_min": None if wait is None else round(wait / 60, 1),
                "capacity": site["capacity"]["instantaneous"],
                "daily_capacity": site["capacity"]["daily"],
            }
            row = [values.get(key, site.get(key)) for key, _, _ in COLUMNS]
            row += [site["minutes_above"][lv["id"]] for lv in levels]
            for key in COMPARISON_LABELS:
                other = site["comparisons"].get(key)
                row += [None, None, None] if other is None else list(other.values())
            road = site.get("congestion")
            if road is None:
                row += [None] * (len(congestion) + len(CONGESTION_COLUMNS))
            else:
                row += [road["minutes_at"][lv["id"]] for lv in congestion]
                row += [_cell(road[key]) for key, _, _ in CONGESTION_COLUMNS]
            rows.append(row)
    return header, rows


def _cell(value: Any) -> Any:
    # A level's name reads "中度拥堵 moderate congestion" in one cell.
    return f"{value['zh']} {value['en']}" if isinstance(value, dict) else value


def report_csv(report: DailyReport) -> bytes:
    """UTF-8 CSV with a byte-order mark, so Excel opens the Chinese names correctly."""
    header, rows = table_rows(report)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows([["" if v is None else v for v in row] for row in rows])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def report_xlsx(report: DailyReport) -> bytes:
    """The same table as an Excel workbook.

    Raises:
        ConfigError: openpyxl is not installed (``crowdwatch[reports]``).
    """
    try:
        from openpyxl import Workbook
    except ImportError as exc:
        raise ConfigError(
            "the Excel table needs openpyxl: pip install 'crowdwatch[reports]'"
        ) from exc
    header, rows = table_rows(report)
    book = Workbook()
    sheet = book.active
    sheet.title = report.day.isoformat()
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    sheet.freeze_panes = "A2"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
