"""A zone's capacity from its ground area, where the config gives it no number of its own.

Instantaneous capacity = usable area / area per person (GB/T 50298-2018; the defaults and the
ground kinds in :mod:`crowdwatch.contracts.reports`).  The area is ``reports.sites[].zones[]
.area_m2`` or, without it, the zone's polygon mapped onto the ground by the camera's
calibration (a homography, as the edge's density uses it), in plain Python so no server
process needs OpenCV.

Here, among the contracts, because two processes read it: the daily report
(:mod:`crowdwatch.reports.capacity`) and every occupancy the alert engine and the pages show
(:mod:`crowdwatch.analytics.readings`), so that an alert at 80 % is 80 % of the capacity the
report counts minutes above.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from crowdwatch.contracts.config import Calibration, Camera, CrowdwatchConfig, Point, Site, Zone
from crowdwatch.contracts.errors import ConfigError


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


def to_ground(points: list[Point], calibration: Calibration) -> list[Point]:
    """Ground positions in metres of image points (pixels of the camera's ``frame_size``).

    Raises:
        ValueError: a point lies on or beyond the horizon of the calibrated ground.
    """
    h = homography(calibration.image_points, calibration.ground_points_m)
    w0 = h[6] * calibration.image_points[0][0] + h[7] * calibration.image_points[0][1] + h[8]
    sign = 1.0 if w0 > 0 else -1.0
    ground: list[Point] = []
    for x, y in points:
        w = (h[6] * x + h[7] * y + h[8]) * sign
        if w <= 1e-12:
            raise ValueError("a point lies on or above the horizon of the ground calibration")
        ground.append(
            ((h[0] * x + h[1] * y + h[2]) * sign / w, (h[3] * x + h[4] * y + h[5]) * sign / w)
        )
    return ground


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
    ground = to_ground(polygon, calibration)
    twice = sum(
        a[0] * b[1] - b[0] * a[1] for a, b in zip(ground, ground[1:] + ground[:1], strict=True)
    )
    return round(abs(twice) / 2, 6)


def distance_from_line_m(point: Point, line: tuple[Point, Point]) -> float:
    """Ground distance of a point from the (unbounded) line through two ground points."""
    (ax, ay), (bx, by) = line
    length = math.hypot(bx - ax, by - ay)
    return abs((bx - ax) * (point[1] - ay) - (by - ay) * (point[0] - ax)) / length


def road_length_m(zone: Zone, calibration: Calibration | None) -> float | None:
    """A road zone's length along the road in metres: what its density and its queue are
    measured over.

    Its ``length_m`` when configured.  Else, from the calibration: for a stop line's
    approach, the distance from the stop line back to the zone's farthest corner (the
    upstream end a queue spills over); for any other zone, the long side of the smallest
    rectangle around its ground polygon (a road section is a strip: its long side runs
    along the road).  ``None`` without either.

    Raises:
        ValueError: a vertex lies on or beyond the horizon of the calibrated ground.

    Example:
        >>> cal = Calibration(image_points=[(0, 0), (100, 0), (100, 100), (0, 100)],
        ...                   ground_points_m=[(0, 0), (10, 0), (10, 10), (0, 10)])
        >>> z = Zone(id="z", name={"zh": "路", "en": "road"}, polygon=[(0, 0), (30, 0),
        ...          (30, 100), (0, 100)])
        >>> road_length_m(z, cal)
        10.0
    """
    if zone.length_m is not None:
        return zone.length_m
    if calibration is None:
        return None
    ground = to_ground(list(zone.polygon), calibration)
    if zone.approach is not None:
        stop_line = to_ground(list(zone.approach.stop_line), calibration)
        line = (stop_line[0], stop_line[1])
        return round(max(distance_from_line_m(p, line) for p in ground), 3)
    # The smallest enclosing rectangle has a side along one of the polygon's edges (its
    # hull's, and every hull edge joins two vertices): try each direction.
    best: tuple[float, float] | None = None  # area, long side
    for a in ground:
        for b in ground:
            dx, dy = b[0] - a[0], b[1] - a[1]
            norm = math.hypot(dx, dy)
            if norm < 1e-9:
                continue
            ux, uy = dx / norm, dy / norm
            along = [p[0] * ux + p[1] * uy for p in ground]
            across = [-p[0] * uy + p[1] * ux for p in ground]
            sides = (max(along) - min(along), max(across) - min(across))
            if best is None or sides[0] * sides[1] < best[0] - 1e-9:
                best = (sides[0] * sides[1], max(sides))
    assert best is not None  # a zone has three distinct points at least
    return round(best[1], 3)


def approach_length_m(zone: Zone, calibration: Calibration | None) -> float | None:
    """The length of a stop line's approach, metres, what its queue is a share of; ``None``
    for a zone that is no approach or whose length is unknown (a vertex above the horizon
    too: the edge refuses to start on it, so nothing is ever measured there)."""
    if zone.approach is None:
        return None
    try:
        return road_length_m(zone, calibration) or None
    except ValueError:
        return None


def lane_km(zone: Zone, calibration: Calibration | None) -> float | None:
    """A road zone's lane-kilometres (its length along the road times its ``lanes``): what
    its density in vehicles per km per lane divides by; ``None`` for a zone without lanes.

    Raises:
        ValueError: a vertex lies on or beyond the horizon of the calibrated ground, or the
            zone has lanes but no length (the config refuses that).
    """
    if zone.lanes is None:
        return None
    length = road_length_m(zone, calibration)
    if length is None or length <= 0:
        raise ValueError("it has lanes but no length along the road")
    return length / 1000 * zone.lanes


@dataclass(frozen=True, slots=True)
class AreaCapacity:
    capacity: int
    area_m2: float
    m2_per_person: float


def area_capacity(
    config: CrowdwatchConfig, site: Site, camera: Camera, zone: Zone
) -> AreaCapacity | None:
    """The capacity of a zone from ``reports.sites[].zones[]``' ground, if it names the zone.

    Returns:
        None when the zone is not listed there (its own ``capacity``, if any, still applies).

    Raises:
        ConfigError: the zone is listed but has no area (no ``area_m2``, camera not
            calibrated), or is drawn above the horizon.
    """
    own = config.reports.site(site.id)
    ground = None if own is None else next((z for z in own.zones if z.zone == zone.id), None)
    if ground is None:
        return None
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
    per_person = config.reports.area_per_person_m2[ground.ground]
    return AreaCapacity(max(1, math.floor(area / per_person)), area, per_person)


_last: list[tuple[CrowdwatchConfig, dict[tuple[str, str], int]]] = []
"""The newest config's answer (a process runs one config; a new one replaces it)."""


def derived_capacities(config: CrowdwatchConfig) -> dict[tuple[str, str], int]:
    """``(site_id, zone_id) -> capacity`` of every zone with no ``capacity`` of its own whose
    ground ``reports.sites`` gives; worked out once per config (readings ask on every count).

    A zone whose area cannot be worked out is left out here (its occupancy falls back to the
    site's capacity); the report names the problem when it is drawn.
    """
    if _last and _last[0][0] is config:
        return _last[0][1]
    found: dict[tuple[str, str], int] = {}
    for site, camera in config.cameras():
        for zone in camera.zones:
            if zone.capacity is not None:
                continue
            try:
                derived = area_capacity(config, site, camera, zone)
            except ConfigError:
                continue
            if derived is not None:
                found[(site.id, zone.id)] = derived.capacity
    _last[:] = [(config, found)]
    return found
