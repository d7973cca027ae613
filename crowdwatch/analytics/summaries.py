"""One-line alert texts in Chinese and English that a dispatcher reads at a glance.

西湾总站 候车区: 85 人, 达到容量的 106% (阈值 85%)
Xiwan Terminus waiting area: 85 people, 106% of capacity (threshold 85%)
"""

from __future__ import annotations

from dataclasses import dataclass

from crowdwatch.contracts.config import AlertMetric, LocalizedName


@dataclass(frozen=True, slots=True)
class AlertText:
    zh: str
    en: str


def _percent(ratio: float) -> str:
    return f"{round(ratio * 100)}%"


def _en_place(site: LocalizedName, zone: LocalizedName) -> str:
    # "Waiting area" reads as a common noun after the site's proper name; keep acronyms as is.
    name = zone.en
    if len(name) > 1 and name[0].isupper() and name[1].islower():
        name = name[0].lower() + name[1:]
    return f"{site.en} {name}"


def _threshold(metric: AlertMetric, threshold: float) -> tuple[str, str]:
    if metric is AlertMetric.OCCUPANCY_RATIO:
        return _percent(threshold), _percent(threshold)
    return f"{threshold:g} 人", f"{threshold:g} people"


def _measure(count: int, capacity: int, *, reached: bool) -> tuple[str, str]:
    ratio = _percent(count / capacity)
    zh = f"{count} 人, 达到容量的 {ratio}" if reached else f"{count} 人, 容量的 {ratio}"
    return zh, f"{count} people, {ratio} of capacity"


def firing_text(
    site: LocalizedName,
    zone: LocalizedName,
    metric: AlertMetric,
    count: int,
    capacity: int,
    threshold: float,
) -> AlertText:
    """The summary of an alert that starts firing.

    Args:
        site: the site's name.
        zone: the zone's name.
        metric: what the rule measures (decides how the threshold reads).
        count: people in the zone now.
        capacity: the zone's capacity.
        threshold: the rule's ``fire_at``.

    Returns:
        The Chinese and English lines.
    """
    zh_measure, en_measure = _measure(count, capacity, reached=True)
    zh_limit, en_limit = _threshold(metric, threshold)
    return AlertText(
        zh=f"{site.zh} {zone.zh}: {zh_measure} (阈值 {zh_limit})",
        en=f"{_en_place(site, zone)}: {en_measure} (threshold {en_limit})",
    )


def resolved_text(
    site: LocalizedName,
    zone: LocalizedName,
    metric: AlertMetric,
    count: int,
    capacity: int,
    threshold: float,
) -> AlertText:
    """The summary of an alert that clears.

    Args:
        site: the site's name.
        zone: the zone's name.
        metric: what the rule measures.
        count: people in the zone now.
        capacity: the zone's capacity.
        threshold: the rule's clear threshold (``clear_at`` or ``fire_at``).

    Returns:
        The Chinese and English lines, e.g. "已解除 西湾总站 候车区: 40 人, 容量的 50% (低于 60%)".
    """
    zh_measure, en_measure = _measure(count, capacity, reached=False)
    zh_limit, en_limit = _threshold(metric, threshold)
    return AlertText(
        zh=f"已解除 {site.zh} {zone.zh}: {zh_measure} (低于 {zh_limit})",
        en=f"Cleared: {_en_place(site, zone)}: {en_measure} (below {en_limit})",
    )
