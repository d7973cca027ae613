"""Ground speed of tracked vehicles (and people), mean per zone in km/h; no I/O.

Tracks are pixels; speed needs metres.  The camera's 4-point ground calibration
(:class:`~crowdwatch.edge.density.GroundPlane`) maps each track's anchor (bottom centre of
the box: where it touches the road) to the ground, and a track's velocity is the
least-squares slope of its ground positions over the last ``window_s`` seconds::

    ground y (m)
      |            x  x           one track's last window of ground positions; the fitted
      |       x  x                line's slope is its velocity: box jitter averages out
      |   x  x                    instead of adding up as it would step by step
      +-------------------> time (s)

Robustness, so that a speed is never made of one bad observation:

* a track gives no speed until it has ``min_points`` observations spanning ``min_span_s``:
  a vehicle seen for one frame, or a fresh id after an id switch, says nothing yet (and the
  track before the switch already gave its samples);
* a step faster than ``max_speed_kmh``, a position more than ``max_deviation_m`` from where
  the track's fitted motion puts it (two vehicles in neighbouring lanes swapping ids), or a
  gap longer than ``max_gap_s`` is an id swap or a re-used id, not a movement: the track's
  history restarts there;
* anchors on or above the calibrated plane's horizon are skipped (no ground position).

The zone mean is a *space-mean speed*: every frame, every vehicle in the zone with a speed
adds one sample, and the interval's mean is the mean of those samples.  That is the average
speed of the vehicles on the section at an instant, the quantity travel-speed congestion
rules (GB/T 33171-2016) are stated in; a mean over vehicles crossing a point (time-mean
speed) would over-weight the fast ones.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from crowdwatch.contracts.config import Zone
from crowdwatch.edge.density import GroundPlane
from crowdwatch.edge.zones import points_in_polygon

MS_TO_KMH = 3.6


@dataclass(frozen=True, slots=True)
class SpeedRules:
    """How a track's speed is estimated (see the module doc).

    Args:
        window_s: the velocity is fitted over the track's last this many seconds.
        min_span_s: a track followed for less than this gives no speed yet.
        min_points: nor one with fewer observations in its window.
        max_speed_kmh: a step faster than this restarts the track (an id swap).
        max_deviation_m: a position this far from the fitted motion's prediction restarts
            the track (an id swap between neighbours).
        max_gap_s: a track unseen for longer than this restarts (a re-used id).
        forget_s: a track unseen this long is forgotten.
    """

    window_s: float = 2.0
    min_span_s: float = 0.5
    min_points: int = 3
    max_speed_kmh: float = 250.0
    max_deviation_m: float = 3.0
    max_gap_s: float = 1.0
    forget_s: float = 10.0

    def __post_init__(self) -> None:
        if self.min_points < 2:
            raise ValueError(f"min_points: expected at least 2, got {self.min_points}")
        if not 0 < self.min_span_s <= self.window_s:
            raise ValueError(
                f"min_span_s: expected a span in (0, window_s={self.window_s}], "
                f"got {self.min_span_s}"
            )


@dataclass(frozen=True, slots=True)
class ZoneSpeed:
    """The speeds measured in one zone over an interval.

    Args:
        zone_id: the zone.
        mean_kmh: space-mean speed (mean of every frame's vehicle speeds), ``None`` when no
            vehicle in the zone had a speed.
        median_kmh: the median of the same samples.
        samples: vehicle-frames that gave a speed.
        tracks: distinct tracks among them.
    """

    zone_id: str
    mean_kmh: float | None
    median_kmh: float | None
    samples: int
    tracks: int


@dataclass(slots=True)
class _Track:
    history: deque[tuple[float, float, float]] = field(default_factory=deque)  # ts, x, y (m)


def fitted_velocity(history: Sequence[tuple[float, float, float]]) -> tuple[float, float]:
    """Velocity in m/s of the least-squares straight-line motion through ``(ts, x, y)`` points.

    Args:
        history: at least two observations at distinct times, metres and seconds.

    Returns:
        ``(vx, vy)``; its length is the speed.

    Raises:
        ValueError: every observation has the same time.

    Example:
        >>> fitted_velocity([(0.0, 0.0, 0.0), (1.0, 3.0, 4.0), (2.0, 6.0, 8.0)])
        (3.0, 4.0)
    """
    points = np.asarray(history, dtype=np.float64)
    t = points[:, 0] - points[:, 0].mean()
    denominator = float(np.dot(t, t))
    if denominator <= 0:
        raise ValueError("a velocity needs observations at two different times at least")
    vx = float(np.dot(t, points[:, 1] - points[:, 1].mean())) / denominator
    vy = float(np.dot(t, points[:, 2] - points[:, 2].mean())) / denominator
    return vx, vy


class TrackSpeeds:
    """Ground speed of every track of one camera, frame by frame.

    Args:
        plane: the camera's ground calibration, built for the stream's frame size.
        rules: estimation settings.

    Example:
        >>> from crowdwatch.contracts.config import Calibration
        >>> cal = Calibration(image_points=[(0, 0), (100, 0), (100, 100), (0, 100)],
        ...                   ground_points_m=[(0, 0), (10, 0), (10, 10), (0, 10)])
        >>> speeds = TrackSpeeds(GroundPlane(cal, (100, 100)))
        >>> for i in range(6):  # 1 px = 0.1 m, 10 px per 0.1 s: 10 m/s
        ...     kmh = speeds.update(np.array([[10.0 * i, 50.0]]), np.array([4]), i / 10)
        >>> round(float(kmh[0]), 1)
        36.0
    """

    def __init__(self, plane: GroundPlane, rules: SpeedRules | None = None) -> None:
        self.plane = plane
        self.rules = rules or SpeedRules()
        self._tracks: dict[int, _Track] = {}

    def update(
        self, anchors: NDArray[np.floating], tracker_ids: NDArray[np.integer], ts: float
    ) -> NDArray[np.float64]:
        """Feed one frame's tracked anchors; returns each one's current speed.

        Args:
            anchors: ``(N, 2)`` anchor points in pixels of the plane's frame size.
            tracker_ids: ``(N,)`` track ids; negative ids (unconfirmed tracks) get no speed.
            ts: the frame's time in seconds, rising.

        Returns:
            ``(N,)`` km/h, ``nan`` where a track has no speed yet.
        """
        speeds = np.full(len(anchors), np.nan)
        ground = self._to_ground(np.asarray(anchors, dtype=np.float64).reshape(-1, 2))
        for i, track_id in enumerate(np.asarray(tracker_ids).tolist()):
            if track_id < 0 or not np.isfinite(ground[i]).all():
                continue
            speeds[i] = self._step(int(track_id), float(ground[i, 0]), float(ground[i, 1]), ts)
        for track_id, track in list(self._tracks.items()):
            if ts - track.history[-1][0] > self.rules.forget_s:
                del self._tracks[track_id]
        return speeds

    def _to_ground(self, anchors: NDArray[np.float64]) -> NDArray[np.float64]:
        """Ground metres of each anchor; ``nan`` for one on or above the horizon."""
        ground = np.full(anchors.shape, np.nan)
        for i in range(len(anchors)):
            try:
                ground[i] = self.plane.to_ground(anchors[i : i + 1])[0]
            except ValueError:
                continue  # beyond the horizon: no ground position
        return ground

    def _step(self, track_id: int, x: float, y: float, ts: float) -> float:
        rules = self.rules
        track = self._tracks.setdefault(track_id, _Track())
        if track.history:
            last_ts, last_x, last_y = track.history[-1]
            gap = ts - last_ts
            if gap <= 0:
                return np.nan  # the same instant twice: nothing to learn
            step_kmh = MS_TO_KMH * float(np.hypot(x - last_x, y - last_y)) / gap
            if (
                gap > rules.max_gap_s
                or step_kmh > rules.max_speed_kmh
                or self._off_course(track, x, y, ts)
            ):
                track.history.clear()  # a different vehicle behind the same id
        track.history.append((ts, x, y))
        while ts - track.history[0][0] > rules.window_s:
            track.history.popleft()
        span = ts - track.history[0][0]
        if len(track.history) < rules.min_points or span < rules.min_span_s:
            return np.nan
        return MS_TO_KMH * float(np.hypot(*fitted_velocity(track.history)))

    def _off_course(self, track: _Track, x: float, y: float, ts: float) -> bool:
        """Whether ``(x, y)`` is too far from where the track's fitted motion puts it at ``ts``."""
        if len(track.history) < 2:
            return False
        vx, vy = fitted_velocity(track.history)
        last_ts, last_x, last_y = track.history[-1]
        predicted_x, predicted_y = last_x + vx * (ts - last_ts), last_y + vy * (ts - last_ts)
        return float(np.hypot(x - predicted_x, y - predicted_y)) > self.rules.max_deviation_m


class ZoneSpeeds:
    """Space-mean speed per zone of one camera, accumulated over an interval.

    Args:
        plane: the camera's ground calibration, built for the stream's frame size.
        zones: the zones whose speed is measured (polygons in pixels of ``config_frame_size``).
        config_frame_size: the camera's configured ``frame_size``.
        frame_size: the stream's real frame size; polygons are scaled when it differs.
        rules: how each track's speed is estimated.
    """

    def __init__(
        self,
        plane: GroundPlane,
        zones: Sequence[Zone],
        config_frame_size: tuple[int, int],
        frame_size: tuple[int, int] | None = None,
        rules: SpeedRules | None = None,
    ) -> None:
        size = frame_size or config_frame_size
        scale = np.array([size[0] / config_frame_size[0], size[1] / config_frame_size[1]])
        self._polygons = {
            zone.id: np.asarray(zone.polygon, dtype=np.float64) * scale for zone in zones
        }
        self.tracks = TrackSpeeds(plane, rules)
        self._samples: dict[str, list[float]] = {zone_id: [] for zone_id in self._polygons}
        self._ids: dict[str, set[int]] = {zone_id: set() for zone_id in self._polygons}

    def update(
        self, anchors: NDArray[np.floating], tracker_ids: NDArray[np.integer], ts: float
    ) -> NDArray[np.float64]:
        """Feed one frame's tracked anchors (see :meth:`TrackSpeeds.update`); returns km/h."""
        points = np.asarray(anchors, dtype=np.float64).reshape(-1, 2)
        speeds = self.tracks.update(points, tracker_ids, ts)
        known = np.isfinite(speeds)
        ids = np.asarray(tracker_ids)
        for zone_id, polygon in self._polygons.items():
            inside = known & points_in_polygon(points, polygon)
            self._samples[zone_id].extend(speeds[inside].tolist())
            self._ids[zone_id].update(int(t) for t in ids[inside])
        return speeds

    def take(self) -> list[ZoneSpeed]:
        """Every zone's speeds since the last call, in zone order; starts a new interval."""
        result = []
        for zone_id, samples in self._samples.items():
            values = np.asarray(samples, dtype=np.float64)
            result.append(
                ZoneSpeed(
                    zone_id=zone_id,
                    mean_kmh=round(float(values.mean()), 2) if len(values) else None,
                    median_kmh=round(float(np.median(values)), 2) if len(values) else None,
                    samples=len(values),
                    tracks=len(self._ids[zone_id]),
                )
            )
            samples.clear()
            self._ids[zone_id].clear()
        return result
