"""One-line alert texts in Chinese and English that a dispatcher reads at a glance.

Site and zone, what and how many, the trend, since when, and what to do::

    西湾总站 候车区: 85 人候车, 容量的 106%, 最长等候 14 分钟, 10 分钟内增加 20 人 (阈值 80 人, 自 08:05) — 建议: 加派 K1 路车辆
    Xiwan Terminus waiting area: 85 waiting, 106% of capacity, longest wait 14 min, rising 20/10 min (threshold 80 people, since 08:05) — add buses on route K1

The suggested action is the rule's ``action`` (``{routes}`` becomes the site's bus routes) or
a default per site kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, assert_never
from zoneinfo import ZoneInfo

from crowdwatch.contracts.config import AlertMetric, LocalizedName, Site
from crowdwatch.contracts.congestion import CongestionLevel
from crowdwatch.contracts.site_kinds import (
    DENSITY_SOURCE_TEXT,
    bus_routes,
    road_level,
    road_thresholds,
    spec,
)

if TYPE_CHECKING:
    from crowdwatch.analytics.forecast import Forecast
    from crowdwatch.analytics.rules import EffectiveRule


@dataclass(frozen=True, slots=True)
class AlertText:
    zh: str
    en: str


@dataclass(frozen=True, slots=True)
class AlertFacts:
    """What the text can say about the zone or camera (each item only when known)."""

    count: int | None = None
    capacity: int | None = None
    longest_wait_s: float | None = None
    density_per_m2: float | None = None
    rise: float | None = None
    rise_window_s: float = 600
    forecast: Forecast | None = None
    no_data_s: float | None = None
    status: str | None = None
    estimated: bool = False
    """the count is the density counter's estimate, not people detected one by one"""
    vehicles: int | None = None
    """motor vehicles in the zone (a camera that counts them)"""
    speed_kmh: float | None = None
    """their mean speed"""
    vehicle_density: float | None = None
    """vehicles per km per lane (a zone with lanes)"""
    queue_m: float | None = None
    """the queue back from the stop line (an approach)"""
    approach_m: float | None = None
    """the approach's length"""


_NO_ROUTES = LocalizedName(zh="加派车辆", en="add buses")
_CAMERA_ACTION = LocalizedName(zh="检查摄像头和网络", en="check the camera and its network")


def _percent(ratio: float) -> str:
    return f"{round(ratio * 100)}%"


def _en_place(site: LocalizedName, zone: LocalizedName) -> str:
    # "Waiting area" reads as a common noun after the site's proper name; keep acronyms as is.
    name = zone.en
    if len(name) > 1 and name[0].isupper() and name[1].islower():
        name = name[0].lower() + name[1:]
    return f"{site.en} {name}"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f}"


def _threshold(metric: AlertMetric, threshold: float, window_s: float) -> tuple[str, str]:
    match metric:
        case AlertMetric.OCCUPANCY_RATIO | AlertMetric.FORECAST_OCCUPANCY:
            return _percent(threshold), _percent(threshold)
        case AlertMetric.PEOPLE:
            return f"{threshold:g} 人", f"{threshold:g} people"
        case AlertMetric.LONGEST_WAIT_MIN:
            return f"{threshold:g} 分钟", f"{threshold:g} min"
        case AlertMetric.RISE:
            window = _minutes(window_s)
            return f"+{threshold:g} 人/{window} 分钟", f"+{threshold:g}/{window} min"
        case AlertMetric.DENSITY_PER_M2:
            return f"{threshold:g} 人/m²", f"{threshold:g}/m²"
        case AlertMetric.CONGESTION_LEVEL:
            if threshold == round(threshold) and 1 <= threshold <= 5:
                level = CongestionLevel(round(threshold))
                return level.zh, level.en
            return f"拥堵等级 {threshold:g}", f"congestion level {threshold:g}"
        case AlertMetric.QUEUE_SPILLBACK:
            return (
                f"排队达进口道长度的 {_percent(threshold)}",
                f"queue {_percent(threshold)} of the approach",
            )
        case AlertMetric.NO_DATA_S:
            return f"{threshold:g} 秒", f"{threshold:g} s"
        case _:
            assert_never(metric)


