"""The command-center wall and the per-site drill-down, built from the site config.

Wall (``crowdwatch-wall``), top to bottom: four big numbers (people now, sites at 85 %,
alerts firing, cameras offline); the map of every site coloured by occupancy against
capacity beside the active alerts; one gauge per site; bus-stop queues (waiting now,
longest wait, trend) beside the beach sections; people in the district today against the
same hours of the reference day (variable ``ref_day``, e.g. the last holiday), and per kind
of site; camera health.  The drill-down (``crowdwatch-site``, variable ``site``) has the
same for one site, its zones and line crossings.  Both refresh every 10 s.

Titles are Chinese with English beside them: the command center reads Chinese, visiting
teams and vendors read English.
"""

from __future__ import annotations

from statistics import fmean

from crowdwatch.contracts.config import CrowdwatchConfig
from crowdwatch.contracts.congestion import CongestionLevel
from crowdwatch.contracts.ground import approach_length_m
from crowdwatch.contracts.site_kinds import KindView, road_thresholds, spec
from crowdwatch.dashboards.grafana.model import (
    Dashboard,
    FieldOverride,
    GridPos,
    Link,
    Panel,
    QueryVariable,
    SqlTarget,
    Threshold,
)
from crowdwatch.dashboards.grafana.options import (
    GREEN,
    GREY,
    OCCUPANCY_STEPS,
    ORANGE,
    RED,
    gauge_options,
    geomap_options,
    stat_options,
    table_custom,
    table_options,
    thresholds,
    timeseries_custom,
    timeseries_options,
)
from crowdwatch.dashboards.grafana.panel_sql import PanelSql

WALL_UID = "crowdwatch-wall"
SITE_UID = "crowdwatch-site"
TAG = "crowdwatch"
SITE_LINK = f"/d/{SITE_UID}/?var-site=${{__data.fields.site_id}}&${{ref_day:queryparam}}"
"""Data link from a site's row to its drill-down, keeping the reference day."""


def _ratio_defaults() -> dict[str, object]:
    return {
        "unit": "percentunit",
        "min": 0,
        "max": 1.2,
        "decimals": 0,
        "thresholds": thresholds(OCCUPANCY_STEPS),
        "color": {"mode": "thresholds"},
    }


def _table_defaults() -> dict[str, object]:
    return {
        "custom": table_custom(),
        "thresholds": thresholds(OCCUPANCY_STEPS),
        "color": {"mode": "thresholds"},
        "noValue": "—",
    }


def _occupancy_column(name: str = "occupancy") -> FieldOverride:
    return FieldOverride(
        name,
        {
            "displayName": "占用率 Occupancy",
            "unit": "percentunit",
            "min": 0,
            "max": 1,
            "custom.cellOptions": {"type": "gauge", "mode": "basic", "valueDisplayMode": "text"},
        },
    )


def _hidden(name: str) -> FieldOverride:
    return FieldOverride(name, {"custom.hidden": True})


def _named(name: str, title: str, unit: str = "") -> FieldOverride:
    properties: dict[str, object] = {"displayName": title}
    if unit:
        properties["unit"] = unit
    return FieldOverride(name, properties)


def _series_panel(
    title: str, grid: GridPos, targets: tuple[SqlTarget, ...], names: dict[str, str]
) -> Panel:
    overrides = [_named(column, label) for column, label in names.items()]
    if "reference" in names:
        overrides.append(
            FieldOverride(
                "reference",
                {
                    "custom.lineStyle": {"fill": "dash", "dash": [10, 10]},
                    "custom.fillOpacity": 0,
                    "color": {"mode": "fixed", "fixedColor": GREY},
                },
            )
        )
    return Panel(
        "timeseries",
        title,
        grid,
        targets,
        options=timeseries_options(),
        defaults={"custom": timeseries_custom(), "unit": "short", "min": 0, "decimals": 0},
        overrides=tuple(overrides),
    )


# The wall page's colours of the levels (a traffic map's green to deep red).
LEVEL_COLOURS = {
    CongestionLevel.SMOOTH: "#2fd37a",
    CongestionLevel.MOSTLY_SMOOTH: "#a6e05a",
    CongestionLevel.LIGHT: "#ffc400",
    CongestionLevel.MODERATE: "#ff7a1a",
    CongestionLevel.SEVERE: "#e0102e",
}


