"""The loop of one camera: frames -> people -> tracks -> zones, lines, waits -> a message.

The counting itself (tracking, zones, lines, waits, density) is
:class:`~crowdwatch.edge.counting.CameraCounter`, which has no I/O; this loop reads frames,
runs the detector (and, on the schedule of ``edge.dense``, the crowd counter for zones in
mode dense/auto), closes intervals and publishes.

Time base of the intervals (``edge.interval_s``)::

    live stream, USB, realtime file   wall clock: an interval is interval_s seconds of time
    file read as fast as possible     video time: an interval is interval_s seconds of footage,
                                      so the same file gives the same messages on any machine

Either way a message's ``ts`` is the UTC time it was built.  An interval in which no frame
was analysed (the camera is offline) gives no count message, only a status saying offline:
downstream that is "no data", never zero people.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from crowdwatch.contracts.config import (
    Camera,
    DebugSnapshotConfig,
    DenseConfig,
    DetectorConfig,
    TrackingConfig,
)
from crowdwatch.contracts.errors import BrokerError
from crowdwatch.contracts.messages import (
    AVAILABLE_OFFLINE,
    AVAILABLE_ONLINE,
    CameraState,
    StatusMessage,
    TopicKind,
    camera_topic,
    encode,
    utc_now,
)
from crowdwatch.edge.counting import CameraCounter
from crowdwatch.edge.dense import DensityCounter, DensityMap
from crowdwatch.edge.detections import Detections
from crowdwatch.edge.detector import Detector
from crowdwatch.edge.snapshot import render_snapshot, write_snapshot
from crowdwatch.edge.source import DEFAULT_FPS, Frame, VideoSource

logger = logging.getLogger(__name__)

Publish = Callable[[str, bytes, bool], None]
"""``publish(topic, payload, retain)`` at QoS 1; raises BrokerError when the broker is away."""


@dataclass(slots=True)
class _IntervalStats:
    """Health figures of one interval, for the status message."""

    started: float = field(default_factory=time.monotonic)
    analysed: int = 0
    inference_s: float = 0.0
    dropped_before: int = 0


class DensitySchedule:
    """When the crowd counter runs: every Nth analysed frame or every so many seconds.

    The first analysed frame always gets a pass, so zones in mode dense have a count from
    the start.

    Args:
        config: ``edge.dense`` (``every_n_frames`` or ``interval_s``).

    Example:
        >>> schedule = DensitySchedule(DenseConfig(interval_s=1.0))
        >>> [schedule.due(ts) for ts in (0.0, 0.4, 1.0, 1.5, 2.1)]
        [True, False, True, False, True]
    """

    def __init__(self, config: DenseConfig) -> None:
        self.every_n = config.every_n_frames
        self.interval_s = config.run_interval_s()
        self._frames = 0
        self._next_ts: float | None = None

    def due(self, ts: float) -> bool:
        """Whether the analysed frame at ``ts`` (seconds on the worker's clock) gets a pass."""
        if self.every_n is not None:
            self._frames += 1
            return (self._frames - 1) % self.every_n == 0
        assert self.interval_s is not None
        # A little slack: frame times like 10 * 0.1 s fall a hair short of the slot.
        if self._next_ts is not None and ts < self._next_ts - 1e-6:
            return False
        # Schedule from the pass, not from the last slot: after a stall, no burst of passes.
        self._next_ts = ts + self.interval_s
        return True


class CameraWorker:
    """Counts people in one camera's zones and publishes the counts.

    Args:
        site_id: the camera's site.
        camera: the camera from the config (zones, configured frame size).
        source: an opened :class:`VideoSource` of that camera (see ``open_camera``).
        detector: finds people in a frame.
        publish: sends ``(topic, payload, retain)`` to the broker at QoS 1.
        topic_prefix: ``mqtt.topic_prefix``.
        interval_s: seconds per count message (wall or video time, see the module doc).
        detect_every: analyse every Nth frame of the source.
        tracking: ``edge.tracking`` (ByteTrack, lines, waits); default settings when ``None``.
        snapshot: ``edge.debug_snapshot``: a blurred local JPEG now and then; ``None``: off.
        health: a line about the publish path (spool backlog, drops, errors) for the status
            detail, "" when all is well (see :class:`~crowdwatch.edge.spool.StoreAndForward`).
        density: the crowd counter, for a camera with zones in mode dense or auto (see
            :func:`~crowdwatch.edge.counting.uses_density`); its time counts in the status's
            ``inference_ms`` and a frame of bad quality for it is named in the detail.
        dense: ``edge.dense`` (schedule and ``auto`` rule); default settings when ``None``.
        detector_config: the ``detector`` section (tiles, input size: how large people look
            to the detector, which ``auto`` weighs).
        clock: the UTC wall clock that dates messages (``ts``); intervals run on the
            monotonic clock, so a wrong or jumping wall clock changes only the dates.

    Example:
        >>> sent = []
        >>> worker = CameraWorker(  # doctest: +SKIP
        ...     "stop-a", camera, open_camera(camera), detector,
        ...     lambda topic, payload, retain: sent.append((topic, payload, retain)),
        ...     topic_prefix="crowdwatch", interval_s=5.0,
        ... )
        >>> worker.run(threading.Event())  # doctest: +SKIP
    """

    def __init__(
        self,
        site_id: str,
        camera: Camera,
        source: VideoSource,
        detector: Detector,
        publish: Publish,
        *,
        topic_prefix: str,
        interval_s: float,
        detect_every: int = 1,
        tracking: TrackingConfig | None = None,
        snapshot: DebugSnapshotConfig | None = None,
        health: Callable[[], str] | None = None,
        density: DensityCounter | None = None,
        dense: DenseConfig | None = None,
        detector_config: DetectorConfig | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.site_id = site_id
        self.camera = camera
        self.source = source
        self.detector = detector
        self.interval_s = interval_s
        self.detect_every = detect_every
        self._publish = publish
        self._topics = {
            kind: camera_topic(topic_prefix, site_id, camera.id, kind) for kind in TopicKind
        }
        frame_rate = (source.fps or DEFAULT_FPS) / detect_every
        dense = dense or DenseConfig()
        self._counter = CameraCounter(
            site_id, camera, tracking or TrackingConfig(), frame_rate, dense, detector_config
        )
        self._density = density
        self._density_schedule = DensitySchedule(dense)
        self._density_problem: str | None = None  # the frame quality last warned about
        self._snapshot = snapshot
        self._health = health
        self._utc_now = clock
        self._snapshot_due = 0.0
        self._stats = _IntervalStats()
        self._interval_start: float | None = None
        self._last_ts = 0.0
        self._announced: bool | None = None  # the availability last published

    def run(self, stop: threading.Event) -> None:
        """Count until ``stop`` is set or the source ends, then publish ``offline``.

        Args:
            stop: set from another thread to end the loop.
        """
        logger.info(
            "camera %s/%s: counting from %s", self.site_id, self.camera.id, self.source.name
        )
        self._announce()
        try:
            for frame in self.source.frames(stop):
                now = self._clock(frame)
                self._announce()
                self._close_due_intervals(now)
                if frame is not None and frame.index % self.detect_every == 0:
                    self._analyse(frame, now)
        finally:
            self._finish()

    def _clock(self, frame: Frame | None) -> float:
        if self.source.video_clock and frame is not None:
            self._last_ts = frame.ts
            return frame.ts
        return time.monotonic()

    def _analyse(self, frame: Frame, now: float) -> None:
        started = time.perf_counter()
        detections = self.detector.detect(frame.image)
        density = None
        if self._density is not None and self._density_schedule.due(now):
            density = self._density.density(frame.image)
            self._note_quality(density)
        self._stats.inference_s += time.perf_counter() - started
        self._stats.analysed += 1
        tracked = self._counter.observe(detections, now, frame.size, density)
        if self._snapshot is not None and now >= self._snapshot_due:
            self._snapshot_due = now + self._snapshot.every_s
            self._write_snapshot(frame, tracked)

    def _note_quality(self, density: DensityMap) -> None:
        """Warn once when frames turn unusable for the density map, and when they recover."""
        problem = density.quality.reason if not density.quality.ok else None
        if problem == self._density_problem:
            return
        if problem is not None:
            logger.warning(
                "camera %s: frame unusable for the density map (%s); its count is unreliable",
                self.camera.id,
                problem,
            )
        else:
            logger.info("camera %s: frames usable for the density map again", self.camera.id)
        self._density_problem = problem

    def _write_snapshot(self, frame: Frame, detections: Detections) -> None:
        assert self._snapshot is not None
        path = Path(self._snapshot.dir) / f"{self.site_id}_{self.camera.id}.jpg"
        counter = self._counter
        lines = [(line.start, line.end) for line in counter.lines]
        image = render_snapshot(frame.image, detections, [z.polygon for z in counter.zones], lines)
        try:
            write_snapshot(path, image)
        except OSError as exc:
            logger.warning("camera %s: debug snapshot not written: %s", self.camera.id, exc)

    def _close_due_intervals(self, now: float) -> None:
        if self._interval_start is None:
            self._interval_start = now
            return
        while now >= self._interval_start + self.interval_s:
            self._close_interval(self.interval_s)
            self._interval_start += self.interval_s
            if not self.source.video_clock and now >= self._interval_start + self.interval_s:
                # After a stall (a suspended box) skip the empty intervals instead of
                # publishing a burst of statuses for time that has passed.
                self._interval_start = now

    def _close_interval(self, interval_s: float, *, final: bool = False) -> None:
        message = self._counter.finish(self._utc_now(), interval_s)
        if message is not None:
            self._send(TopicKind.COUNTS, encode(message), retain=False)
        self._send(TopicKind.STATUS, encode(self._status(final=final)), retain=True)

    def _status(self, *, final: bool = False) -> StatusMessage:
        """Health over the interval; ``final``: the worker stops, so the camera goes offline."""
        stats, elapsed = self._stats, max(time.monotonic() - self._stats.started, 1e-6)
        dropped_total = self.source.dropped_frames
        online = self.source.online and not final
        inference_ms = 1000 * stats.inference_s / stats.analysed if stats.analysed else 0.0
        status = StatusMessage(
            site_id=self.site_id,
            camera_id=self.camera.id,
            ts=self._utc_now(),
            state=CameraState.ONLINE if online else CameraState.OFFLINE,
            fps=round(min(stats.analysed / elapsed, 10_000.0), 2),
            inference_ms=round(inference_ms, 2),
            dropped_frames=dropped_total - stats.dropped_before,
            detail=self._detail(online)[:500],
        )
        self._stats = _IntervalStats(dropped_before=dropped_total)
        return status

    def _detail(self, online: bool) -> str:
        parts = [] if online else [self.source.detail or "worker stopped"]
        if online and self._density_problem is not None:
            parts.append(f"density map unreliable: {self._density_problem}")
        health = self._health() if self._health is not None else ""
        return "; ".join([*parts, health] if health else parts)

    def _announce(self) -> None:
        """Publish the retained availability when the source went online or offline."""
        online = self.source.online
        if online == self._announced:
            return
        self._announced = online
        payload = AVAILABLE_ONLINE if online else AVAILABLE_OFFLINE
        self._send(TopicKind.AVAILABLE, payload.encode(), retain=True)

    def _finish(self) -> None:
        """Publish the last, partial interval and say the camera is no longer watched."""
        if self._interval_start is not None:
            if self.source.video_clock:
                fps = self.source.fps or 1.0
                partial = self._last_ts + 1 / fps - self._interval_start
            else:
                partial = time.monotonic() - self._interval_start
            self._close_interval(min(max(partial, 1e-3), self.interval_s), final=True)
        self._send(TopicKind.AVAILABLE, AVAILABLE_OFFLINE.encode(), retain=True)
        logger.info("camera %s/%s: stopped", self.site_id, self.camera.id)

    def _send(self, kind: TopicKind, payload: bytes, *, retain: bool) -> None:
        topic = self._topics[kind]
        try:
            self._publish(topic, payload, retain)
        except BrokerError as exc:
            # Counting goes on.  With edge.spool, counts never get here (they are spooled);
            # a retained status or availability is sent fresh again later.
            logger.warning("could not publish %s: %s; message lost", topic, exc)
