"""How long the people now in a zone have been waiting there (bus stops); no I/O.

A :class:`ZoneWaits` keeps, per tracked person in one zone, when they entered.  Time is the
stream's clock (video time for a file read as fast as possible, wall clock for a live
stream), so a file gives the same waits on any machine.

A person briefly lost (occluded by a bus, missed by the detector, their feet stepping over
the zone's edge for a moment) keeps their wait for ``grace_s`` seconds; only after that are
they gone, and coming back starts a new wait.  People who left without boarding are out of
scope: the zone does not know where they went.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

MAX_WAIT_S = 86_400.0
"""The message contract's bound on a wait (a day): a longer one is a stuck track."""


@dataclass(frozen=True, slots=True)
class WaitSummary:
    """Waiting times of the people in a zone at one moment.

    Attributes:
        people: people counted as waiting (seen in the zone within the grace period).
        longest_s: the longest wait in seconds, 0 when nobody waits (an explicit zero, like
            the counts; ``None`` on the wire means the edge does not track).
        median_s: the median wait in seconds, 0 when nobody waits.
    """

    people: int
    longest_s: float
    median_s: float


@dataclass(slots=True)
class _Visit:
    entered: float
    last_seen: float


class ZoneWaits:
    """Waiting time per tracked person in one zone.

    Args:
        zone_id: the zone.
        grace_s: a person not seen in the zone for at most this long keeps their wait.

    Example:
        >>> waits = ZoneWaits("platform", grace_s=1.0)
        >>> waits.update(np.array([4, 9]), ts=10.0)
        >>> waits.update(np.array([4]), ts=40.0)   # 9 has gone for more than a second
        >>> waits.summary(40.0)
        WaitSummary(people=1, longest_s=30.0, median_s=30.0)
    """

    def __init__(self, zone_id: str, grace_s: float) -> None:
        self.zone_id = zone_id
        self.grace_s = grace_s
        self._visits: dict[int, _Visit] = {}

    def update(self, tracker_ids: NDArray[np.integer], ts: float) -> None:
        """Record the tracked people standing in the zone in one frame.

        Args:
            tracker_ids: ids of the people whose feet are in the zone; negative ids
                (unconfirmed tracks) are ignored.
            ts: the frame's time in seconds.
        """
        for raw in tracker_ids:
            track_id = int(raw)
            if track_id < 0:
                continue
            visit = self._visits.get(track_id)
            if visit is None:
                self._visits[track_id] = _Visit(entered=ts, last_seen=ts)
            else:
                visit.last_seen = ts
        gone = [k for k, v in self._visits.items() if ts - v.last_seen > self.grace_s]
        for track_id in gone:
            del self._visits[track_id]

    def summary(self, ts: float) -> WaitSummary:
        """Waits of the people in the zone now.

        Args:
            ts: now, on the same clock as :meth:`update`.

        Returns:
            Their number, longest and median wait in seconds (capped at a day).
        """
        waits = [
            min(max(ts - v.entered, 0.0), MAX_WAIT_S)
            for v in self._visits.values()
            if ts - v.last_seen <= self.grace_s
        ]
        if not waits:
            return WaitSummary(people=0, longest_s=0.0, median_s=0.0)
        return WaitSummary(
            people=len(waits),
            longest_s=round(max(waits), 1),
            median_s=round(float(np.median(waits)), 1),
        )