def approach_lengths(config: CrowdwatchConfig) -> list[tuple[str, str, float]]:
    """``(site_id, zone_id, length_m)`` of every stop line's approach whose length is known
    (the road table's queue is a share of it, as the wall's is)."""
    return [
        (site.id, zone.id, length)
        for site in config.sites
        for camera in site.cameras
        for zone in camera.zones
        if (length := approach_length_m(zone, camera.calibration)) is not None
    ]


def _roads_panel(config: CrowdwatchConfig, sql: PanelSql, grid: GridPos) -> Panel | None:
    """Every road coloured by its congestion level, with speed and vehicles; ``None``
    when the district has no road."""
    bounds = [
        (site.id, road_thresholds(site))
        for site in config.sites
        if spec(site.kind).view is KindView.TRAFFIC
    ]
    if not bounds:
        return None
    mappings = [
        {
            "type": "value",
            "options": {
                str(int(level)): {
                    "text": f"{level.zh} {level.en}",
                    "color": LEVEL_COLOURS[level],
                    "index": int(level) - 1,
                }
                for level in CongestionLevel
            },
        },
        {
            "type": "special",
            "options": {"match": "null", "result": {"text": "无数据 no data", "color": GREY}},
        },
    ]
    return Panel(
        "table",
        "道路通行 Road traffic (GB/T 33171-2016)",
        grid,
        (
            SqlTarget(
                "A",
                sql.road_traffic(bounds, approach_lengths(config)),
                ("site_id", "road", "level", "basis", "speed_kmh", "vehicles", "queue"),
            ),
        ),
        options=table_options(),
        defaults={
            "custom": table_custom(),
            "noValue": "—",
            "links": [{"title": "点位详情 Site details", "url": SITE_LINK}],
        },
        overrides=(
            _hidden("site_id"),
            _named("road", "道路 Road"),
            FieldOverride(
                "level",
                {
                    "displayName": "路况 Level",
                    "mappings": mappings,
                    "color": {"mode": "thresholds"},
                    "thresholds": thresholds((Threshold(None, GREY),)),
                    "custom.cellOptions": {"type": "color-background", "mode": "basic"},
                },
            ),
            _named("basis", "依据 Basis"),
            FieldOverride(
                "speed_kmh",
                {"displayName": "平均车速 Mean speed", "unit": "velocitykmh", "decimals": 0},
            ),
            _named("vehicles", "车辆 Vehicles"),
            _named("queue", "排队 Queue"),
            _named("updated", "更新 Updated", "dateTimeFromNow"),
        ),
    )


def _ref_day_variable(sql: PanelSql) -> QueryVariable:
    return QueryVariable(
        "ref_day",
        "参考日 Reference day",
        sql.reference_days(),
        description="对比的日期（如上一个节假日）The day to compare with, e.g. the last holiday",
        allow_custom=True,
    )


def _alerts_panel(sql: PanelSql, grid: GridPos, *, one_site: bool) -> Panel:
    firing = not one_site
    title = "当前告警 Active alerts" if firing else "告警记录 Alerts in the range"
    return Panel(
        "table",
        title,
        grid,
        (
            SqlTarget(
                "A",
                sql.alerts(firing_only=firing, one_site=one_site),
                ("started", "state", "severity", "site", "zone", "summary_zh", "summary_en"),
            ),
        ),
        options=table_options(),
        defaults={**_table_defaults(), "noValue": "无告警 No alerts"},
        overrides=(
            _named("started", "开始 Started", "dateTimeFromNow"),
            _named("state", "状态 State"),
            FieldOverride(
                "severity",
                {
                    "displayName": "级别 Severity",
                    "custom.cellOptions": {"type": "color-background", "mode": "basic"},
                    "mappings": [
                        {
                            "type": "value",
                            "options": {
                                "critical": {"text": "严重 critical", "color": RED},
                                "warning": {"text": "警告 warning", "color": ORANGE},
                                "info": {"text": "提示 info", "color": "blue"},
                            },
                        }
                    ],
                },
            ),
            _named("site", "点位 Site"),
            _named("zone", "区域 Zone"),
            _named("summary_zh", "摘要"),
            _named("summary_en", "Summary"),
            _named("value", "数值 Value"),
            _named("threshold", "阈值 Threshold"),
            _hidden("site_id"),
        ),
    )


