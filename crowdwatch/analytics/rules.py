"""Which alert rules apply where, and the value each rule measures.

A rule is evaluated per zone: the deduplication key is ``site/zone/rule``, so one crowded
section of a beach fires once however many evaluations see it crowded.
"""

from __future__ import annotations

from crowdwatch.contracts.config import AlertMetric, AlertRule, Site


def alert_key(site_id: str, zone_id: str | None, rule_id: str) -> str:
    """The deduplication key of an alert: ``site/zone/rule`` (``site/-/rule`` for a whole site).

    Example:
        >>> alert_key("beach-moon", "north", "beach-full")
        'beach-moon/north/beach-full'
    """
    return f"{site_id}/{zone_id or '-'}/{rule_id}"


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


def metric_value(metric: AlertMetric, count: int, capacity: int) -> float:
    """The value a rule compares with its thresholds.

    Args:
        metric: what the rule measures.
        count: people in the zone now.
        capacity: the zone's capacity (the site's when the zone has none).

    Returns:
        ``count / capacity`` for occupancy_ratio, ``count`` for people.
    """
    if metric is AlertMetric.OCCUPANCY_RATIO:
        return count / capacity
    return float(count)


def clear_threshold(rule: AlertRule) -> float:
    """The value below which a firing alert resolves (``clear_at``, default ``fire_at``)."""
    return rule.fire_at if rule.clear_at is None else rule.clear_at
