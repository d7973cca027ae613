"""People per square metre: zone areas on the ground from a 4-point calibration; no I/O.

A camera's :class:`~crowdwatch.contracts.config.Calibration` gives four image points and
where they lie on the ground in metres.  They define a homography (a plane-to-plane
projection) from the image to the ground; a zone polygon drawn on the ground in the image
maps to a polygon in metres whose area is what the zone holds::

    image (pixels)                 ground (metres)
      a ______ b                    a'___________b'
       /      \\      H (3x3)        |           |      area by the shoelace formula
      /        \\   ---------->      |           |      density = people / area
    d/__________\\c                 d'|___________|c'
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from crowdwatch.contracts.config import Calibration, Zone
from crowdwatch.contracts.errors import ConfigError

MAX_DENSITY = 20.0
"""The message contract's bound; more than this per m² means a wrong calibration."""


class GroundPlane:
    """The image-to-ground homography of one camera.

    Args:
        calibration: the camera's four image points (pixels of ``config_frame_size``) and
            their ground positions in metres.
        config_frame_size: the camera's configured ``frame_size`` (width, height).
        frame_size: the stream's real frame size; the image points are scaled when it differs.

    Example:
        >>> cal = Calibration(image_points=[(0, 0), (100, 0), (100, 100), (0, 100)],
        ...                   ground_points_m=[(0, 0), (10, 0), (10, 10), (0, 10)])
        >>> plane = GroundPlane(cal, (100, 100))
        >>> plane.area_m2(np.array([[0, 0], [50, 0], [50, 50], [0, 50]], dtype=float))
        25.0
    """

    def __init__(
        self,
        calibration: Calibration,
        config_frame_size: tuple[int, int],
        frame_size: tuple[int, int] | None = None,
    ) -> None:
        size = frame_size or config_frame_size
        scale = [size[0] / config_frame_size[0], size[1] / config_frame_size[1]]
        image = (np.asarray(calibration.image_points, dtype=np.float64) * scale).astype(np.float32)
        ground = np.asarray(calibration.ground_points_m, dtype=np.float32)
        homography = np.asarray(cv2.getPerspectiveTransform(image, ground), dtype=np.float64)
        # The homogeneous scale is arbitrary: orient it so that w > 0 on the calibrated ground,
        # then w <= 0 means "on or beyond the horizon" for any point.
        w = np.hstack([image, np.ones((4, 1), dtype=np.float32)]) @ homography[2]
        self.homography: NDArray[np.float64] = homography if w[0] > 0 else -homography

    def to_ground(self, points: NDArray[np.floating]) -> NDArray[np.float64]:
        """Project image points to the ground.

        Args:
            points: ``(N, 2)`` pixels.

        Returns:
            ``(N, 2)`` metres.

        Raises:
            ValueError: a point lies on or above the horizon of the calibrated plane.
        """
        h = np.hstack([np.asarray(points, dtype=np.float64), np.ones((len(points), 1))])
        projected = h @ self.homography.T
        w = projected[:, 2]
        # Points behind the horizon project with w <= 0: they are not on the ground at all.
        if np.any(w <= 1e-12):
            raise ValueError("a point lies on or above the horizon of the ground calibration")
        return projected[:, :2] / w[:, None]

    def area_m2(self, polygon: NDArray[np.floating]) -> float:
        """Ground area of an image polygon in square metres.

        Args:
            polygon: ``(M, 2)`` vertices in pixels, in order.

        Returns:
            The area (shoelace formula on the projected vertices).
        """
        ground = self.to_ground(polygon)
        x, y = ground[:, 0], ground[:, 1]
        return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def zone_areas_m2(
    zones: list[Zone],
    calibration: Calibration | None,
    config_frame_size: tuple[int, int],
) -> dict[str, float] | None:
    """Ground area of every zone of a camera, or ``None`` when it is not calibrated.

    Args:
        zones: the camera's zones (polygons in pixels of ``config_frame_size``).
        calibration: the camera's ground calibration.
        config_frame_size: the camera's configured ``frame_size``.

    Returns:
        Square metres per zone id.

    Raises:
        ConfigError: a zone reaches above the horizon or has no area on the ground.
    """
    if calibration is None:
        return None
    plane = GroundPlane(calibration, config_frame_size)
    areas = {}
    for zone in zones:
        try:
            area = plane.area_m2(np.asarray(zone.polygon, dtype=np.float64))
        except ValueError as exc:
            raise ConfigError(f"zone {zone.id!r}: {exc}; draw it on the ground") from exc
        if area <= 1e-6:
            raise ConfigError(f"zone {zone.id!r} has no area on the calibrated ground")
        areas[zone.id] = area
    return areas


def density_per_m2(count: float, area_m2: float) -> float:
    """People per square metre, capped at the contract's bound.

    Args:
        count: people in the zone.
        area_m2: the zone's ground area.

    Returns:
        ``count / area_m2`` rounded to 3 decimals, at most :data:`MAX_DENSITY`.
    """
    return round(min(count / area_m2, MAX_DENSITY), 3)
