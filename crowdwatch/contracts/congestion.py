"""Congestion level of a road section, five levels as in GB/T 33171-2016; pure, no I/O.

A contract: the alert engine grades its rules with it, the simulator derives its speeds
from the same thresholds and the pages colour a road by the same levels, so every component
may import it.

China's urban traffic evaluation standard (GB/T 33171-2016, 城市交通运行状况评价规范) grades a
road section by its mean travel speed, with thresholds by road class (km/h)::

    level            畅通 smooth  基本畅通 mostly  轻度拥堵 light  中度拥堵 moderate  严重拥堵 severe
    expressway       > 65         50-65            35-50           20-35              <= 20
    arterial         > 40         30-40            20-30           15-20              <= 15
    secondary/branch > 35         25-35            15-25           10-15              <= 10

A boundary speed belongs to the worse level's side only at the bottom (``<= 20`` is severe
on an expressway) and to the better level above it (exactly 65 is "mostly smooth", the
standard's ``50-65``).  Thresholds are configurable per road (:class:`SpeedThresholds`).

**Without a speed** (a camera with no ground calibration) the level comes from density by
a stated rule, Greenshields' linear speed-density model: ``speed = free_flow_kmh * (1 -
density / jam_density)`` with the road class's free-flow speed and a jam density of 150
vehicles per km per lane (a queue of cars 6.7 m apart); that equivalent speed is graded
with the same thresholds.  It is a model, not a measurement, and says so (``source``).

**Hysteresis** (:class:`CongestionLevels`): a section changes level only when its speed is
past the boundary by ``margin_kmh`` *and* has stayed at the new level for ``hold_s``, so a
speed wobbling around 35 km/h does not flip the wall between two colours every minute.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum


class RoadClass(StrEnum):
    """Road classes of GB/T 33171-2016 (secondary and branch roads share thresholds)."""

    EXPRESSWAY = "expressway"
    ARTERIAL = "arterial"
    SECONDARY = "secondary"


class CongestionLevel(IntEnum):
    """The five levels, worse is larger (so ``level >= MODERATE`` reads as in a rule)."""

    SMOOTH = 1
    MOSTLY_SMOOTH = 2
    LIGHT = 3
    MODERATE = 4
    SEVERE = 5

    @property
    def zh(self) -> str:
        """The standard's name of the level."""
        return _NAMES_ZH[self]

    @property
    def en(self) -> str:
        """The level in English."""
        return _NAMES_EN[self]


_NAMES_ZH = {
    CongestionLevel.SMOOTH: "畅通",
    CongestionLevel.MOSTLY_SMOOTH: "基本畅通",
    CongestionLevel.LIGHT: "轻度拥堵",
    CongestionLevel.MODERATE: "中度拥堵",
    CongestionLevel.SEVERE: "严重拥堵",
}
_NAMES_EN = {
    CongestionLevel.SMOOTH: "smooth",
    CongestionLevel.MOSTLY_SMOOTH: "mostly smooth",
    CongestionLevel.LIGHT: "light congestion",
    CongestionLevel.MODERATE: "moderate congestion",
    CongestionLevel.SEVERE: "severe congestion",
}


@dataclass(frozen=True, slots=True)
class SpeedThresholds:
    """The four boundary speeds of a road, km/h, from smooth down to severe.

    Args:
        bounds: ``(a, b, c, d)``, strictly falling: above ``a`` smooth, ``(b, a]`` mostly
            smooth, ``(c, b]`` light, ``(d, c]`` moderate, ``<= d`` severe.
        free_flow_kmh: the road's free-flow speed, for the density rule.

    Raises:
        ValueError: the bounds are not four strictly falling positive speeds, or the
            free-flow speed is not above the first.
    """

    bounds: tuple[float, float, float, float]
    free_flow_kmh: float

    def __post_init__(self) -> None:
        a, b, c, d = self.bounds
        if not a > b > c > d > 0:
            raise ValueError(
                f"congestion thresholds: expected four falling speeds (smooth above the first, "
                f"severe at or below the last), e.g. [65, 50, 35, 20], got {list(self.bounds)}"
            )
        if self.free_flow_kmh <= a:
            raise ValueError(
                f"congestion thresholds: free_flow_kmh must be above the smooth threshold "
                f"{a:g}, got {self.free_flow_kmh:g}"
            )

    def level(self, speed_kmh: float) -> CongestionLevel:
        """The level of a mean travel speed.

        Example:
            >>> GB_T_33171[RoadClass.EXPRESSWAY].level(65.0).zh
            '基本畅通'
        """
        for level, bound in zip(CongestionLevel, self.bounds, strict=False):
            if speed_kmh > bound:
                return level
        return CongestionLevel.SEVERE


