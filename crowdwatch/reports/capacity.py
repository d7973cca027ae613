"""Carrying capacity of zones and sites, and the warning level a count stands at.

Instantaneous capacity = usable area / area per person; daily capacity = instantaneous
capacity x turnover, turnover = opening hours / mean stay (the formulas of GB/T 50298-2018 and
LB/T 034-2014; defaults in :mod:`crowdwatch.contracts.reports`).

A zone's capacity from its ground area is :mod:`crowdwatch.contracts.ground`'s, the same the
alert engine and the pages divide by.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from crowdwatch.contracts.config import CrowdwatchConfig, Site
from crowdwatch.contracts.ground import area_capacity
from crowdwatch.contracts.reports import ReportsConfig, WarningLevel


@dataclass(frozen=True, slots=True)
class ZoneCapacity:
    site_id: str
    zone_id: str
    capacity: int | None
    """People at 100 %; None when neither configured nor derivable."""
    source: str
    """``config`` (the zone's own number), ``area`` (area / area per person) or ``none``."""
    area_m2: float | None = None
    m2_per_person: float | None = None


@dataclass(frozen=True, slots=True)
class SiteCapacity:
    site_id: str
    instantaneous: int
    """The site's configured ``capacity``."""
    zones: list[ZoneCapacity]
    opening_hours: float
    mean_stay_min: float | None
    """None for a kind without a visit estimate (by default bus stops and roads)."""

    @property
    def turnover(self) -> float | None:
        if self.mean_stay_min is None:
            return None
        return self.opening_hours * 60 / self.mean_stay_min

    @property
    def daily(self) -> int | None:
        """Daily capacity = instantaneous x turnover (LB/T 034-2014)."""
        turnover = self.turnover
        return None if turnover is None else math.floor(self.instantaneous * turnover)


def mean_stay_min(reports: ReportsConfig, site: Site) -> float | None:
    """The site's own mean stay, else its kind's; None where visits are not estimated."""
    own = reports.site(site.id)
    if own is not None and own.mean_stay_min is not None:
        return own.mean_stay_min
    return reports.mean_stay_min.get(site.kind.value)


def site_capacity(config: CrowdwatchConfig, site: Site) -> SiteCapacity:
    """Every zone's capacity (configured, else from its area) and the site's daily capacity.

    Raises:
        ConfigError: a zone named in ``reports.sites[].zones`` has no area (no calibration
            and no ``area_m2``), or is drawn above the horizon.
    """
    reports = config.reports
    own = reports.site(site.id)
    zones: list[ZoneCapacity] = []
    for camera in site.cameras:
        for zone in camera.zones:
            if zone.capacity is not None:
                zones.append(ZoneCapacity(site.id, zone.id, zone.capacity, "config"))
                continue
            derived = area_capacity(config, site, camera, zone)
            if derived is None:
                zones.append(ZoneCapacity(site.id, zone.id, None, "none"))
                continue
            zones.append(
                ZoneCapacity(
                    site.id,
                    zone.id,
                    derived.capacity,
                    "area",
                    derived.area_m2,
                    derived.m2_per_person,
                )
            )
    opening = own.opening if own is not None and own.opening is not None else reports.opening
    return SiteCapacity(site.id, site.capacity, zones, opening.hours, mean_stay_min(reports, site))


def level_at(ratio: float, levels: list[WarningLevel]) -> WarningLevel | None:
    """The highest level whose share ``ratio`` (count / capacity) reaches, if any."""
    reached = [level for level in levels if ratio >= level.at]
    return reached[-1] if reached else None