def _facts(site: Site, facts: AlertFacts, *, firing: bool) -> tuple[list[str], list[str]]:
    zh: list[str] = []
    en: list[str] = []
    if facts.vehicles is not None and spec(site.kind).vehicles:
        # A road: its traffic, not the people a road camera happens to see (a bus stop whose
        # camera also counts the road beside it still speaks of the people waiting).
        zh.append(f"{facts.vehicles} 辆车")
        en.append(f"{facts.vehicles} vehicles")
        if facts.speed_kmh is not None:
            level = road_thresholds(site).level(facts.speed_kmh)
            zh.append(f"平均车速 {facts.speed_kmh:.0f} km/h ({level.zh})")
            en.append(f"mean speed {facts.speed_kmh:.0f} km/h ({level.en})")
        elif facts.vehicle_density is not None:
            # No measured speed: the level is Greenshields' model of the density; say so.
            modelled = road_level(site, None, facts.vehicles, facts.vehicle_density)
            said = DENSITY_SOURCE_TEXT
            name_zh, name_en = (modelled.zh, modelled.en) if modelled else ("-", "-")
            zh.append(f"每公里每车道 {facts.vehicle_density:.0f} 辆 ({name_zh}, {said.zh})")
            en.append(f"{facts.vehicle_density:.0f} vehicles/km/lane ({name_en}, {said.en})")
        if facts.queue_m is not None and facts.approach_m is not None:
            zh.append(f"排队 {facts.queue_m:.0f} 米 (进口道 {facts.approach_m:.0f} 米)")
            en.append(f"queue {facts.queue_m:.0f} m (approach {facts.approach_m:.0f} m)")
    elif facts.count is not None:
        # A density estimate is said as one ("about"): a dispatcher weighs it differently.
        zh_about, en_about = ("约 ", "about ") if facts.estimated else ("", "")
        said = spec(site.kind).count_text
        zh.append(zh_about + said.zh.replace("{n}", str(facts.count)))
        en.append(en_about + said.en.replace("{n}", str(facts.count)))
        if facts.capacity:
            ratio = _percent(facts.count / facts.capacity)
            zh.append(f"达到容量的 {ratio}" if firing else f"容量的 {ratio}")
            en.append(f"{ratio} of capacity")
    if firing and facts.longest_wait_s is not None and facts.longest_wait_s >= 60:
        zh.append(f"最长等候 {_minutes(facts.longest_wait_s)} 分钟")
        en.append(f"longest wait {_minutes(facts.longest_wait_s)} min")
    if firing and facts.rise is not None and round(facts.rise) != 0:
        window = _minutes(facts.rise_window_s)
        n = round(abs(facts.rise))
        if facts.rise > 0:
            zh.append(f"{window} 分钟内增加 {n} 人")
            en.append(f"rising {n}/{window} min")
        else:
            zh.append(f"{window} 分钟内减少 {n} 人")
            en.append(f"falling {n}/{window} min")
    if facts.density_per_m2 is not None:
        zh.append(f"每平方米 {facts.density_per_m2:.1f} 人")
        en.append(f"{facts.density_per_m2:.1f} people/m²")
    if firing and facts.forecast is not None:
        zh_f, en_f = _forecast_text(facts.forecast)
        zh.append(zh_f)
        en.append(en_f)
    return zh, en


