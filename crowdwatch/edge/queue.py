"""Queue length at a stop line's approach, in metres on the ground; no I/O.

A road zone marked as an approach (``zones[].approach.stop_line``) is where vehicles queue
for a stop line.  Each frame, its queue is the run of stopped vehicles that starts at the
line::

    stop line |  ▮ ▮  ▮   ▮ ▮             ▮ →→   (▮ stopped, →→ moving)
              |<------ queue ------->|
              0 m     contiguous: each stopped vehicle within max_gap_m of the one before,
                      the first within max_gap_m of the line; a moving or distant one ends it

Its length is the ground distance from the stop line to the farthest vehicle of that run
(the anchor: where the box touches the road).  Robust to what a detector and tracker do:

* a vehicle counts as stopped only with a measured speed at or below ``slow_kmh``
  (:class:`~crowdwatch.edge.speed.TrackSpeeds`: a track followed for ``min_span_s`` at
  least), so a box seen for one frame, or a fresh id after a switch, is not a queued car;
* ``max_gap_m`` spans one missed vehicle in the queue (a standing car takes about 7 m of
  road, bumper to bumper), so one missed box does not cut the queue in two.

The interval's value is the longest queue of its frames: a spill-back lasts, and a queue
that reached the upstream end once in five seconds did reach it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from crowdwatch.contracts.config import Zone
from crowdwatch.edge.density import GroundPlane
from crowdwatch.edge.zones import points_in_polygon


@dataclass(frozen=True, slots=True)
class QueueRules:
    """What makes vehicles a queue (see the module doc).

    Args:
        slow_kmh: a vehicle at or below this speed is standing in the queue.
        max_gap_m: the largest ground distance between neighbours of one queue (and from
            the stop line to the first).
    """

    slow_kmh: float = 5.0
    max_gap_m: float = 15.0

    def __post_init__(self) -> None:
        if self.slow_kmh <= 0 or self.max_gap_m <= 0:
            raise ValueError(
                f"queue rules: expected slow_kmh > 0 and max_gap_m > 0, got "
                f"{self.slow_kmh}, {self.max_gap_m}"
            )


def queue_length_m(distances_m: NDArray[np.floating], max_gap_m: float) -> float:
    """Length of the queue that starts at the line, from the stopped vehicles' distances.

    Args:
        distances_m: each stopped vehicle's ground distance from the stop line.
        max_gap_m: neighbours farther apart than this are not one queue.

    Returns:
        The farthest distance reached by a chain of gaps of at most ``max_gap_m`` from 0;
        0 when no stopped vehicle is within ``max_gap_m`` of the line.

    Example:
        >>> queue_length_m(np.array([3.0, 10.0, 17.5, 60.0]), max_gap_m=15.0)
        17.5
    """
    reached = 0.0
    for distance in np.sort(np.asarray(distances_m, dtype=np.float64)):
        if distance - reached > max_gap_m:
            break
        reached = max(reached, float(distance))
    return round(reached, 2)


class ApproachQueue:
    """The queue of one approach zone over an interval.

    Args:
        zone: the approach (its polygon and ``approach.stop_line``, pixels of
            ``config_frame_size``).
        plane: the camera's ground calibration, built for the stream's frame size.
        config_frame_size: the camera's configured ``frame_size``.
        frame_size: the stream's real frame size; geometry is scaled when it differs.
        rules: what makes vehicles a queue.

    Raises:
        ValueError: the zone is not an approach, or its stop line lies above the horizon.
    """

    def __init__(
        self,
        zone: Zone,
        plane: GroundPlane,
        config_frame_size: tuple[int, int],
        frame_size: tuple[int, int] | None = None,
        rules: QueueRules | None = None,
    ) -> None:
        if zone.approach is None:
            raise ValueError(f"zone {zone.id!r} is not an approach (no approach.stop_line)")
        size = frame_size or config_frame_size
        scale = np.array([size[0] / config_frame_size[0], size[1] / config_frame_size[1]])
        self.zone_id = zone.id
        self.rules = rules or QueueRules()
        self._polygon = np.asarray(zone.polygon, dtype=np.float64) * scale
        self.plane = plane
        ends = plane.to_ground(np.asarray(zone.approach.stop_line, dtype=np.float64) * scale)
        self._origin = ends[0]
        along = ends[1] - ends[0]
        self._normal = np.array([-along[1], along[0]]) / float(np.hypot(*along))
        self._longest: float | None = None

    def update(self, anchors: NDArray[np.floating], speeds_kmh: NDArray[np.floating]) -> float:
        """Feed one frame's tracked vehicles; returns the queue length now, metres.

        Args:
            anchors: ``(N, 2)`` vehicle anchors in pixels of the stream's frame.
            speeds_kmh: ``(N,)`` their speeds, ``nan`` where not measured yet.
        """
        points = np.asarray(anchors, dtype=np.float64).reshape(-1, 2)
        speeds = np.asarray(speeds_kmh, dtype=np.float64)
        stopped = np.isfinite(speeds) & (speeds <= self.rules.slow_kmh)
        stopped &= points_in_polygon(points, self._polygon)
        length = 0.0
        if np.any(stopped):
            # Anchors inside the zone are on the calibrated ground (the config checks that
            # zones are drawn on it).
            ground = self.plane.to_ground(points[stopped])
            distances = np.abs((ground - self._origin) @ self._normal)
            length = queue_length_m(distances, self.rules.max_gap_m)
        self._longest = length if self._longest is None else max(self._longest, length)
        return length

    def take(self) -> float | None:
        """The longest queue since the last call (``None``: no frame seen); starts afresh."""
        longest, self._longest = self._longest, None
        return longest
