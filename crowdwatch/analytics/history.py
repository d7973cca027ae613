"""Recent counts per zone, in memory: what rate-of-rise and forecast rules look back on.

Fed by every count the engine sees (each MQTT count message, each ``zone_latest`` read) and
seeded at start from the raw ``zone_counts`` rows of the longest rule window, so a restarted
engine has its trend at once.  Samples are kept in time order; a duplicate (same zone, same
``ts``) is ignored and a late one is put in its place, so redelivered and out-of-order
messages change nothing.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from datetime import datetime, timedelta

ZoneId = tuple[str, str]
"""(site_id, zone_id)"""


class CountHistory:
    """Counts of each zone over the last ``keep``.

    Args:
        keep: how far back to keep samples (the longest rule window, plus a margin).
    """

    def __init__(self, keep: timedelta) -> None:
        self._keep = keep
        self._times: dict[ZoneId, list[datetime]] = {}
        self._counts: dict[ZoneId, list[int]] = {}

    def add(self, zone: ZoneId, ts: datetime, count: int) -> bool:
        """Record one count.

        Returns:
            False for a duplicate (a sample at this ``ts`` exists) or one older than ``keep``
            before the newest.
        """
        times = self._times.setdefault(zone, [])
        counts = self._counts.setdefault(zone, [])
        if times and ts < times[-1] - self._keep:
            return False
        i = bisect.bisect_left(times, ts)
        if i < len(times) and times[i] == ts:
            return False
        times.insert(i, ts)
        counts.insert(i, count)
        # Trim by the newest sample's time, not the wall clock: replayed history stays usable.
        cut = bisect.bisect_left(times, times[-1] - self._keep)
        if cut:
            del times[:cut]
            del counts[:cut]
        return True

    def extend(self, rows: Iterable[tuple[str, str, datetime, int]]) -> None:
        """Add many ``(site_id, zone_id, ts, count)`` samples (the start-up seed)."""
        for site_id, zone_id, ts, count in rows:
            self.add((site_id, zone_id), ts, count)

    def samples(self, zone: ZoneId, since: datetime) -> list[tuple[datetime, int]]:
        """The samples at or after ``since``, oldest first."""
        times = self._times.get(zone, [])
        i = bisect.bisect_left(times, since)
        return list(zip(times[i:], self._counts[zone][i:], strict=True))

    def rise(self, zone: ZoneId, window: timedelta) -> float | None:
        """People gained over ``window`` up to the newest sample.

        The newest count minus the count at the window's start (the last sample at or before
        it).  Without a sample that old, the oldest sample is used if it covers at least half
        the window (scaled up to the whole window); otherwise there is no value.

        Returns:
            The rise (negative when people leave), or ``None`` without enough history.
        """
        times = self._times.get(zone)
        if not times:
            return None
        counts = self._counts[zone]
        newest, now_count = times[-1], counts[-1]
        start = newest - window
        i = bisect.bisect_right(times, start) - 1
        if i >= 0:
            return float(now_count - counts[i])
        covered = newest - times[0]
        if covered < window / 2:
            return None
        return (now_count - counts[0]) * (window / covered)
