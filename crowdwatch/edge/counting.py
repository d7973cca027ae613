"""Everything one camera computes from a frame's detections, without I/O.

    detections --track--> tracked people --zones--> occupancy per zone (explicit zeros)
                                         --lines--> in/out crossings per line
                                         --waits--> waiting time per zone
    ... per interval --> CountMessage (+ density per m² from the ground calibration)

:class:`CameraCounter` owns the per-camera state (tracks, line sides, visits) and converts
the configured geometry once per frame size.  The worker feeds it frames and asks for a
message at each interval's end; the evaluation feeds it a whole video the same way.
"""

from __future__ import annotations

import logging
from datetime import datetime

from crowdwatch.contracts.config import Camera, TrackingConfig
from crowdwatch.contracts.errors import ConfigError
from crowdwatch.contracts.messages import CountMessage
from crowdwatch.edge.density import zone_areas_m2
from crowdwatch.edge.detections import Detections
from crowdwatch.edge.dwell import ZoneWaits
from crowdwatch.edge.interval import IntervalCounts
from crowdwatch.edge.lines import CrossingRules, LineCrossing
from crowdwatch.edge.tracking import PersonTracker
from crowdwatch.edge.zones import ZoneOccupancy

logger = logging.getLogger(__name__)


def crossing_rules(config: TrackingConfig) -> CrossingRules:
    """The line debounce settings of ``edge.tracking``."""
    return CrossingRules(
        min_frames=config.line_min_frames,
        min_distance_px=config.line_min_distance_px,
        cooldown_s=config.line_cooldown_s,
    )


class CameraCounter:
    """Zone counts, line crossings, waits and densities of one camera.

    Args:
        site_id: the camera's site.
        camera: the camera from the config (zones, lines, calibration, frame size).
        tracking: ``edge.tracking``; with ``enabled: false`` there are no lines and no waits.
        frame_rate: analysed frames per second (for the tracker's motion model).

    Raises:
        ConfigError: the camera has lines but tracking is off; a line's ``in_direction``
            runs along it; a zone reaches above the calibrated ground's horizon.
    """

    def __init__(
        self, site_id: str, camera: Camera, tracking: TrackingConfig, frame_rate: float
    ) -> None:
        if camera.lines and not tracking.enabled:
            raise ConfigError(
                f"camera {camera.id!r} has counting lines, which need edge.tracking.enabled"
            )
        self.camera = camera
        self.tracking = tracking
        self.tracker = PersonTracker(tracking, frame_rate) if tracking.enabled else None
        self.rules = crossing_rules(tracking)
        self.areas_m2 = zone_areas_m2(camera.zones, camera.calibration, camera.frame_size)
        self.counts = IntervalCounts(site_id, camera.id, [z.id for z in camera.zones])
        self.waits = {z.id: ZoneWaits(z.id, tracking.wait_grace_s) for z in camera.zones}
        self.frame_size: tuple[int, int] | None = None
        self.zones: list[ZoneOccupancy] = []
        self.lines: list[LineCrossing] = []
        self._fit(camera.frame_size)  # checks the lines at start, not at the first frame
        self.last_ts = 0.0

    def _fit(self, frame_size: tuple[int, int]) -> None:
        if self.frame_size is not None:
            logger.info("camera %s: frame size changed to %s", self.camera.id, frame_size)
        cam, size = self.camera, frame_size
        self.zones = [ZoneOccupancy(z, cam.frame_size, size) for z in cam.zones]
        # Line state is positions in pixels: a new frame size starts it afresh.
        self.lines = [LineCrossing(line, cam.frame_size, size, self.rules) for line in cam.lines]
        self.frame_size = size

    def observe(self, detections: Detections, ts: float, frame_size: tuple[int, int]) -> Detections:
        """Count one analysed frame.

        Args:
            detections: the detector's people, in pixels of the frame.
            ts: the frame's time in seconds on the stream's clock.
            frame_size: ``(width, height)`` of the frame.

        Returns:
            The detections with ``tracker_id`` when tracking is on (as given otherwise).
        """
        if frame_size != self.frame_size:
            self._fit(frame_size)
        self.last_ts = ts
        if self.tracker is not None:
            detections = self.tracker.update(detections, ts)
        zone_counts = {}
        for zone in self.zones:
            inside = zone.trigger(detections)
            zone_counts[zone.zone_id] = zone.current_count
            if detections.tracker_id is not None:
                self.waits[zone.zone_id].update(detections.tracker_id[inside], ts)
        self.counts.add(zone_counts)
        if self.lines and detections.tracker_id is not None:
            anchors, heights = detections.anchors(), detections.heights()
            for line in self.lines:
                line.update(anchors, detections.tracker_id, heights, ts)
        return detections

    def finish(self, ts: datetime, interval_s: float) -> CountMessage | None:
        """Close the interval: its message, or ``None`` when no frame was analysed.

        Args:
            ts: end of the interval, UTC (the message's ``ts``).
            interval_s: its length in seconds.

        Returns:
            The count message with every zone (and line), waits and densities.
        """
        waits = None
        if self.tracker is not None:
            waits = {zone_id: w.summary(self.last_ts) for zone_id, w in self.waits.items()}
        lines = [line.take_counts() for line in self.lines]
        return self.counts.finish(ts, interval_s, waits=waits, areas_m2=self.areas_m2, lines=lines)
