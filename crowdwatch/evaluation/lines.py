"""Line-crossing accuracy on PETS 2009 S2L1: annotated tracks against the edge pipeline.

The PETS walkway (768x576, 795 frames at 10 fps) is a paved path crossing the picture from
the left edge (x~0, y~200-250) to the lower right (x~768, y~300-450); people walk along it
both ways, stop in groups near the lamp post (x~430) and some cross the lawn below.  Three
vertical counting lines cut the path, "in" is eastwards (towards the right of the picture)::

    line       start -> end          where, and why there
    west       (300,150)->(300,470)  west of the lamp post and of the group standing by it:
                                     walkers, few occlusions
    centre     (500,150)->(500,470)  east of the lamp post where the two directions of the
                                     path are spread apart
    east       (600,150)->(600,470)  before the path bends towards the right edge, far
                                     enough from the edge that boxes are whole

Each spans the path and the lawn below it so that people leaving the path are still counted,
and stops short of the car park (y<150) where parked cars and the hedge are.  Lines near the
left edge (x<=250) and near the right edge (x>=650) were tried too and are harder: people
turn there and boxes are clipped by the frame (see the report of the issue).

Ground truth: every annotated object id is a track; its anchor is the bottom-centre of its
box; the crossings are counted by the same :class:`~crowdwatch.edge.lines.LineCrossing`
rule (segment intersection, hysteresis, cool-down) that the edge uses.  Counted: the video
through the edge's :class:`~crowdwatch.edge.counting.CameraCounter` (detector -> ByteTrack
-> lines) with the default ``edge.tracking`` settings.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from crowdwatch.contracts.config import Camera, CountingLine, LocalizedName, TrackingConfig, Zone
from crowdwatch.contracts.errors import SourceError
from crowdwatch.edge.counting import CameraCounter, crossing_rules
from crowdwatch.edge.detector import Detector
from crowdwatch.edge.lines import LineCrossing
from crowdwatch.evaluation.datasets import DatasetMissing

logger = logging.getLogger(__name__)

PETS_FRAME_SIZE = (768, 576)
PETS_FPS = 10.0


def _line(line_id: str, en: str, zh: str, x: float) -> CountingLine:
    return CountingLine(
        id=line_id,
        name=LocalizedName(zh=zh, en=en),
        start=(x, 150),
        end=(x, 470),
        in_direction=(1, 0),
    )


PETS_LINES: tuple[CountingLine, ...] = (
    _line("west", "West of the lamp post", "灯柱西", 300),
    _line("centre", "East of the lamp post", "灯柱东", 500),
    _line("east", "Before the bend", "转弯前", 600),
)
"""The three counting lines of the evaluation (pixels of the 768x576 video)."""


@dataclass(frozen=True, slots=True)
class LineResult:
    """True and counted crossings of one line over the whole video."""

    line_id: str
    true_in: int
    true_out: int
    counted_in: int
    counted_out: int

    @property
    def in_error_pct(self) -> float:
        """``|counted - true| / true`` of the "in" crossings, in percent."""
        return _error_pct(self.counted_in, self.true_in)

    @property
    def out_error_pct(self) -> float:
        """``|counted - true| / true`` of the "out" crossings, in percent."""
        return _error_pct(self.counted_out, self.true_out)

    @property
    def max_error_pct(self) -> float:
        """The worse of the two directions (the target is <= 5 % on every line)."""
        return max(self.in_error_pct, self.out_error_pct)


def _error_pct(counted: int, true: int) -> float:
    # With no true crossing any count is wholly wrong: 100 %, not a division by zero.
    if true == 0:
        return 0.0 if counted == 0 else 100.0
    return round(100.0 * abs(counted - true) / true, 2)


Track = list[tuple[int, float, float, float]]
"""One annotated object: ``(frame, anchor x, anchor y, box height)`` in frame order."""


def pets_tracks(shared_dir: Path) -> dict[int, Track]:
    """The annotated tracks of PETS 2009 S2L1, by object id.

    Args:
        shared_dir: ``CROWDWATCH_SHARED_DIR``.

    Returns:
        Per object id its anchors (bottom-centre of the box) frame by frame.

    Raises:
        DatasetMissing: the annotation file is not there.
    """
    xml = shared_dir / "data" / "pets2009_s2l1" / "annotations" / "PETS2009-S2L1.xml"
    if not xml.is_file():
        raise DatasetMissing(f"PETS 2009 S2L1 annotations not found at {xml}")
    tracks: dict[int, Track] = defaultdict(list)
    for frame in ET.parse(xml).getroot().iter("frame"):
        number = int(frame.get("number", -1))
        for obj in frame.iter("object"):
            box = obj.find("box")
            if box is None:
                continue
            xc, yc, h = (float(box.get(k, 0)) for k in ("xc", "yc", "h"))
            tracks[int(obj.get("id", -1))].append((number, xc, yc + h / 2, h))
    for track in tracks.values():
        track.sort()
    return dict(tracks)


def true_crossings(
    tracks: dict[int, Track],
    lines: tuple[CountingLine, ...] = PETS_LINES,
    tracking: TrackingConfig | None = None,
) -> dict[str, tuple[int, int]]:
    """In/out crossings of the annotated tracks, by the edge's own crossing rule.

    Args:
        tracks: from :func:`pets_tracks`.
        lines: the counting lines.
        tracking: the debounce settings (default ``edge.tracking``).

    Returns:
        ``(in, out)`` per line id.
    """
    rules = crossing_rules(tracking or TrackingConfig())
    counters = [LineCrossing(line, PETS_FRAME_SIZE, rules=rules) for line in lines]
    by_frame: dict[int, list[tuple[int, float, float, float]]] = defaultdict(list)
    for track_id, track in tracks.items():
        for frame, x, y, h in track:
            by_frame[frame].append((track_id, x, y, h))
    for frame in sorted(by_frame):
        rows = by_frame[frame]
        anchors = np.array([(x, y) for _, x, y, _ in rows], dtype=np.float64)
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        heights = np.array([r[3] for r in rows], dtype=np.float64)
        for counter in counters:
            counter.update(anchors, ids, heights, frame / PETS_FPS)
    return {c.line_id: (c.in_count, c.out_count) for c in counters}


def evaluate_pets_lines(
    shared_dir: Path, detector: Detector, *, max_frames: int | None = None
) -> list[LineResult]:
    """Counted against annotated in/out crossings of :data:`PETS_LINES`.

    Args:
        shared_dir: ``CROWDWATCH_SHARED_DIR`` (``data/pets2009_s2l1``).
        detector: the edge's detector (any :class:`Detector`).
        max_frames: stop after this many frames (the truth is cut at the same frame).

    Returns:
        One result per line, in :data:`PETS_LINES` order.

    Raises:
        DatasetMissing: the video or its annotations are not there.
        SourceError: the video cannot be decoded.
    """
    video = shared_dir / "data" / "pets2009_s2l1" / "vtest.avi"
    if not video.is_file():
        raise DatasetMissing(f"PETS 2009 S2L1 video not found at {video}")
    tracks = pets_tracks(shared_dir)
    if max_frames is not None:
        tracks = {k: [p for p in t if p[0] < max_frames] for k, t in tracks.items()}
    truth = true_crossings(tracks)
    counted = _count_video(video, detector, max_frames)
    return [LineResult(line.id, *truth[line.id], *counted[line.id]) for line in PETS_LINES]


def _count_video(
    video: Path, detector: Detector, max_frames: int | None
) -> dict[str, tuple[int, int]]:
    camera = Camera(
        id="pets",
        source=str(video),
        frame_size=PETS_FRAME_SIZE,
        zones=[
            Zone(
                id="walkway",
                name=LocalizedName(zh="步道", en="Walkway"),
                polygon=[(0, 0), (768, 0), (768, 576), (0, 576)],
            )
        ],
        lines=list(PETS_LINES),
    )
    counter = CameraCounter("pets", camera, TrackingConfig(), PETS_FPS)
    totals = {line.id: [0, 0] for line in PETS_LINES}
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise SourceError(f"cannot open video file {video}")
    try:
        index = 0
        while max_frames is None or index < max_frames:
            ok, image = capture.read()
            if not ok:
                break
            frame = np.asarray(image, dtype=np.uint8)
            size = (frame.shape[1], frame.shape[0])
            counter.observe(detector.detect(frame), index / PETS_FPS, size)
            index += 1
    finally:
        capture.release()
    for line in counter.lines:
        counts = line.take_counts()
        totals[line.line_id] = [counts.in_count, counts.out_count]
    logger.info("PETS lines: %d frames counted", index)
    return {k: (v[0], v[1]) for k, v in totals.items()}
