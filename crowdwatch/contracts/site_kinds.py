"""Every site kind, declared once: what it counts, its defaults, rules, simulator curve, display.

A site's ``kind`` decides how the rest of crowdwatch treats it; each kind's :class:`KindSpec`
in :data:`SITE_KINDS` is the one place that says so:

- **counts**: how a count is said in alert texts ("85 waiting" at a stop, "85 people" elsewhere);
- **defaults**: the suggested action of its alerts, its standard alert rules (added to a
  config with ``alerts.kind_rules: true``);
- **simulator**: its holiday curve (share of capacity by local hour), how long a person stays,
  and whether traffic passes through its counting lines (a road) or people come and go;
- **display**: its names (Grafana's "people per kind" legend, the phone page's headings, in
  :data:`KIND_ORDER`) and which extra view lists it (the wall's and dispatcher's queues, the
  wall's beach sections).

Kind-only settings sit under the kind's own key of a site (``bus_stop: {routes: [K1]}``), not
on every site.  Pure data and pure functions: every component, the edge included, may
import it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from crowdwatch.contracts.config import LocalizedName, RoadOptions, Site, SiteKind
from crowdwatch.contracts.congestion import CongestionLevel, SpeedThresholds, speed_from_density
from crowdwatch.contracts.reports import DEFAULT_LEVELS

SPILLBACK_SHARE = 0.9
"""An approach's queue at this share of its length or more fills it: the last stopped vehicle
within a tenth of the approach's length of its upstream end (a vehicle's anchor is inside the
zone, so 1.0 is never measured). The road kind's spill-back rule fires at it, and the pages
and Grafana mark such a queue "spill-back"."""


class KindView(StrEnum):
    """The extra view a kind's sites get besides the list of every site."""

    QUEUE = "queue"
    """a waiting line: the wall's and the dispatcher's queue tables (people waiting, longest
    wait)"""
    SECTIONS = "sections"
    """sections of one place: the wall's table of every zone"""
    TRAFFIC = "traffic"
    """a road: the wall's traffic table (congestion level, mean speed, vehicles)"""
    SITE = "site"
    """nothing besides the site list"""


@dataclass(frozen=True, slots=True)
class KindSpec:
    """What one site kind means.

    Args:
        kind: the config's ``kind`` value.
        name: one site of the kind ("公交站" / "bus stop").
        plural: a heading over its sites ("公交站" / "Bus stops").
        count_text: a count in alert texts; ``{n}`` is the number ("{n} 人候车" / "{n} waiting").
        action: the suggested action of its alerts when the rule gives none; ``{routes}`` is
            a bus stop's routes.
        rules: its standard alert rules (config dicts, ``site_kinds`` set to the kind).
        curve: the expected share of capacity over a holiday, by local hour (0-24).
        dwell_h: how long a person stays, in hours (the simulator's line crossings).
        passes_through: traffic passes its counting lines (a road) rather than people
            arriving and leaving.
        view: the extra view its sites get on the pages.
        vehicles: its cameras count motor vehicles and their speed (a road): the simulator
            sends ``vehicles`` and ``mean_speed_kmh``, the pages show its congestion level.
    """

    kind: SiteKind
    name: LocalizedName
    plural: LocalizedName
    count_text: LocalizedName
    action: LocalizedName
    rules: tuple[Mapping[str, Any], ...]
    curve: Callable[[float], float]
    dwell_h: float
    passes_through: bool
    view: KindView
    vehicles: bool = False

    def describe(self) -> dict[str, Any]:
        """The kind as the pages read it (``/api/state``'s ``kinds``)."""
        return {
            "id": self.kind.value,
            "name": {"zh": self.name.zh, "en": self.name.en},
            "plural": {"zh": self.plural.zh, "en": self.plural.en},
            "view": self.view.value,
            "vehicles": self.vehicles,
        }


# --- Holiday curves: shapes drawn from how a coastal district fills on a golden-week day ---
# Sums of smooth bumps (logistic edges and Gaussians) keep the curves continuous, so a
# compressed-time demo never jumps.


def _bump(hour: float, centre: float, width: float) -> float:
    return math.exp(-0.5 * ((hour - centre) / width) ** 2)


def _rise(hour: float, centre: float, width: float) -> float:
    return 1.0 / (1.0 + math.exp(-(hour - centre) / width))


def _beach(h: float) -> float:
    """Dawn ~3%, rising from 9, plateau 80-95% from 11 to 16, down by 19."""
    plateau = _rise(h, 9.8, 0.6) * _rise(-h, -17.6, 0.7)
    return 0.03 + 0.85 * plateau + 0.05 * _bump(h, 14.0, 1.5)