def _forecast_text(f: Forecast) -> tuple[str, str]:
    horizon = f"{f.horizon_min:g}"
    trend = round(f.rate_per_min * 10)
    zh_why = [f"趋势 {trend:+d}/10 分钟"]
    en_why = [f"trend {trend:+d}/10 min"]
    if f.reference_count is not None and f.count_now > 0:
        change = round((f.reference_count / f.count_now - 1) * 100)
        zh_why.append(f"上个假日 {change:+d}%")
        en_why.append(f"last holiday {change:+d}%")
    full = f.minutes_to_full
    zh = f"预计 {horizon} 分钟后达到容量的 {_percent(f.occupancy)}"
    en = f"forecast {_percent(f.occupancy)} of capacity in {horizon} min"
    if full is not None and full <= f.horizon_min:
        zh += f", 约 {full:.0f} 分钟后满"
        en += f", full in ~{full:.0f} min"
    return f"{zh} ({', '.join(zh_why)})", f"{en} ({', '.join(en_why)})"


def suggested_action(site: Site, rule: EffectiveRule) -> LocalizedName:
    """The action the text suggests: the rule's, else a default for the site kind.

    ``{routes}`` becomes the site's bus routes ("K1, 202"); a bus stop without routes gets
    "add buses".
    """
    if rule.metric is AlertMetric.NO_DATA_S and rule.action is None:
        return _CAMERA_ACTION
    action = rule.action or spec(site.kind).action
    if "{routes}" in action.zh or "{routes}" in action.en:
        routes = bus_routes(site)
        if not routes:
            return _NO_ROUTES if rule.action is None else action
        return LocalizedName(
            zh=action.zh.replace("{routes}", "、".join(routes)),
            en=action.en.replace("{routes}", ", ".join(routes)),
        )
    return action


def alert_text(
    state: str,
    site: Site,
    zone: LocalizedName | None,
    camera_id: str,
    rule: EffectiveRule,
    threshold: float,
    facts: AlertFacts,
    *,
    since: datetime | None = None,
    tz: str = "Asia/Shanghai",
) -> AlertText:
    """The summary of an alert that starts firing (``state="firing"``) or clears.

    Args:
        state: ``firing`` or ``resolved``.
        site: the site.
        zone: the zone's name; ``None`` for a camera (no data) alert.
        camera_id: the camera (named in no-data alerts).
        rule: the rule as it applies here.
        threshold: ``fire_at`` when firing, the clear threshold when resolving.
        facts: what is known about the zone or camera now.
        since: when it started (pending start for a firing alert), shown in local time.
        tz: the district's time zone.

    Returns:
        The Chinese and English lines.
    """
    firing = state == "firing"
    window = rule.rule.window_s
    zh_limit, en_limit = _threshold(rule.metric, threshold, window)
    if zone is None:
        zh_place, en_place = (
            f"{site.name.zh} 摄像头 {camera_id}",
            f"{site.name.en} camera {camera_id}",
        )
        if firing:
            silent = _minutes(facts.no_data_s or 0)
            why = " (离线)" if facts.status == "offline" else ""
            why_en = " (offline)" if facts.status == "offline" else ""
            zh_facts, en_facts = (
                [f"{silent} 分钟无数据{why}"],
                [f"no data for {silent} min{why_en}"],
            )
        else:
            zh_facts, en_facts = ["恢复计数"], ["counting again"]
    else:
        zh_place, en_place = f"{site.name.zh} {zone.zh}", _en_place(site.name, zone)
        zh_facts, en_facts = _facts(site, facts, firing=firing)
    zh_body, en_body = ", ".join(zh_facts), ", ".join(en_facts)
    if not firing:
        return AlertText(
            zh=f"已解除 {zh_place}: {zh_body} (低于 {zh_limit})",
            en=f"Cleared: {en_place}: {en_body} (below {en_limit})",
        )
    when_zh = when_en = ""
    if since is not None:
        local = since.astimezone(ZoneInfo(tz)).strftime("%H:%M")
        when_zh, when_en = f", 自 {local}", f", since {local}"
    action = suggested_action(site, rule)
    return AlertText(
        zh=f"{zh_place}: {zh_body} (阈值 {zh_limit}{when_zh}) — 建议: {action.zh}",
        en=f"{en_place}: {en_body} (threshold {en_limit}{when_en}) — {action.en}",
    )
