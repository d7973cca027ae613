"""Who is who from frame to frame: ByteTrack, behind an adapter.

The rest of the edge sees only :class:`~crowdwatch.edge.detections.Detections` with a
``tracker_id`` array; the tracking library stays in this module.

Why Roboflow's ``trackers`` package (``trackers.ByteTrackTracker``):

* it is the maintained home of ByteTrack in the supervision ecosystem: ``sv.ByteTrack`` was
  deprecated in supervision 0.28 and removed in 0.31 in favour of it (clean-room, Apache-2.0,
  released monthly);
* it takes the frame's timestamp, so a lost track survives ``lost_track_s`` *seconds*
  whatever the frame rate or ``detect_every``, and a dropped live frame does not age tracks;
* it needs no torch: numpy, scipy (``linear_sum_assignment``) and supervision's
  ``Detections``.  Measured on the PETS 2009 walkway with the 640 ONNX model it reproduces
  the annotated in/out crossings of the evaluation lines (``crowdwatch eval``).
* the alternatives were worse for an edge box: BoxMOT and Ultralytics' trackers pull torch,
  norfair pins ``numpy<2`` and is not ByteTrack, the ``bytetracker`` packages are
  unmaintained since 2023.

Its cost: ``trackers`` declares ``opencv-python`` (with GUI) and supervision brings
matplotlib, PyAV and Pillow.  That is about 150 MB more on the box, and two OpenCV wheels
side by side (same version, same module; the edge only decodes and resizes, so either works).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from crowdwatch.contracts.config import TrackingConfig
from crowdwatch.edge.detections import Detections

logger = logging.getLogger(__name__)

REFERENCE_FPS = 30.0
"""``trackers`` counts its lost-track buffer in frames at 30 fps."""


class PersonTracker:
    """ByteTrack over one camera's detections.

    Args:
        config: ``edge.tracking``.
        frame_rate: analysed frames per second (source fps / ``detect_every``); used when
            frames come without usable timestamps.

    Example:
        >>> tracker = PersonTracker(TrackingConfig(), frame_rate=10.0)
        >>> boxes = np.array([[10, 20, 40, 100]], dtype=np.float32)
        >>> frame = Detections(boxes, np.array([0.9], dtype=np.float32), np.array([0]))
        >>> [tracker.update(frame, ts=t / 10).tracker_id.tolist() for t in range(3)]
        [[-1], [0], [0]]
    """

    def __init__(self, config: TrackingConfig, frame_rate: float) -> None:
        import supervision as sv
        import trackers

        self._sv = sv
        self._tracker: Any = trackers.ByteTrackTracker(
            lost_track_buffer=max(round(config.lost_track_s * REFERENCE_FPS), 0),
            frame_rate=max(frame_rate, 1e-3),
            track_activation_threshold=config.activation_confidence,
            minimum_consecutive_frames=config.confirm_frames,
            minimum_iou_threshold=config.min_iou,
            high_conf_det_threshold=config.high_confidence,
        )
        self._last_ts: float | None = None
        # Ids stay unique across resets (the library restarts at 1), so that line and
        # waiting-time state keyed by id never mistakes a new person for an old one.
        self._id_offset = 0
        self._max_id = -1

    def update(self, detections: Detections, ts: float) -> Detections:
        """Match one frame's detections to the tracks.

        Args:
            detections: the detector's output for the frame.
            ts: the frame's time in seconds (video or wall clock), rising.

        Returns:
            The same boxes (possibly reordered) with ``tracker_id``: ``-1`` for a box that is
            not (yet) a confirmed track.
        """
        frame = self._sv.Detections(
            xyxy=detections.xyxy.astype(np.float32, copy=False),
            confidence=detections.confidence,
            class_id=detections.class_id,
        )
        if self._last_ts is not None and ts <= self._last_ts:
            # The library warns and skips such frames; a clock that went back is a new
            # stream (reopened, or a file played again): start afresh instead.
            logger.debug("frame time went back from %s to %s: tracks reset", self._last_ts, ts)
            self.reset()
        self._last_ts = ts
        tracked = self._tracker.update(frame, timestamp=ts)
        if len(tracked) == 0:
            return Detections.empty().with_tracker_ids(np.zeros(0, dtype=np.int64))
        ids = np.asarray(tracked.tracker_id, dtype=np.int64)
        ids = np.where(ids >= 0, ids + self._id_offset, -1)
        self._max_id = max(self._max_id, int(ids.max()))
        return Detections(
            xyxy=np.asarray(tracked.xyxy, dtype=np.float32),
            confidence=np.asarray(tracked.confidence, dtype=np.float32),
            class_id=np.asarray(tracked.class_id, dtype=np.int64),
            tracker_id=ids,
        )

    def reset(self) -> None:
        """Forget every track (the stream was reopened: the scene may have changed)."""
        self._tracker.reset()
        self._last_ts = None
        self._id_offset = self._max_id + 1
