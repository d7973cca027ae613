"""People crossing a counting line, in and out, from their tracks; no I/O.

A :class:`LineCrossing` watches one configured :class:`CountingLine`.  Each tracked person is
reduced to their anchor (bottom-centre of the box: the feet).  A crossing is the *movement*
between two consecutive observations of one track, not a position::

                      end
                       |
        prev o---------+-------->o curr      counted when the segment prev->curr properly
                       |                     intersects the line segment start-end, so a
          "out" side   |   "in" side         fast mover that jumps over the line, or a line
                       |  ---> in_direction  near the frame edge, is not missed
                      start

The direction is the side the track moves to: ``in`` when it ends on the side that
``in_direction`` points to.  Debounce, so that one person is one crossing:

* **hysteresis on both sides**: a track is *settled* on a side once it was seen there for
  ``min_frames`` observations and at least ``min_distance_px`` away from the line.  A
  crossing from a settled side is *pending* until the track settles on the other side; it is
  cancelled if the track goes back over the line first.  A person lingering on the line,
  their feet jittering across it, settles on neither side and is not counted; a track born
  next to the line after an id switch has no settled side, so the same person is not
  counted twice.  A track lost with a pending crossing, still on the far side (it left the
  picture right after a line near the frame edge), is counted when ``lost_s`` has passed;
* **cool-down**: one track counts at most once per direction within ``cooldown_s``;
* **teleport guard**: a step longer than ``max_step_heights`` box heights between two
  observations is an id swap between two people, not a walk: it resets the track;
* **entering over a line near the frame edge**: where the picture on one side of the line
  is a strip at most ``edge_strip_fraction`` of its depth across the line, people (and
  vehicles) coming in from that edge are often first tracked already past the line, their
  origin side never settled.  A track whose *first* observation lies on the other side,
  within ``entry_heights`` box heights of the line and beside the segment, entered across
  it: it counts as coming from the strip once it settles there having moved at least
  ``min_distance_px`` further from the line (a track first seen walking *towards* the line
  is someone leaving, counted when they cross it).  Not when another track was seen within
  ``max_step_heights`` box heights of that point in the last ``handoff_s`` seconds: that is
  an id switch of someone already followed (whose own crossing, if any, counts), so the
  double count the settle rule prevents stays prevented::

        frame edge |<- strip ->|                    o first seen here, no track nearby
                   |   (out)   |    (in)       ---> settles further in: counted "in"
                   |           |  o-->o-->o
                   |        line

A line with ``classes`` (``[bus]``: buses per hour beside the all-vehicle line) counts only
the tracks of those classes.  A track's class is its **majority** class over the
observations the line saw of it, ties going to the latest: a small detector's label
flickers from frame to frame (one van is a car in some frames and a truck in others, see
:mod:`crowdwatch.edge.vehicles`), and the frame a crossing completes in is arbitrary, so its
latest label is a coin toss where the majority over the whole approach is the label the
detector mostly gave.  Every track still runs through the debounce above, so the id-switch
guards work for a class line as for the all-class one.

Daily totals are *not* kept here: the edge publishes per-interval in/out counts (UTC
timestamps) and the database sums ``line_counts`` per local day of ``district.timezone``, so
an edge restart at 23:59 cannot lose or double a day's total.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from crowdwatch.contracts.config import CountingLine
from crowdwatch.contracts.errors import ConfigError
from crowdwatch.contracts.messages import LineCount
from crowdwatch.edge.detector import COCO_CLASS_IDS

_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class CrossingRules:
    """Debounce settings of every line (see the module doc).

    Args:
        min_frames: observations on one side before a crossing from it counts.
        min_distance_px: how far from the line (pixels of the configured frame) a track must
            have been on one side before a crossing from it counts.
        cooldown_s: a track counts at most once per direction within this many seconds.
        max_step_heights: a step longer than this many box heights resets the track.
        lost_s: a track unseen this long with a pending crossing on its side has crossed.
        forget_s: a track not seen for this long is forgotten.
        edge_strip_fraction: a side of the line holding at most this fraction of the
            picture's depth across the line is an edge strip: tracks first seen just past the
            line came from it.
        entry_heights: how far past such a line (box heights) a new track may be first seen
            and still count as having entered across it.
        handoff_s: a new track within ``max_step_heights`` box heights of where another track
            was seen this recently is an id switch, never an entry.
    """

    min_frames: int = 2
    min_distance_px: float = 6.0
    cooldown_s: float = 2.0
    max_step_heights: float = 2.0
    lost_s: float = 1.0
    forget_s: float = 10.0
    edge_strip_fraction: float = 0.15
    entry_heights: float = 3.0
    handoff_s: float = 2.0


@dataclass(slots=True)
class _TrackState:
    point: tuple[float, float]
    seen_ts: float
    side: int  # raw side of the last point: +1 "in" side, -1 "out" side, 0 on the line
    run: int = 0  # consecutive observations on ``side``
    far: bool = False  # reached min_distance on ``side`` during the run
    settled: int = 0  # side the track settled on (0: none yet / since its last crossing)
    pending: int = 0  # direction of a crossing from a settled side, waiting to settle
    entry_from: float = 0.0  # > 0: entered over an edge line, first seen this far past it
    last_counted: dict[int, float] = field(default_factory=dict)  # direction -> ts
    votes: dict[int, int] = field(default_factory=dict)  # class id -> observations
    last_class: int = -1  # class id of the latest observation

    def vote(self, class_id: int) -> None:
        self.votes[class_id] = self.votes.get(class_id, 0) + 1
        self.last_class = class_id

    def majority_class(self) -> int:
        """The class most observations gave, the latest one among equals."""
        top = max(self.votes.values(), default=0)
        if self.votes.get(self.last_class) == top:
            return self.last_class
        return max(self.votes, key=lambda c: self.votes[c], default=-1)


class LineCrossing:
    """In/out crossings of one counting line by tracked people.

    Args:
        line: the line from the config (pixels of ``config_frame_size``).
        config_frame_size: the camera's configured ``frame_size`` (width, height).
        frame_size: the stream's real frame size; the line is scaled when it differs.
        rules: debounce settings.

    Raises:
        ConfigError: ``in_direction`` runs along the line, so it names no side.

    A line with ``classes`` counts only tracks of those classes (majority class, see the
    module doc); :meth:`update` then needs the boxes' ``class_id``.

    Example:
        >>> from crowdwatch.contracts.config import LocalizedName
        >>> gate = CountingLine(id="gate", name=LocalizedName(zh="门", en="Gate"),
        ...                     start=(50, 0), end=(50, 100), in_direction=(1, 0))
        >>> crossing = LineCrossing(gate, (100, 100), rules=CrossingRules(min_frames=1))
        >>> ids, h = np.array([7]), np.array([20.0])
        >>> for ts, x in enumerate([30.0, 40.0, 60.0, 65.0]):
        ...     _ = crossing.update(np.array([[x, 50.0]]), ids, h, float(ts))
        >>> crossing.take_counts()
        LineCount(line_id='gate', in_count=1, out_count=0)
    """

    def __init__(
        self,
        line: CountingLine,
        config_frame_size: tuple[int, int],
        frame_size: tuple[int, int] | None = None,
        rules: CrossingRules | None = None,
    ) -> None:
        self.line_id = line.id
        self.class_ids: frozenset[int] | None = (
            None if line.classes is None else frozenset(COCO_CLASS_IDS[c] for c in line.classes)
        )
        self.frame_size = frame_size or config_frame_size
        self.rules = rules or CrossingRules()
        scale = np.array(
            [self.frame_size[0] / config_frame_size[0], self.frame_size[1] / config_frame_size[1]]
        )
        self.start: NDArray[np.float64] = np.asarray(line.start, dtype=np.float64) * scale
        self.end: NDArray[np.float64] = np.asarray(line.end, dtype=np.float64) * scale
        direction = self.end - self.start
        # The "in" side is the side in_direction points to: the sign of its cross product.
        in_vec = np.asarray(line.in_direction, dtype=np.float64) * scale
        in_side = _cross(direction, in_vec)
        if abs(in_side) < 1e-6 * np.hypot(*direction) * np.hypot(*in_vec):
            raise ConfigError(
                f"line {line.id!r}: in_direction {list(line.in_direction)} runs along the "
                "line; it must point to one side of it"
            )
        self._orient = 1.0 if in_side > 0 else -1.0
        self._length = float(np.hypot(*direction))
        # Distances are configured in pixels of the configured frame; scale with the frame.
        self._min_distance = self.rules.min_distance_px * float(np.sqrt(scale[0] * scale[1]))
        self._entry_sides = self._sides_facing_an_edge_strip()
        self._tracks: dict[int, _TrackState] = {}
        self._frame_ids: set[int] = set()
        self.in_count = 0
        self.out_count = 0

    def _sides_facing_an_edge_strip(self) -> frozenset[int]:
        """The sides a track first seen on may have entered from the edge strip opposite."""
        width, height = self.frame_size
        corners = np.array([(0, 0), (width, 0), (width, height), (0, height)], dtype=np.float64)
        distances = self.signed_distance(corners)
        depth = {1: max(float(distances.max()), 0.0), -1: max(float(-distances.min()), 0.0)}
        total = depth[1] + depth[-1]
        return frozenset(
            side
            for side in (1, -1)
            if total > 0 and depth[-side] <= self.rules.edge_strip_fraction * total
        )

    def signed_distance(self, points: NDArray[np.floating]) -> NDArray[np.float64]:
        """Distance of points from the (infinite) line, positive on the "in" side.

        Args:
            points: ``(N, 2)`` ``x, y`` pixels.

        Returns:
            ``(N,)`` signed distances in pixels.
        """
        rel = np.asarray(points, dtype=np.float64) - self.start
        d = self.end - self.start
        distance = self._orient * (d[0] * rel[:, 1] - d[1] * rel[:, 0]) / self._length
        return np.asarray(distance, dtype=np.float64)

    def update(
        self,
        anchors: NDArray[np.floating],
        tracker_ids: NDArray[np.integer],
        heights: NDArray[np.floating],
        ts: float,
        class_id: NDArray[np.integer] | None = None,
    ) -> NDArray[np.int8]:
        """Feed one frame's tracked people; count the crossings it completes.

        Args:
            anchors: ``(N, 2)`` anchor points (feet) in pixels of :attr:`frame_size`.
            tracker_ids: ``(N,)`` track ids; negative ids (unconfirmed tracks) are ignored.
            heights: ``(N,)`` box heights in pixels (scale of the teleport guard).
            ts: the frame's time in seconds (video or wall clock).
            class_id: ``(N,)`` COCO class ids; needed by a line with ``classes``.

        Returns:
            ``(N,)`` int8: ``+1`` crossed in, ``-1`` crossed out, ``0`` no crossing completed
            by this observation (a lost track's crossing is counted without a row).

        Raises:
            ValueError: the line has ``classes`` but no ``class_id`` was given.
        """
        if self.class_ids is not None and class_id is None:
            raise ValueError(f"line {self.line_id!r} counts by class: class_id is needed")
        classes = class_id if class_id is not None else np.full(len(anchors), -1)
        result = np.zeros(len(anchors), dtype=np.int8)
        self._frame_ids = {int(t) for t in tracker_ids if t >= 0}
        if len(anchors):
            distances = self.signed_distance(anchors)
            for i, (track_id, distance) in enumerate(zip(tracker_ids, distances, strict=True)):
                if track_id < 0:
                    continue
                point = (float(anchors[i, 0]), float(anchors[i, 1]))
                result[i] = self._step(
                    int(track_id), point, float(distance), float(heights[i]), ts, int(classes[i])
                )
        self._forget(ts)
        return result

    def _step(
        self,
        track_id: int,
        point: tuple[float, float],
        distance: float,
        height: float,
        ts: float,
        class_id: int,
    ) -> int:
        side = 0 if abs(distance) < _EPS else (1 if distance > 0 else -1)
        far = abs(distance) >= self._min_distance
        state = self._tracks.get(track_id)
        if state is None or _step_length(state.point, point) > self.rules.max_step_heights * max(
            height, 1.0
        ):
            new = _TrackState(point, ts, side, run=1, far=far)
            if state is None and self._entered_over_the_line(
                track_id, point, side, distance, height, ts
            ):
                new.entry_from = abs(distance)
            if self.class_ids is not None:
                new.vote(class_id)
            self._tracks[track_id] = new
            return self._settle(new, ts, distance)
        if self.class_ids is not None:  # only a class line needs the tally
            state.vote(class_id)
        if side == 0:
            # Exactly on the line: no side to settle on; keep the last point off the line as
            # the start of the next movement, so stepping on and then over still crosses.
            state.seen_ts = ts
            return 0
        if side != state.side and self._segment_crosses(state.point, point):
            state.entry_from = 0.0  # back over the line: it did not come in from the strip
            if state.settled == -side:
                # From a settled side: counts once it settles here.
                state.pending, state.settled = side, 0
            elif state.pending == -side:
                # Back over the line before settling on the far side: it never crossed, and
                # it is again on the side it had settled on.
                state.pending, state.settled = 0, side
            else:
                state.settled = 0
        if side == state.side:
            state.run += 1
            state.far = state.far or far
        else:
            state.side, state.run, state.far = side, 1, far
        state.point, state.seen_ts = point, ts
        return self._settle(state, ts, distance)

    def _entered_over_the_line(
        self,
        track_id: int,
        point: tuple[float, float],
        side: int,
        distance: float,
        height: float,
        ts: float,
    ) -> bool:
        """Whether a track first seen at ``point`` came into the picture across the line."""
        if side not in self._entry_sides or abs(distance) > self.rules.entry_heights * height:
            return False
        along = float(np.dot(np.subtract(point, self.start), self.end - self.start))
        if not 0.0 <= along <= self._length**2:
            return False  # beside the line's end, not past the segment
        reach = self.rules.max_step_heights * max(height, 1.0)
        return not any(
            other_id != track_id
            and other_id not in self._frame_ids
            and ts - other.seen_ts <= self.rules.handoff_s
            and _step_length(other.point, point) <= reach
            for other_id, other in self._tracks.items()
        )

    def _settle(self, state: _TrackState, ts: float, distance: float) -> int:
        """Settle the track on its side when it qualifies; returns a crossing it completes."""
        if state.side == 0 or state.run < self.rules.min_frames or not state.far:
            return 0
        if state.entry_from and abs(distance) >= state.entry_from + self._min_distance:
            # Moved in from where it was first seen, just past an edge line: it came from
            # the strip, a crossing from there.
            state.entry_from, state.pending = 0.0, state.side
        state.settled = state.side
        if state.pending != state.side:
            state.pending = 0  # settled back where it came from (e.g. round the line's end)
            return 0
        return self._commit(state, ts)

    def _commit(self, state: _TrackState, ts: float) -> int:
        direction, state.pending = state.pending, 0
        if self.class_ids is not None and state.majority_class() not in self.class_ids:
            return 0  # crossed, but not of the line's classes
        last = state.last_counted.get(direction)
        if last is not None and ts - last < self.rules.cooldown_s:
            return 0
        state.last_counted[direction] = ts
        if direction > 0:
            self.in_count += 1
        else:
            self.out_count += 1
        return direction

    def _segment_crosses(self, p: tuple[float, float], q: tuple[float, float]) -> bool:
        """Whether the movement p->q intersects the line segment (end points included)."""
        a, b = self.start, self.end
        d1 = _cross(b - a, np.subtract(p, a))
        d2 = _cross(b - a, np.subtract(q, a))
        d3 = _cross(np.subtract(q, p), a - np.asarray(p))
        d4 = _cross(np.subtract(q, p), b - np.asarray(p))
        # p and q on strictly opposite sides of the line, a and b not strictly on one side of
        # the movement: the segments meet (a line end touched by the movement counts).
        return d1 * d2 < 0 and d3 * d4 <= 0

    def _forget(self, ts: float) -> None:
        for track_id, state in list(self._tracks.items()):
            unseen = ts - state.seen_ts
            if state.pending and state.pending == state.side and unseen > self.rules.lost_s:
                self._commit(state, ts)  # lost on the far side: it crossed and left
            if unseen > self.rules.forget_s:
                del self._tracks[track_id]

    def take_counts(self) -> LineCount:
        """The crossings since the last call, as the message's :class:`LineCount`; resets them."""
        counts = LineCount(line_id=self.line_id, in_count=self.in_count, out_count=self.out_count)
        self.in_count = self.out_count = 0
        return counts


def _cross(u: NDArray[np.float64], v: NDArray[np.float64]) -> float:
    return float(u[0] * v[1] - u[1] * v[0])


def _step_length(p: tuple[float, float], q: tuple[float, float]) -> float:
    return float(np.hypot(q[0] - p[0], q[1] - p[1]))
