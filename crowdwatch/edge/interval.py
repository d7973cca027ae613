"""Per-zone counts accumulated over one publishing interval, turned into a CountMessage."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from crowdwatch.contracts.messages import CountMessage, ZoneCount


class IntervalCounts:
    """Counts of every zone of one camera over the analysed frames of one interval.

    Every zone is reported in every message, with explicit zeros when nobody is there: a
    missing zone would look like "no data" downstream, which is a different thing.

    Args:
        site_id: the camera's site.
        camera_id: the camera.
        zone_ids: every zone of the camera, in config order.

    Example:
        >>> from datetime import UTC, datetime
        >>> counts = IntervalCounts("stop-a", "cam1", ["platform", "kerb"])
        >>> counts.add({"platform": 3, "kerb": 0})
        >>> counts.add({"platform": 5, "kerb": 0})
        >>> msg = counts.finish(datetime(2026, 10, 1, tzinfo=UTC), interval_s=5.0)
        >>> [(z.zone_id, z.count, z.count_max, z.count_mean) for z in msg.zones]
        [('platform', 5, 5, 4.0), ('kerb', 0, 0, 0.0)]
    """

    def __init__(self, site_id: str, camera_id: str, zone_ids: Sequence[str]) -> None:
        self.site_id = site_id
        self.camera_id = camera_id
        self.zone_ids = list(zone_ids)
        self._reset()

    def _reset(self) -> None:
        self.frames = 0
        self._last = dict.fromkeys(self.zone_ids, 0)
        self._max = dict.fromkeys(self.zone_ids, 0)
        self._sum = dict.fromkeys(self.zone_ids, 0)

    def add(self, counts: Mapping[str, int]) -> None:
        """Record one analysed frame.

        Args:
            counts: people per zone in that frame; every zone of the camera must be there.

        Raises:
            KeyError: a zone of the camera is missing from ``counts``.
        """
        for zone_id in self.zone_ids:
            n = counts[zone_id]
            self._last[zone_id] = n
            self._max[zone_id] = max(self._max[zone_id], n)
            self._sum[zone_id] += n
        self.frames += 1

    def finish(self, ts: datetime, interval_s: float) -> CountMessage | None:
        """Close the interval: build its message and start a new, empty one.

        Args:
            ts: end of the interval, UTC.
            interval_s: length of the interval in seconds.

        Returns:
            The message, or ``None`` when no frame was analysed (the camera was offline or
            stalled: that is "no data", never zero people).
        """
        if self.frames == 0:
            return None
        zones = [
            ZoneCount(
                zone_id=zone_id,
                count=self._last[zone_id],
                count_max=self._max[zone_id],
                count_mean=round(self._sum[zone_id] / self.frames, 3),
            )
            for zone_id in self.zone_ids
        ]
        message = CountMessage(
            site_id=self.site_id,
            camera_id=self.camera_id,
            ts=ts,
            interval_s=interval_s,
            frames=self.frames,
            zones=zones,
            lines=[],  # line crossings need tracking, which this edge does not do yet
        )
        self._reset()
        return message
