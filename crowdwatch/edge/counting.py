"""Everything one camera computes from a frame's detections, without I/O.

    detections --track--> tracked people --zones--> occupancy per zone (explicit zeros)
                                         --lines--> in/out crossings per line
                                         --waits--> waiting time per zone
    density map (some frames) --zones in mode dense/auto--> people per zone, fractional
    ... per interval --> CountMessage (+ density per m² from the ground calibration)

A camera whose ``classes`` include motor vehicles (a road camera) counts them apart from
people: ``vehicles`` per zone (the vehicle classes merged, see
:mod:`crowdwatch.edge.vehicles`) and, with a ground calibration and tracking, their
space-mean speed per zone in km/h (:mod:`crowdwatch.edge.speed`), the density of a zone
with ``lanes`` in vehicles per km per lane (over its length along the road,
:func:`~crowdwatch.contracts.ground.road_length_m`) and the queue of a stop line's
approach (:mod:`crowdwatch.edge.queue`).  ``count`` stays people,
so a bus stop beside a road reports its queue and its traffic from one pass.  Lines count
every tracked box that crosses them: on a road camera, the flow; a line with ``classes``
only those classes' tracks (buses per hour, :mod:`crowdwatch.edge.lines`).

A zone in ``mode: dense`` takes its occupancy from the last density map summed over its
polygon; one in ``mode: auto`` picks detection or density at each density pass
(:func:`auto_method`, rules in :class:`~crowdwatch.contracts.config.DenseAutoConfig`).
Lines and waits always come from the tracked detections.

:class:`CameraCounter` owns the per-camera state (tracks, line sides, visits) and converts
the configured geometry once per frame size.  The worker feeds it frames and asks for a
message at each interval's end; the evaluation feeds it a whole video the same way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from crowdwatch.contracts.config import (
    Camera,
    CountMode,
    DenseAutoConfig,
    DenseConfig,
    DetectorConfig,
    TrackingConfig,
    Zone,
)
from crowdwatch.contracts.errors import ConfigError
from crowdwatch.contracts.ground import lane_km
from crowdwatch.contracts.messages import MAX_PEOPLE, CountMessage, CountMethod
from crowdwatch.edge.dense import DensityMap
from crowdwatch.edge.density import GroundPlane, zone_areas_m2
from crowdwatch.edge.detections import Detections
from crowdwatch.edge.dwell import ZoneWaits
from crowdwatch.edge.interval import IntervalCounts
from crowdwatch.edge.lines import CrossingRules, LineCrossing
from crowdwatch.edge.plausibility import CountPlausibility, polygon_area_px
from crowdwatch.edge.queue import ApproachQueue
from crowdwatch.edge.speed import ZoneSpeeds
from crowdwatch.edge.tracking import PersonTracker
from crowdwatch.edge.vehicles import VEHICLES, is_vehicle
from crowdwatch.edge.zones import ZoneOccupancy

logger = logging.getLogger(__name__)


def crossing_rules(config: TrackingConfig) -> CrossingRules:
    """The line debounce settings of ``edge.tracking``."""
    return CrossingRules(
        min_frames=config.line_min_frames,
        min_distance_px=config.line_min_distance_px,
        cooldown_s=config.line_cooldown_s,
    )


def uses_density(camera: Camera) -> bool:
    """Whether any zone of the camera counts by density map (``mode: dense`` or ``auto``)."""
    return any(zone.mode is not CountMode.DETECT for zone in camera.zones)


@dataclass(frozen=True, slots=True)
class DetectorView:
    """How a zone's people look to the detector, for ``mode: auto``.

    Args:
        magnification: detector input pixels per frame pixel (see
            :func:`detector_magnification`).
        zone_area_px: the zone's area in frame pixels (the unit of the box heights).
    """

    magnification: float
    zone_area_px: float


def detector_magnification(config: DetectorConfig | None, frame_size: tuple[int, int]) -> float:
    """Detector input pixels per frame pixel: how large a person looks to the network.

    A tile of ``tiles.size`` frame pixels is fitted to the square input; without tiles the
    whole frame is, by its longer side.  No detector section: 1 (heights taken as they are).

    Example:
        >>> from crowdwatch.contracts.config import TilingConfig
        >>> tiled = DetectorConfig(model="m.onnx", tiles=TilingConfig(size=320))
        >>> detector_magnification(tiled, (1920, 1080))
        2.0
        >>> round(detector_magnification(DetectorConfig(model="m.onnx"), (1920, 1080)), 3)
        0.333
    """
    if config is None:
        return 1.0
    if config.tiles is not None:
        return config.input_size / config.tiles.size
    return config.input_size / max(frame_size)


def auto_method(
    rule: DenseAutoConfig,
    heights_px: NDArray[np.floating],
    dense_count: float,
    frame_ok: bool,
    view: DetectorView,
    *,
    confidence: NDArray[np.floating],
) -> CountMethod:
    """The method a zone in ``mode: auto`` counts by, from one frame seen both ways.

    Args:
        rule: ``edge.dense.auto`` (its docstring states the rule and why).
        heights_px: box heights of the people detected in the zone, in frame pixels.
        dense_count: the density map summed over the zone, in the same frame.
        frame_ok: the frame's quality; a dark, blown-out or flat frame keeps detection.
        view: the detector's magnification and the zone's area, in the same pixels.
        confidence: the detector's score of each of those boxes, in the same order.

    Returns:
        ``dense`` when a rule of ``rule`` holds, else ``detect``.

    Example:
        >>> whole = DetectorView(magnification=1 / 3, zone_area_px=1920 * 1080)
        >>> sure = np.array([0.8, 0.9, 0.7])
        >>> heights = np.array([22.0, 30.0, 35.0])
        >>> auto_method(DenseAutoConfig(), heights, 3.2, True, whole, confidence=sure)
        <CountMethod.DENSE: 'dense'>
        >>> tiled = DetectorView(magnification=2.0, zone_area_px=1920 * 1080)
        >>> auto_method(DenseAutoConfig(), heights, 3.2, True, tiled, confidence=sure)
        <CountMethod.DETECT: 'detect'>

        Three unsure boxes where the density map holds less than one person: ground that
        the detector takes for people (generated sand, rock, paving), so the map's reading.

        >>> unsure = np.array([0.2, 0.3, 0.4])
        >>> auto_method(DenseAutoConfig(), heights, 0.1, True, tiled, confidence=unsure)
        <CountMethod.DENSE: 'dense'>
    """
    if not frame_ok:
        return CountMethod.DETECT
    detected = len(heights_px)
    median = float(np.median(heights_px)) if detected else 0.0
    small = (
        rule.small_person_px is not None
        and detected > 0
        and median * view.magnification < rule.small_person_px
    )
    # Each person as a square of their height: a coarse footprint that needs no box widths
    # (sitting, lying and standing people differ in width far more than in what this parts).
    packed = (
        rule.packed_share is not None
        and view.zone_area_px > 0
        and detected * median**2 >= rule.packed_share * view.zone_area_px
    )
    unseen = rule.unseen_min is not None and detected == 0 and dense_count >= rule.unseen_min
    crowded = rule.crowded_count is not None and detected >= rule.crowded_count
    # Boxes are the only evidence of people here and the detector is sure of none of them.
    quiet = (
        rule.quiet_max is not None
        and detected > 0
        and dense_count < rule.quiet_max
        and not bool(np.any(confidence >= rule.sure_confidence))
    )
    missed = (
        rule.undercount_ratio is not None
        and dense_count >= rule.undercount_min
        and detected < rule.undercount_ratio * dense_count
    )
    chosen = small or packed or unseen or crowded or missed or quiet
    return CountMethod.DENSE if chosen else CountMethod.DETECT


MAX_VEHICLE_DENSITY = 1000.0
"""The message contract's bound; more per km per lane means a wrong length or lane count."""