def _cameras_panel(sql: PanelSql, grid: GridPos, *, one_site: bool) -> Panel:
    return Panel(
        "table",
        "摄像头状态 Cameras",
        grid,
        (
            SqlTarget(
                "A",
                sql.cameras(one_site=one_site),
                ("site_id", "camera_id", "state", "age_s", "fps", "inference_ms"),
            ),
        ),
        options=table_options(),
        defaults=_table_defaults(),
        overrides=(
            _named("site_id", "点位 Site"),
            _named("camera_id", "摄像头 Camera"),
            FieldOverride(
                "state",
                {
                    "displayName": "状态 State",
                    "custom.cellOptions": {"type": "color-background", "mode": "basic"},
                    "mappings": [
                        {
                            "type": "value",
                            "options": {
                                "online": {"text": "在线 online", "color": GREEN},
                                "offline": {"text": "离线 offline", "color": RED},
                                "stale": {"text": "无数据 stale", "color": ORANGE},
                            },
                        }
                    ],
                },
            ),
            _named("age_s", "上报 Last report", "s"),
            _named("fps", "帧率 fps"),
            _named("inference_ms", "推理 Inference", "ms"),
            _named("dropped_frames", "丢帧 Dropped"),
            _hidden("ts"),
        ),
    )


def wall_dashboard(config: CrowdwatchConfig) -> Dashboard:
    """The command-center wall for the district in ``config``.

    Args:
        config: the site config (district time zone, site positions, stale limit).

    Returns:
        The wall dashboard.
    """
    sql = PanelSql(config.district.timezone, config.alerts.stale_after_s)
    lat = fmean(s.location.lat for s in config.sites) if config.sites else 0.0
    lon = fmean(s.location.lon for s in config.sites) if config.sites else 0.0
    district = sql.district_now()
    stats = (
        ("people", "全区人数 People now", "short", (Threshold(None, "blue"),)),
        (
            "sites_full",
            "满载点位 Sites at 85 %",
            "short",
            (Threshold(None, GREEN), Threshold(1, RED)),
        ),
        (
            "alerts_firing",
            "告警 Alerts firing",
            "short",
            (Threshold(None, GREEN), Threshold(1, RED)),
        ),
        (
            "cameras_offline",
            "离线摄像头 Cameras offline",
            "short",
            (Threshold(None, GREEN), Threshold(1, ORANGE)),
        ),
    )
    panels: list[Panel] = [
        Panel(
            "stat",
            title,
            GridPos(6 * i, 0, 6, 4),
            (SqlTarget("A", district, (column,)),),
            options=stat_options(f"/^{column}$/"),
            defaults={"unit": unit, "decimals": 0, "thresholds": thresholds(steps)},
        )
        for i, (column, title, unit, steps) in enumerate(stats)
    ]
    panels += [
        Panel(
            "geomap",
            "全区地图 District map (颜色 = 占用率 colour = occupancy)",
            GridPos(0, 4, 14, 14),
            (
                SqlTarget(
                    "A",
                    sql.sites_now(),
                    ("site_id", "name", "lat", "lon", "people", "capacity", "occupancy"),
                ),
            ),
            options=geomap_options(
                lat=lat,
                lon=lon,
                zoom=13,
                color_field="occupancy",
                size_field="capacity",
                text_field="name",
            ),
            defaults={
                **_ratio_defaults(),
                "links": [{"title": "点位详情 Site details", "url": SITE_LINK}],
            },
        ),
        _alerts_panel(sql, GridPos(14, 4, 10, 14), one_site=False),
        Panel(
            "gauge",
            "各点位占用率 Occupancy by site",
            GridPos(0, 18, 24, 7),
            (SqlTarget("A", sql.sites_now(), ("site_id", "name", "occupancy")),),
            options=gauge_options("/^occupancy$/"),
            defaults={
                **_ratio_defaults(),
                "displayName": "${__data.fields.name}",
                "noValue": "—",
                "links": [{"title": "点位详情 Site details", "url": SITE_LINK}],
            },
        ),
        Panel(
            "table",
            "公交候车 Bus-stop queues",
            GridPos(0, 25, 12, 10),
            (
                SqlTarget(
                    "A",
                    sql.bus_queues(),
                    ("site_id", "stop", "waiting", "occupancy", "longest_wait_s", "trend"),
                ),
            ),
            options=table_options(),
            defaults={
                **_table_defaults(),
                "links": [{"title": "点位详情 Site details", "url": SITE_LINK}],
            },
            overrides=(
                _hidden("site_id"),
                _named("stop", "站点 Stop"),
                _named("waiting", "候车人数 Waiting now"),
                _named("capacity", "容量 Capacity"),
                _occupancy_column(),
                _named("longest_wait_s", "最长等待 Longest wait", "s"),
                _named("trend_delta", "变化 Change (people)"),
                _named("trend", "趋势 Trend"),
                _named("updated", "更新 Updated", "dateTimeFromNow"),
            ),
        ),
        Panel(
            "table",
            "海滩分区 Beach sections",
            GridPos(12, 25, 12, 10),
            (
                SqlTarget(
                    "A",
                    sql.beach_sections(),
                    ("site_id", "beach", "section", "people", "capacity", "occupancy"),
                ),
            ),
            options=table_options(),
            defaults={
                **_table_defaults(),
                "links": [{"title": "点位详情 Site details", "url": SITE_LINK}],
            },
            overrides=(
                _hidden("site_id"),
                _named("beach", "海滩 Beach"),
                _named("section", "分区 Section"),
                _named("people", "人数 People"),
                _named("capacity", "容量 Capacity"),
                _occupancy_column(),
                _named("updated", "更新 Updated", "dateTimeFromNow"),
            ),
        ),
    ]
    roads = _roads_panel(config, sql, GridPos(0, 35, 24, 7))
    below = 35 if roads is None else 42
    if roads is not None:
        panels.append(roads)
    panels += [
        _series_panel(
            "全区人数：今日 vs 参考日 People in the district: now vs ${ref_day}",
            GridPos(0, below, 12, 9),
            (
                SqlTarget(
                    "A", sql.district_series(reference=False), ("time", "people"), "time_series"
                ),
                SqlTarget(
                    "B",
                    sql.district_series(reference=True),
                    ("time", "reference"),
                    "time_series",
                ),
            ),
            {"people": "当前 Now", "reference": "参考日 ${ref_day}"},
        ),
        _series_panel(
            "各类点位人数 People by kind of site",
            GridPos(12, below, 12, 9),
            (SqlTarget("A", sql.kind_series(), ("time", "metric", "value"), "time_series"),),
            {},
        ),
        _cameras_panel(sql, GridPos(0, below + 9, 24, 8), one_site=False),
    ]
    return Dashboard(
        uid=WALL_UID,
        title=f"{config.district.name.zh} 指挥中心 · {config.district.name.en} command center",
        description="crowdwatch: 全区实时人流 live crowds of the district (generated; do not edit)",
        panels=tuple(panels),
        tags=(TAG,),
        variables=(_ref_day_variable(sql),),
        links=(Link("crowdwatch 仪表板 dashboards", tag=TAG),),
        timezone=config.district.timezone,
    )


