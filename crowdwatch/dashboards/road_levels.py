"""The pages' congestion level of each road section, held with hysteresis between reads.

The raw level of each new count (:func:`~crowdwatch.contracts.site_kinds.road_level`) flips
the wall between two colours every few seconds when a section's speed wobbles around a
boundary (35 km/h on an expressway).  The pages show the level of
:class:`~crowdwatch.contracts.congestion.CongestionLevels` instead: a section changes colour
only once its speed (or its density's equivalent speed) is past the boundary by a margin
and has stayed there ``hold_s`` seconds, on the counts' own clock, so reading the same
count twice holds nothing longer.  One memory per web process, keyed by road and zone
(``None``: the road as a whole, from its slowest zone).
"""

from __future__ import annotations

import threading
from datetime import datetime

from crowdwatch.contracts.config import Site
from crowdwatch.contracts.congestion import CongestionLevels, SectionLevel
from crowdwatch.contracts.site_kinds import road_level, road_thresholds

SectionKey = tuple[str, str | None]
"""``(site_id, zone_id)``; ``zone_id`` ``None`` for the road as a whole."""


class RoadLevelMemory:
    """Each road section's level over time, as the pages show it.

    Args:
        margin_kmh: see :class:`~crowdwatch.contracts.congestion.CongestionLevels`.
        hold_s: see :class:`~crowdwatch.contracts.congestion.CongestionLevels`.
    """

    def __init__(self, margin_kmh: float = 2.0, hold_s: float = 120.0) -> None:
        self.margin_kmh = margin_kmh
        self.hold_s = hold_s
        self._sections: dict[SectionKey, CongestionLevels] = {}
        # The live hub reads in a worker thread and the site endpoints in others.
        self._lock = threading.Lock()

    def grade(
        self,
        site: Site,
        key: SectionKey,
        *,
        speed_kmh: float | None,
        vehicles: int | None,
        density: float | None,
        ts: datetime | None,
    ) -> SectionLevel | None:
        """The section's held level after this reading.

        Args:
            site: the road (its thresholds).
            key: the section.
            speed_kmh: its measured mean speed, if any.
            vehicles: its vehicles, if counted.
            density: its vehicles per km per lane, if it has lanes.
            ts: the count's time; ``None``: no count (no level).

        Returns:
            The held level; ``None`` where :func:`road_level` has none (no data), which
            also forgets the section's past, so that its next reading is shown as it is.
        """
        raw = road_level(site, speed_kmh, vehicles, density)
        with self._lock:
            if raw is None or ts is None:
                self._sections.pop(key, None)
                return None
            thresholds = road_thresholds(site)
            levels = self._sections.get(key)
            if levels is None or levels.thresholds != thresholds:
                levels = CongestionLevels(thresholds, self.margin_kmh, self.hold_s)
                self._sections[key] = levels
            at = ts.timestamp()
            if speed_kmh is not None:
                return levels.update_speed(speed_kmh, at)
            if density is not None:
                return levels.update_density(density, at)
            # An empty road: free flow.
            return levels.update_speed(thresholds.free_flow_kmh, at)