GB_T_33171: dict[RoadClass, SpeedThresholds] = {
    RoadClass.EXPRESSWAY: SpeedThresholds((65, 50, 35, 20), free_flow_kmh=100),
    RoadClass.ARTERIAL: SpeedThresholds((40, 30, 20, 15), free_flow_kmh=60),
    RoadClass.SECONDARY: SpeedThresholds((35, 25, 15, 10), free_flow_kmh=50),
}
"""The standard's thresholds by road class, with typical free-flow speeds (density rule)."""

JAM_DENSITY_PER_KM_LANE = 150.0
"""Vehicles per km per lane of a standing queue (6.7 m a car): the density rule's jam."""


def speed_from_density(
    density_per_km_lane: float,
    thresholds: SpeedThresholds,
    jam_density: float = JAM_DENSITY_PER_KM_LANE,
) -> float:
    """Greenshields' equivalent speed of a density, for sections with no measured speed.

    Args:
        density_per_km_lane: vehicles per km per lane (occupancy over the zone's length).
        thresholds: the road's thresholds (its free-flow speed).
        jam_density: vehicles per km per lane at a standstill.

    Returns:
        ``free_flow * (1 - density / jam)``, clipped to ``[0, free_flow]``.

    Raises:
        ValueError: a negative density or a jam density that is not positive.

    Example:
        >>> speed_from_density(75.0, GB_T_33171[RoadClass.ARTERIAL])
        30.0
    """
    if density_per_km_lane < 0:
        raise ValueError(
            f"density: expected vehicles per km per lane >= 0, got {density_per_km_lane}"
        )
    if jam_density <= 0:
        raise ValueError(f"jam_density: expected vehicles per km per lane > 0, got {jam_density}")
    ratio = min(density_per_km_lane / jam_density, 1.0)
    return thresholds.free_flow_kmh * (1.0 - ratio)


@dataclass(frozen=True, slots=True)
class SectionLevel:
    """A road section's level now, and what it was graded from."""

    level: CongestionLevel
    speed_kmh: float
    """the measured mean travel speed, or the density rule's equivalent speed"""
    source: str
    """``speed`` (measured) or ``density`` (Greenshields' rule, no calibration)"""
    since: float
    """when the section took this level (the caller's clock, seconds)"""


class CongestionLevels:
    """The level of one road section over time, with hysteresis.

    Args:
        thresholds: the road's thresholds (``GB_T_33171[road_class]`` or its own).
        margin_kmh: the speed must be this far past a boundary to change level.
        hold_s: and the new level must hold this long (the caller's clock) first.

    Example:
        >>> levels = CongestionLevels(GB_T_33171[RoadClass.EXPRESSWAY], hold_s=0)
        >>> [levels.update_speed(v, ts=t).level.zh for t, v in enumerate([70, 64, 62, 30])]
        ['畅通', '畅通', '基本畅通', '中度拥堵']
    """

    def __init__(
        self, thresholds: SpeedThresholds, margin_kmh: float = 2.0, hold_s: float = 120.0
    ) -> None:
        if margin_kmh < 0 or hold_s < 0:
            raise ValueError(
                f"hysteresis: expected margin_kmh >= 0 and hold_s >= 0, got {margin_kmh}, {hold_s}"
            )
        self.thresholds = thresholds
        self.margin_kmh = margin_kmh
        self.hold_s = hold_s
        self.current: SectionLevel | None = None
        self._candidate: tuple[CongestionLevel, float] | None = None  # level, first seen

    def update_speed(self, speed_kmh: float, ts: float) -> SectionLevel:
        """Grade a measured mean travel speed (km/h) at time ``ts`` (seconds)."""
        return self._update(speed_kmh, "speed", ts)

    def update_density(self, density_per_km_lane: float, ts: float) -> SectionLevel:
        """Grade a density (vehicles per km per lane) by the Greenshields rule at ``ts``."""
        return self._update(speed_from_density(density_per_km_lane, self.thresholds), "density", ts)

    def _update(self, speed: float, source: str, ts: float) -> SectionLevel:
        current = self.current
        if current is None:
            self.current = SectionLevel(self.thresholds.level(speed), speed, source, ts)
            return self.current
        # The level the speed reaches even with the margin against the move.
        worse = self.thresholds.level(speed + self.margin_kmh)
        better = self.thresholds.level(speed - self.margin_kmh)
        target = worse if worse > current.level else better if better < current.level else None
        if target is None:
            self._candidate = None
        elif self._candidate is None or self._candidate[0] != target:
            self._candidate = (target, ts)
        if self._candidate is not None and ts - self._candidate[1] >= self.hold_s:
            self.current = SectionLevel(self._candidate[0], speed, source, ts)
            self._candidate = None
        else:
            self.current = SectionLevel(current.level, speed, source, current.since)
        return self.current