def site_dashboard(config: CrowdwatchConfig) -> Dashboard:
    """The per-site drill-down (variable ``site``), for the district in ``config``.

    Args:
        config: the site config (district time zone, stale limit).

    Returns:
        The drill-down dashboard.
    """
    sql = PanelSql(config.district.timezone, config.alerts.stale_after_s)
    site_now = sql.site_now()
    panels = (
        Panel(
            "stat",
            "现在人数 People now",
            GridPos(0, 0, 6, 6),
            (SqlTarget("A", site_now, ("people",)),),
            options=stat_options("/^people$/"),
            defaults={
                "unit": "short",
                "decimals": 0,
                "noValue": "无数据 No data",
                "thresholds": thresholds((Threshold(None, "blue"),)),
            },
        ),
        Panel(
            "gauge",
            "占用率 Occupancy",
            GridPos(6, 0, 6, 6),
            (SqlTarget("A", site_now, ("occupancy",)),),
            options=gauge_options("/^occupancy$/", each_row=False),
            defaults={**_ratio_defaults(), "noValue": "—"},
        ),
        Panel(
            "table",
            "各区域 Zones",
            GridPos(12, 0, 12, 6),
            (
                SqlTarget(
                    "A",
                    sql.site_zones_now(),
                    ("zone", "people", "capacity", "occupancy", "longest_wait_s"),
                ),
            ),
            options=table_options(),
            defaults=_table_defaults(),
            overrides=(
                _named("zone", "区域 Zone"),
                _named("people", "人数 People"),
                _named("capacity", "容量 Capacity"),
                _occupancy_column(),
                _named("longest_wait_s", "最长等待 Longest wait", "s"),
                _named("density_per_m2", "密度 Density (/m²)"),
                _named("updated", "更新 Updated", "dateTimeFromNow"),
            ),
        ),
        _series_panel(
            "人数：今日 vs 参考日 People: now vs ${ref_day}",
            GridPos(0, 6, 24, 9),
            (
                SqlTarget(
                    "A",
                    sql.site_series(reference=False),
                    ("time", "people", "peak"),
                    "time_series",
                ),
                SqlTarget(
                    "B", sql.site_series(reference=True), ("time", "reference"), "time_series"
                ),
            ),
            {"people": "平均 Mean", "peak": "峰值 Peak", "reference": "参考日 ${ref_day}"},
        ),
        _series_panel(
            "各区域人数 People per zone",
            GridPos(0, 15, 12, 9),
            (SqlTarget("A", sql.zone_series(), ("time", "metric", "value"), "time_series"),),
            {},
        ),
        _series_panel(
            "过线人数 Line crossings",
            GridPos(12, 15, 12, 9),
            (
                SqlTarget(
                    "A",
                    sql.line_series([p for s in config.sites for p in s.lines_by_class()]),
                    ("time", "crossings_in", "crossings_out"),
                    "time_series",
                ),
            ),
            {"crossings_in": "进 In", "crossings_out": "出 Out"},
        ),
        _alerts_panel(sql, GridPos(0, 24, 14, 8), one_site=True),
        _cameras_panel(sql, GridPos(14, 24, 10, 8), one_site=True),
        Panel(
            "timeseries",
            "道路：车速与车辆 Road: mean speed and vehicles",
            GridPos(0, 32, 24, 8),
            (
                SqlTarget(
                    "A",
                    sql.site_traffic_series(),
                    ("time", "speed_kmh", "vehicles"),
                    "time_series",
                ),
            ),
            options=timeseries_options(),
            defaults={"custom": timeseries_custom(), "min": 0, "decimals": 0},
            overrides=(
                FieldOverride(
                    "speed_kmh", {"displayName": "平均车速 Mean speed", "unit": "velocitykmh"}
                ),
                FieldOverride(
                    "vehicles",
                    {"displayName": "车辆 Vehicles", "custom.axisPlacement": "right"},
                ),
            ),
        ),
        *_flow_panels(config, sql),
    )
    return Dashboard(
        uid=SITE_UID,
        title="点位详情 Site details",
        description="crowdwatch: 单个点位 one site (generated; do not edit)",
        panels=panels,
        tags=(TAG,),
        variables=(
            QueryVariable("site", "点位 Site", sql.site_choices()),
            _ref_day_variable(sql),
        ),
        links=(Link("指挥中心 Command center", url=f"/d/{WALL_UID}/"),),
        timezone=config.district.timezone,
    )


def _flow_panels(config: CrowdwatchConfig, sql: PanelSql) -> tuple[Panel, ...]:
    """The flow per lane of the lines with ``lanes`` (none when no line has lanes)."""
    lanes = [
        (site.id, line.id, line.lanes)
        for site, camera in config.cameras()
        for line in camera.lines
        if line.lanes is not None
    ]
    if not lanes:
        return ()
    target = SqlTarget(
        "A", sql.line_flow_per_lane(lanes), ("time", "metric", "value"), "time_series"
    )
    return (
        _series_panel(
            "每车道流量 Flow per lane (辆/小时/车道 veh/h/lane)",
            GridPos(0, 40, 24, 8),
            (target,),
            {},
        ),
    )


def all_dashboards(config: CrowdwatchConfig) -> list[Dashboard]:
    """Every crowdwatch dashboard for ``config``: the wall, then the drill-down."""
    return [wall_dashboard(config), site_dashboard(config)]