def _bus_stop(h: float) -> float:
    """Arrivals ~9-11 (moderate), the big evening queue home 16-19."""
    arrivals = 0.35 * _bump(h, 10.0, 0.9)
    midday = 0.12 * _bump(h, 13.5, 2.5)
    queue_home = 0.9 * _bump(h, 17.5, 1.2)
    return 0.03 + arrivals + midday + queue_home


def _road(h: float) -> float:
    """Inbound morning peak ~9:30, outbound evening peak ~17:30."""
    inbound = 0.7 * _bump(h, 9.5, 1.1)
    daytime = 0.3 * _bump(h, 13.5, 3.0)
    outbound = 0.8 * _bump(h, 17.6, 1.2)
    return 0.05 + inbound + daytime + outbound


def _scenic_spot(h: float) -> float:
    """Afternoon peak ~15:30, a smaller sunset bump."""
    return 0.04 + 0.75 * _bump(h, 15.5, 2.0) + 0.15 * _bump(h, 18.6, 0.6)


def _names(zh: str, en: str) -> LocalizedName:
    return LocalizedName(zh=zh, en=en)


_PEOPLE = _names("{n} 人", "{n} people")

LEVEL_SEVERITY = {"yellow": "info", "orange": "warning", "red": "critical"}
"""The alert severity of each rung of the warning ladder (LB/T 034-2014's colours)."""


def capacity_level_rules(prefix: str) -> tuple[dict[str, Any], ...]:
    """The warning levels as alert rules: ``{prefix}-yellow`` / ``-orange`` / ``-red`` at 80 /
    90 / 100 % of capacity (the ladder the daily report counts minutes above,
    :data:`crowdwatch.contracts.reports.DEFAULT_LEVELS`), each clearing 10 points lower so a
    crowd hovering on a rung does not flap.  The share is of the zone's configured capacity
    (the site's where the zone has none), as every occupancy rule reads it.
    """
    return tuple(
        {
            "id": f"{prefix}-{level.id}",
            "metric": "occupancy_ratio",
            "fire_at": level.at,
            "clear_at": round(level.at - 0.1, 2),
            "for_s": 60,
            "severity": LEVEL_SEVERITY[level.id],
        }
        for level in DEFAULT_LEVELS
    )


SITE_KINDS: dict[SiteKind, KindSpec] = {
    spec.kind: spec
    for spec in (
        KindSpec(
            kind=SiteKind.BEACH,
            name=_names("海滩", "beach"),
            plural=_names("海滩", "Beaches"),
            count_text=_PEOPLE,
            action=_names(
                "暂停入场, 引导游客去其他区域", "stop entry, guide people to other sections"
            ),
            rules=(
                *capacity_level_rules("beach"),
                {
                    "id": "beach-filling",
                    "metric": "forecast_occupancy",
                    "fire_at": 1.0,
                    "clear_at": 0.85,
                    "horizon_min": 20,
                    "for_s": 60,
                    "severity": "warning",
                },
            ),
            curve=_beach,
            dwell_h=3.0,
            passes_through=False,
            view=KindView.SECTIONS,
        ),
        KindSpec(
            kind=SiteKind.BUS_STOP,
            name=_names("公交站", "bus stop"),
            plural=_names("公交站", "Bus stops"),
            count_text=_names("{n} 人候车", "{n} waiting"),
            action=_names("加派 {routes} 路车辆", "add buses on route {routes}"),
            rules=(
                {
                    "id": "stop-crowded",
                    "metric": "occupancy_ratio",
                    "fire_at": 0.85,
                    "clear_at": 0.6,
                    "for_s": 0,
                    "severity": "warning",
                },
                {
                    "id": "stop-long-wait",
                    "metric": "longest_wait_min",
                    "fire_at": 15,
                    "clear_at": 8,
                    "for_s": 30,
                    "keep_firing_for_s": 120,
                    "severity": "warning",
                },
            ),
            curve=_bus_stop,
            dwell_h=0.2,
            passes_through=False,
            view=KindView.QUEUE,
        ),
        KindSpec(
            kind=SiteKind.SCENIC_SPOT,
            name=_names("景点", "scenic spot"),
            plural=_names("景点", "Scenic spots"),
            count_text=_PEOPLE,
            action=_names("限流", "limit entry"),
            # LB/T 034-2014: controls start at 80% of the instantaneous capacity.
            rules=capacity_level_rules("spot"),
            curve=_scenic_spot,
            dwell_h=0.7,
            passes_through=False,
            view=KindView.SITE,
        ),
        KindSpec(
            kind=SiteKind.ROAD,
            name=_names("道路", "road"),
            plural=_names("道路", "Roads"),
            count_text=_PEOPLE,
            action=_names("疏导交通, 必要时分流", "direct traffic, divert it if needed"),
            # GB/T 33171-2016 levels from the vehicles' mean speed: moderate congestion
            # (中度拥堵, 4) or worse for 5 minutes; resolved below it, held 2 minutes
            # against a section that wobbles between light and moderate.
            rules=(
                {
                    "id": "road-congested",
                    "metric": "congestion_level",
                    "fire_at": 4,
                    "clear_at": 4,
                    "for_s": 300,
                    "keep_firing_for_s": 120,
                    "severity": "warning",
                },
                # A stop line's queue that fills its approach (the last stopped vehicle
                # within a tenth of its length of the upstream end: anchors are inside the
                # zone, so 1.0 is never reached) for a minute spills back over the
                # upstream junction; cleared once it is back under 70%.
                {
                    "id": "road-queue-spillback",
                    "metric": "queue_spillback",
                    "fire_at": SPILLBACK_SHARE,
                    "clear_at": 0.7,
                    "for_s": 60,
                    "keep_firing_for_s": 60,
                    "severity": "warning",
                    "action": {
                        "zh": "延长绿灯放行排队车辆, 上游路口分流",
                        "en": "lengthen the green to clear the queue, divert traffic upstream",
                    },
                },
            ),
            curve=_road,
            dwell_h=0.03,
            passes_through=True,
            view=KindView.TRAFFIC,
            vehicles=True,
        ),
    )
}
"""Every kind, in display order (the phone page's sections, Grafana's legend)."""

