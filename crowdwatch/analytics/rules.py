"""Which alert rules apply where, with which thresholds, and the value each rule measures.

A rule is written per site kind (``site_kinds``) and narrowed or tuned per site and zone by
its ``overrides`` (the first override whose sites and zones match wins).  Crowd rules are
evaluated per zone: the deduplication key is ``site/zone/rule``, so one crowded section of a
beach fires once however many evaluations see it crowded.  The ``no_data_s`` rule is
evaluated per camera (key ``site/cam:CAMERA/rule``): one dead camera is one alert.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import assert_never

from crowdwatch.contracts.config import AlertMetric, AlertRule, LocalizedName, Site

CROWD_METRICS = frozenset(AlertMetric) - {AlertMetric.NO_DATA_S}
"""Metrics measured on people in a zone: an offline camera inhibits their notifications."""


def alert_key(site_id: str, zone_id: str | None, rule_id: str) -> str:
    """The deduplication key of an alert: ``site/zone/rule`` (``site/-/rule`` for a whole site).

    Example:
        >>> alert_key("beach-moon", "north", "beach-full")
        'beach-moon/north/beach-full'
    """
    return f"{site_id}/{zone_id or '-'}/{rule_id}"


def camera_alert_key(site_id: str, camera_id: str, rule_id: str) -> str:
    """The key of a per-camera (no data) alert.

    Example:
        >>> camera_alert_key("beach-moon", "cam1", "camera-down")
        'beach-moon/cam:cam1/camera-down'
    """
    return f"{site_id}/cam:{camera_id}/{rule_id}"


def rule_applies(rule: AlertRule, site: Site) -> bool:
    """Whether ``rule`` watches ``site`` (empty ``site_kinds`` / ``sites`` mean every one).

    Args:
        rule: an alert rule of the config.
        site: a configured site.

    Returns:
        True when the site matches both the rule's kinds and its site list.
    """
    kind_ok = not rule.site_kinds or site.kind in rule.site_kinds
    site_ok = not rule.sites or site.id in rule.sites
    return kind_ok and site_ok


@dataclass(frozen=True, slots=True)
class EffectiveRule:
    """A rule as it applies to one site and zone, overrides applied."""

    rule: AlertRule
    fire_at: float
    clear_at: float
    for_s: float
    keep_firing_for_s: float
    severity: str
    action: LocalizedName | None

    @property
    def id(self) -> str:
        return self.rule.id

    @property
    def metric(self) -> AlertMetric:
        return self.rule.metric


def effective_rule(rule: AlertRule, site: Site, zone_id: str | None) -> EffectiveRule | None:
    """The thresholds of ``rule`` at one site and zone, or ``None`` where it does not watch.

    Args:
        rule: an alert rule of the config.
        site: the site.
        zone_id: the zone (``None`` for a per-camera rule: zone lists of overrides then
            never match).

    Returns:
        The rule with the first matching override applied; ``None`` when the rule does not
        apply to the site or an override disables it there.
    """
    if not rule_applies(rule, site):
        return None
    fire_at, clear_at = rule.fire_at, rule.clear_at
    for_s, keep = rule.for_s, rule.keep_firing_for_s
    severity, action = rule.severity, rule.action
    for override in rule.overrides:
        if override.sites and site.id not in override.sites:
            continue
        if override.zones and zone_id not in override.zones:
            continue
        if not override.enabled:
            return None
        fire_at = override.fire_at if override.fire_at is not None else fire_at
        clear_at = override.clear_at if override.clear_at is not None else clear_at
        for_s = override.for_s if override.for_s is not None else for_s
        keep = override.keep_firing_for_s if override.keep_firing_for_s is not None else keep
        severity = override.severity or severity
        action = override.action or action
        break
    return EffectiveRule(
        rule=rule,
        fire_at=fire_at,
        clear_at=fire_at if clear_at is None else min(clear_at, fire_at),
        for_s=for_s,
        keep_firing_for_s=keep,
        severity=severity,
        action=action,
    )


def metric_value(metric: AlertMetric, count: int, capacity: int) -> float:
    """The value of the two count-only metrics (occupancy_ratio, people).

    Args:
        metric: ``occupancy_ratio`` or ``people``.
        count: people in the zone now.
        capacity: the zone's capacity (the site's when the zone has none).

    Returns:
        ``count / capacity`` for occupancy_ratio, ``count`` otherwise.
    """
    match metric:
        case AlertMetric.OCCUPANCY_RATIO:
            return count / capacity
        case AlertMetric.PEOPLE:
            return float(count)
        case (
            AlertMetric.LONGEST_WAIT_MIN
            | AlertMetric.RISE
            | AlertMetric.FORECAST_OCCUPANCY
            | AlertMetric.DENSITY_PER_M2
            | AlertMetric.CONGESTION_LEVEL
            | AlertMetric.QUEUE_SPILLBACK
            | AlertMetric.NO_DATA_S
        ):
            raise ValueError(f"{metric.value} is not a count-only metric")
        case _:
            assert_never(metric)
