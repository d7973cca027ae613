"""Who stands in which zone: point-in-polygon on the people's feet, no I/O.

Zone polygons live in the config in pixels of the camera's configured ``frame_size``.  A
stream may deliver another resolution (a substream, a re-encoded file), so a
:class:`ZoneOccupancy` is built for the real frame size and scales its polygon once.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from crowdwatch.contracts.config import Zone
from crowdwatch.edge.detections import Detections

EDGE_TOLERANCE_PX = 1e-6
"""A point this close to a polygon edge counts as inside (float noise from scaling)."""


def points_in_polygon(
    points: NDArray[np.floating], polygon: NDArray[np.floating]
) -> NDArray[np.bool_]:
    """Vectorised point-in-polygon test (even-odd rule); points on an edge count as inside.

    Args:
        points: ``(N, 2)`` ``x, y`` points.
        polygon: ``(M, 2)`` vertices in order, ``M >= 3`` (repeating the first at the end is harmless).

    Returns:
        ``(N,)`` bool mask, true for points inside or on the boundary.

    Example:
        >>> square = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], dtype=float)
        >>> points_in_polygon(np.array([[5, 5], [10, 5], [11, 5]], dtype=float), square).tolist()
        [True, True, False]
    """
    if len(points) == 0:
        return np.zeros(0, dtype=np.bool_)
    px = points[:, 0:1].astype(np.float64)  # (N, 1) against (1, M) edges
    py = points[:, 1:2].astype(np.float64)
    x1, y1 = polygon[:, 0][None, :], polygon[:, 1][None, :]
    x2, y2 = np.roll(polygon[:, 0], -1)[None, :], np.roll(polygon[:, 1], -1)[None, :]

    # Ray casting towards +x: an odd number of edge crossings right of the point is inside.
    straddles = (y1 > py) != (y2 > py)
    dy = np.where(straddles, y2 - y1, 1.0)  # no division by zero on horizontal edges
    x_cross = x1 + (py - y1) * (x2 - x1) / dy
    inside = (np.count_nonzero(straddles & (px < x_cross), axis=1) % 2) == 1

    # The even-odd rule is arbitrary on the boundary (a person on the line of two adjacent
    # zones would be counted in one of them by chance); count them in every zone they touch.
    cross = (x2 - x1) * (py - y1) - (y2 - y1) * (px - x1)
    length = np.hypot(x2 - x1, y2 - y1)
    tol = EDGE_TOLERANCE_PX
    on_edge = (
        (np.abs(cross) <= tol * np.maximum(length, 1.0))
        & (px >= np.minimum(x1, x2) - tol)
        & (px <= np.maximum(x1, x2) + tol)
        & (py >= np.minimum(y1, y2) - tol)
        & (py <= np.maximum(y1, y2) + tol)
    )
    return np.asarray(inside | on_edge.any(axis=1), dtype=np.bool_)


class ZoneOccupancy:
    """People standing in one zone of one camera, frame by frame.

    Args:
        zone: the zone from the config (polygon in pixels of ``config_frame_size``).
        config_frame_size: the camera's configured ``frame_size`` (width, height).
        frame_size: the stream's real frame size; the polygon is scaled when it differs.

    Example:
        >>> from crowdwatch.contracts.config import LocalizedName
        >>> zone = Zone(id="platform", name=LocalizedName(zh="站台", en="Platform"),
        ...             polygon=[(0, 50), (100, 50), (100, 100), (0, 100)])
        >>> occupancy = ZoneOccupancy(zone, (100, 100), frame_size=(200, 200))
        >>> occupancy.polygon.tolist()
        [[0.0, 100.0], [200.0, 100.0], [200.0, 200.0], [0.0, 200.0]]
    """

    def __init__(
        self,
        zone: Zone,
        config_frame_size: tuple[int, int],
        frame_size: tuple[int, int] | None = None,
    ) -> None:
        self.zone_id = zone.id
        self.frame_size = frame_size or config_frame_size
        sx = self.frame_size[0] / config_frame_size[0]
        sy = self.frame_size[1] / config_frame_size[1]
        self.polygon: NDArray[np.float64] = np.asarray(zone.polygon, dtype=np.float64) * [sx, sy]
        self.current_count = 0

    def trigger(self, detections: Detections) -> NDArray[np.bool_]:
        """Which detections stand in the zone; updates :attr:`current_count`.

        Args:
            detections: the frame's people, in pixels of :attr:`frame_size`.

        Returns:
            ``(N,)`` bool mask over ``detections``.
        """
        mask = points_in_polygon(detections.anchors(), self.polygon)
        self.current_count = int(np.count_nonzero(mask))
        return mask