def road_lane_km(camera: Camera) -> dict[str, float]:
    """Lane-kilometres of each zone of ``camera`` with ``lanes``: its length along the road
    (configured, else from the calibration) times its lanes.

    Raises:
        ConfigError: a zone with lanes has no length (the config refuses that) or reaches
            above the calibrated ground's horizon.
    """
    found = {}
    for zone in camera.zones:
        try:
            lanes = lane_km(zone, camera.calibration)
        except ValueError as exc:
            raise ConfigError(f"zone {zone.id!r}: {exc}; draw it on the ground") from exc
        if lanes is not None:
            found[zone.id] = lanes
    return found


def approach_queue(
    zone: Zone, plane: GroundPlane, config_size: tuple[int, int], size: tuple[int, int]
) -> ApproachQueue:
    """The queue of an approach zone; a stop line off the calibrated ground is a config
    mistake, said as one."""
    try:
        return ApproachQueue(zone, plane, config_size, size)
    except ValueError as exc:
        raise ConfigError(
            f"zone {zone.id!r}: approach.stop_line: {exc}; draw it on the road"
        ) from exc


class CameraCounter:
    """Zone counts, line crossings, waits and densities of one camera.

    Args:
        site_id: the camera's site.
        camera: the camera from the config (zones, lines, calibration, frame size).
        tracking: ``edge.tracking``; with ``enabled: false`` there are no lines and no waits.
        frame_rate: analysed frames per second (for the tracker's motion model).
        dense: ``edge.dense`` (the ``auto`` rule); default settings when ``None``.
        detector: the ``detector`` section (how large people look to it, for ``auto``).

    Raises:
        ConfigError: the camera has lines but tracking is off; a line's ``in_direction``
            runs along it; a zone reaches above the calibrated ground's horizon.
    """

    def __init__(
        self,
        site_id: str,
        camera: Camera,
        tracking: TrackingConfig,
        frame_rate: float,
        dense: DenseConfig | None = None,
        detector: DetectorConfig | None = None,
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
        self.auto_rule = (dense or DenseConfig()).auto
        self.detector = detector
        self.plausibility = CountPlausibility(
            camera.zones, self.areas_m2, (dense or DenseConfig()).plausibility
        )
        # Per zone, why its last density pass was refused (and the refused count), until a
        # pass is accepted or the interval's message carries it.
        self.flags: dict[str, tuple[str, int | None]] = {}
        self._warned: set[str] = set()  # zones refused since their last accepted pass
        self.modes = {z.id: z.mode for z in camera.zones}
        # The last density pass: people per zone and the method each zone counts by until
        # the next one.  Before the first pass every zone counts by detection.
        self.dense_counts: dict[str, float] = {}
        self.methods = dict.fromkeys(self.modes, CountMethod.DETECT)
        self.counts_vehicles = any(c in VEHICLES for c in camera.classes)
        # Vehicles per zone in the newest frame: the message's "at the interval's end".
        self.vehicles_now = dict.fromkeys(self.modes, 0)
        self.speeds: ZoneSpeeds | None = None
        self.queues: list[ApproachQueue] = []
        # Lane-km of each road zone with lanes: its density's denominator.
        self.lane_km = road_lane_km(camera) if self.counts_vehicles else {}
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
        if self.counts_vehicles and cam.calibration is not None and self.tracker is not None:
            # Track speeds are ground positions of pixels: a new frame size starts afresh too.
            plane = GroundPlane(cam.calibration, cam.frame_size, size)
            self.speeds = ZoneSpeeds(plane, cam.zones, cam.frame_size, size)
            self.queues = [
                approach_queue(z, plane, cam.frame_size, size)
                for z in cam.zones
                if z.approach is not None
            ]
        self.frame_size = size

    def observe(
        self,
        detections: Detections,
        ts: float,
        frame_size: tuple[int, int],
        density: DensityMap | None = None,
    ) -> Detections:
        """Count one analysed frame.

        Args:
            detections: the detector's people, in pixels of the frame.
            ts: the frame's time in seconds on the stream's clock.
            frame_size: ``(width, height)`` of the frame.
            density: the crowd counter's map of this frame when a density pass ran on it;
                zones in ``mode: dense``/``auto`` keep the last one's counts in between.

        Returns:
            The detections with ``tracker_id`` when tracking is on (as given otherwise).

        Raises:
            ValueError: ``density`` is of a frame of another size.
        """
        if frame_size != self.frame_size:
            self._fit(frame_size)
        if density is not None and density.frame_shape != (frame_size[1], frame_size[0]):
            raise ValueError(
                f"density: expected a map of the {frame_size[0]}x{frame_size[1]} frame, "
                f"got one of {density.frame_shape[1]}x{density.frame_shape[0]}"
            )
        self.last_ts = ts
        if self.tracker is not None:
            detections = self.tracker.update(detections, ts)
        vehicle = (
            is_vehicle(detections.class_id)
            if self.counts_vehicles
            else np.zeros(len(detections), dtype=np.bool_)
        )
        zone_counts: dict[str, float] = {}
        for zone in self.zones:
            inside = zone.trigger(detections)
            people = inside & ~vehicle
            self.vehicles_now[zone.zone_id] = int(np.count_nonzero(inside & vehicle))
            if density is not None and self.modes[zone.zone_id] is not CountMode.DETECT:
                self._take_density(
                    zone, density, detections.heights()[people], detections.confidence[people], ts
                )
            if self.methods[zone.zone_id] is CountMethod.DENSE:
                zone_counts[zone.zone_id] = self.dense_counts[zone.zone_id]
            else:
                zone_counts[zone.zone_id] = int(np.count_nonzero(people))
            if detections.tracker_id is not None:
                self.waits[zone.zone_id].update(detections.tracker_id[people], ts)
        self.counts.add(zone_counts)
        if self.speeds is not None and detections.tracker_id is not None:
            cars = detections.select(vehicle)
            assert cars.tracker_id is not None
            speeds = self.speeds.update(cars.anchors(), cars.tracker_id, ts)
            for queue in self.queues:
                queue.update(cars.anchors(), speeds)
        if self.lines and detections.tracker_id is not None:
            anchors, heights = detections.anchors(), detections.heights()
            for line in self.lines:
                line.update(anchors, detections.tracker_id, heights, ts, detections.class_id)
        return detections

    def _refuse(self, zone_id: str, reason: str, people: float | None) -> None:
        """A density pass not to publish: the zone keeps its last density count (detection
        until there is one; ``auto`` zones go back to detection) and its message says why."""
        if self.modes[zone_id] is CountMode.AUTO:
            self.methods[zone_id] = CountMethod.DETECT
        flagged = None if people is None else round(min(people, MAX_PEOPLE))
        # Once per stretch of refusals (the worker already warns about unusable frames).
        if people is not None and zone_id not in self._warned:
            logger.warning("camera %s: zone %s: %s", self.camera.id, zone_id, reason)
            self._warned.add(zone_id)
        self.flags[zone_id] = (reason, flagged)

    def _take_density(
        self,
        zone: ZoneOccupancy,
        density: DensityMap,
        heights_px: NDArray[np.float32],
        confidence: NDArray[np.float32],
        ts: float,
    ) -> None:
        """Record a density pass for a zone in mode dense/auto and choose its method."""
        if not density.quality.ok:
            # A dark, blown-out, backlit, flat or static frame's map means nothing.
            self._refuse(zone.zone_id, f"unusable frame: {density.quality.reason}", None)
            return
        people = density.in_polygon([(float(x), float(y)) for x, y in zone.polygon])
        # Geometry (and so the room bound) is in the configured frame_size, like the zones.
        implausible = self.plausibility.check(zone.zone_id, people, ts)
        if implausible is not None:
            self._refuse(zone.zone_id, implausible, people)
            return
        self.flags.pop(zone.zone_id, None)
        self._warned.discard(zone.zone_id)
        if people > MAX_PEOPLE:
            # The message contract refuses more; a density this high is a broken model.
            logger.warning(
                "camera %s: zone %s: density count %.0f capped at %d",
                self.camera.id,
                zone.zone_id,
                people,
                MAX_PEOPLE,
            )
            people = float(MAX_PEOPLE)
        self.dense_counts[zone.zone_id] = people
        if self.modes[zone.zone_id] is CountMode.DENSE:
            self.methods[zone.zone_id] = CountMethod.DENSE
            return
        # The rule's pixel sizes are in the configured frame_size, like all geometry.
        assert self.frame_size is not None
        # The rule works in the frame's own pixels: what the detector saw, and the zone there.
        view = DetectorView(
            detector_magnification(self.detector, self.frame_size),
            polygon_area_px([(float(x), float(y)) for x, y in zone.polygon]),
        )
        method = auto_method(
            self.auto_rule, heights_px, people, density.quality.ok, view, confidence=confidence
        )
        if method is not self.methods[zone.zone_id]:
            logger.info(
                "camera %s: zone %s now counts by %s", self.camera.id, zone.zone_id, method.value
            )
        self.methods[zone.zone_id] = method

    def finish(self, ts: datetime, interval_s: float) -> CountMessage | None:
        """Close the interval: its message, or ``None`` when no frame was analysed.

        Args:
            ts: end of the interval, UTC (the message's ``ts``).
            interval_s: its length in seconds.

        Returns:
            The count message with every zone (and line), waits and densities; vehicles
            and their mean speed on a camera that counts vehicles.
        """
        waits = None
        if self.tracker is not None:
            waits = {zone_id: w.summary(self.last_ts) for zone_id, w in self.waits.items()}
        lines = [line.take_counts() for line in self.lines]
        flags, self.flags = self.flags, {}
        speeds = None
        if self.speeds is not None:
            speeds = {s.zone_id: s.mean_kmh for s in self.speeds.take()}
        queues = {q.zone_id: m for q in self.queues if (m := q.take()) is not None}
        densities = {
            zone_id: round(min(self.vehicles_now[zone_id] / lane_km, MAX_VEHICLE_DENSITY), 2)
            for zone_id, lane_km in self.lane_km.items()
        }
        return self.counts.finish(
            ts,
            interval_s,
            waits=waits,
            areas_m2=self.areas_m2,
            lines=lines,
            methods=self.methods,
            flags=flags,
            vehicles=dict(self.vehicles_now) if self.counts_vehicles else None,
            speeds_kmh=speeds,
            densities=densities,
            queues_m=queues,
        )
