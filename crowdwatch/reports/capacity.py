"""Carrying capacity of zones and sites, and the warning level a count stands at.

Instantaneous capacity = usable area / area per person; daily capacity = instantaneous
capacity x turnover, turnover = opening hours / mean stay (the formulas of GB/T 50298-2018 and
LB/T 034-2014; defaults in :mod:`crowdwatch.contracts.reports`).

The zone's ground area comes from the camera's calibration (a homography, as the edge's
density uses it), computed here in plain Python so the server needs no OpenCV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from crowdwatch.contracts.config import Calibration, CrowdwatchConfig, Point, Site
from crowdwatch.contracts.errors import ConfigError
from crowdwatch.contracts.reports import ReportsConfig, WarningLevel


def _solve(matrix: list[list[float]], rhs: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting (8x8 here)."""
    n = len(rhs)
    a = [[*row, rhs[i]] for i, row in enumerate(matrix)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(a[r][col]))
        if abs(a[pivot][col]) < 1e-12:
            raise ValueError("the calibration points do not define a plane")
        a[col], a[pivot] = a[pivot], a[col]
        for r in range(n):
            if r != col:
                factor = a[r][col] / a[col][col]
                a[r] = [x - factor * y for x, y in zip(a[r], a[col], strict=True)]
    return [a[i][n] / a[i][i] for i in range(n)]


def homography(image: list[Point], ground: list[Point]) -> list[float]:
    """The 3x3 image-to-ground homography (row-major, h33 = 1) from 4 point pairs."""
    matrix: list[list[float]] = []
    rhs: list[float] = []
    for (x, y), (u, v) in zip(image, ground, strict=True):
        matrix.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rhs.append(u)
        matrix.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs.append(v)
    return [*_solve(matrix, rhs), 1.0]


def ground_area_m2(polygon: list[Point], calibration: Calibration) -> float:
    """Ground area of an image polygon (pixels of the camera's ``frame_size``), in m².

    Raises:
        ValueError: a vertex lies on or beyond the horizon of the calibrated ground.

    Example:
        >>> cal = Calibration(image_points=[(0, 0), (100, 0), (100, 100), (0, 100)],
        ...                   ground_points_m=[(0, 0), (10, 0), (10, 10), (0, 10)])
        >>> ground_area_m2([(0, 0), (50, 0), (50, 50), (0, 50)], cal)
        25.0
    """
    h = homography(calibration.image_points, calibration.ground_points_m)
    w0 = h[6] * calibration.image_points[0][0] + h[7] * calibration.image_points[0][1] + h[8]
    sign = 1.0 if w0 > 0 else -1.0
    ground: list[Point] = []
    for x, y in polygon:
        w = (h[6] * x + h[7] * y + h[8]) * sign
        if w <= 1e-12:
            raise ValueError("a point lies on or above the horizon of the ground calibration")
        ground.append(
            ((h[0] * x + h[1] * y + h[2]) * sign / w, (h[3] * x + h[4] * y + h[5]) * sign / w)
        )
    twice = sum(
        a[0] * b[1] - b[0] * a[1] for a, b in zip(ground, ground[1:] + ground[:1], strict=True)
    )
    return round(abs(twice) / 2, 6)


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
    grounds = {z.zone: z for z in own.zones} if own is not None else {}
    zones: list[ZoneCapacity] = []
    for camera in site.cameras:
        for zone in camera.zones:
            if zone.capacity is not None:
                zones.append(ZoneCapacity(site.id, zone.id, zone.capacity, "config"))
                continue
            ground = grounds.get(zone.id)
            if ground is None:
                zones.append(ZoneCapacity(site.id, zone.id, None, "none"))
                continue
            area = ground.area_m2
            if area is None:
                if camera.calibration is None:
                    raise ConfigError(
                        f"reports: zone {site.id}/{zone.id} needs an area: give area_m2 or "
                        f"calibrate camera {camera.id!r}"
                    )
                try:
                    area = ground_area_m2(zone.polygon, camera.calibration)
                except ValueError as exc:
                    raise ConfigError(f"reports: zone {site.id}/{zone.id}: {exc}") from exc
            per_person = reports.area_per_person_m2[ground.ground]
            zones.append(
                ZoneCapacity(
                    site.id,
                    zone.id,
                    max(1, math.floor(area / per_person)),
                    "area",
                    area,
                    per_person,
                )
            )
    opening = own.opening if own is not None and own.opening is not None else reports.opening
    return SiteCapacity(site.id, site.capacity, zones, opening.hours, mean_stay_min(reports, site))


def level_at(ratio: float, levels: list[WarningLevel]) -> WarningLevel | None:
    """The highest level whose share ``ratio`` (count / capacity) reaches, if any."""
    reached = [level for level in levels if ratio >= level.at]
    return reached[-1] if reached else None