KIND_ORDER: tuple[SiteKind, ...] = tuple(SITE_KINDS)


def spec(kind: SiteKind) -> KindSpec:
    """The declaration of ``kind`` (every :class:`SiteKind` has one; a test checks it)."""
    return SITE_KINDS[kind]


def bus_routes(site: Site) -> list[str]:
    """The bus routes serving ``site``: its ``bus_stop.routes``; none for other kinds."""
    return list(site.bus_stop.routes) if site.bus_stop is not None else []


def road_thresholds(site: Site) -> SpeedThresholds:
    """The congestion thresholds of a road site: its ``road`` settings, else an arterial's."""
    return (site.road or RoadOptions()).thresholds()


def road_level(
    site: Site,
    speed_kmh: float | None,
    vehicles: int | None,
    density: float | None = None,
) -> CongestionLevel | None:
    """A road section's congestion level now, as the alert engine and the pages read it.

    Args:
        site: the road (its ``road`` thresholds).
        speed_kmh: its vehicles' mean speed; ``None`` when none was measured.
        vehicles: vehicles on it; ``None`` when not counted (or no fresh count).
        density: its vehicles per km per lane; ``None`` where the zone has no lanes.

    Returns:
        The level of the speed; without one, the level of the density by Greenshields' rule
        (:func:`~crowdwatch.contracts.congestion.speed_from_density`: a model, and
        :func:`level_source` says so); smooth for an empty road (no traffic is no jam);
        ``None`` for vehicles with neither (no data, never a jam and never a clear road).
    """
    thresholds = road_thresholds(site)
    if speed_kmh is not None:
        return thresholds.level(speed_kmh)
    if density is not None:
        return thresholds.level(speed_from_density(density, thresholds))
    if vehicles == 0:
        return CongestionLevel.SMOOTH
    return None


def level_source(speed_kmh: float | None, density: float | None) -> str | None:
    """What :func:`road_level` graded: ``speed`` (measured), ``density`` (Greenshields'
    model) or ``None`` (neither: an empty road or no data)."""
    if speed_kmh is not None:
        return LEVEL_SOURCE_SPEED
    return LEVEL_SOURCE_DENSITY if density is not None else None


LEVEL_SOURCE_SPEED = "speed"
LEVEL_SOURCE_DENSITY = "density"
DENSITY_SOURCE_TEXT = LocalizedName(zh="按密度推算, 模型估计", en="from density, a model")
"""How the alert texts and the pages say a level came from density, not a measured speed."""


def kind_rules(kinds: set[SiteKind]) -> list[dict[str, Any]]:
    """The standard rules of ``kinds`` as config dicts, each limited to its kind."""
    return [
        dict(rule) | {"site_kinds": [kind.value]}
        for kind, declared in SITE_KINDS.items()
        if kind in kinds
        for rule in declared.rules
    ]
