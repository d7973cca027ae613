"""Per-zone counts accumulated over one publishing interval, turned into a CountMessage."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from crowdwatch.contracts.messages import CountMessage, CountMethod, LineCount, ZoneCount
from crowdwatch.edge.density import density_per_m2
from crowdwatch.edge.dwell import WaitSummary


class IntervalCounts:
    """Counts of every zone of one camera over the analysed frames of one interval.

    Every zone is reported in every message, with explicit zeros when nobody is there: a
    missing zone would look like "no data" downstream, which is a different thing.  A zone
    counted by density map has fractional counts per frame; the message rounds ``count``
    and ``count_max`` and averages the fractions.

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
        self._last = dict.fromkeys(self.zone_ids, 0.0)
        self._max = dict.fromkeys(self.zone_ids, 0.0)
        self._sum = dict.fromkeys(self.zone_ids, 0.0)

    def add(self, counts: Mapping[str, float]) -> None:
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

    def finish(
        self,
        ts: datetime,
        interval_s: float,
        *,
        waits: Mapping[str, WaitSummary] | None = None,
        areas_m2: Mapping[str, float] | None = None,
        lines: Sequence[LineCount] = (),
        methods: Mapping[str, CountMethod] | None = None,
        flags: Mapping[str, tuple[str, int | None]] | None = None,
        vehicles: Mapping[str, int] | None = None,
        speeds_kmh: Mapping[str, float | None] | None = None,
        densities: Mapping[str, float] | None = None,
        queues_m: Mapping[str, float] | None = None,
    ) -> CountMessage | None:
        """Close the interval: build its message and start a new, empty one.

        Args:
            ts: end of the interval, UTC.
            interval_s: length of the interval in seconds.
            waits: waiting times per zone at the interval's end (``None``: not tracking).
            areas_m2: ground area per zone (``None``: the camera is not calibrated); the
                density is the zone's count at the interval's end over its area, the peak
                density its largest count during the interval over its area.
            lines: in/out crossings of each counting line during the interval.
            methods: what produced each zone's count at the interval's end (``None``: unsaid).
            flags: per zone whose last density reading was refused, why and the refused count
                (:mod:`crowdwatch.edge.plausibility`); the others are unflagged.
            vehicles: motor vehicles per zone at the interval's end (``None``: the camera
                counts no vehicles).
            speeds_kmh: the vehicles' space-mean speed per zone over the interval (``None``:
                not calibrated; a zone's ``None``: no vehicle there had a measured speed).
            densities: vehicles per km per lane of the road zones with lanes (others absent).
            queues_m: the longest queue of each approach zone (others absent).

        Returns:
            The message, or ``None`` when no frame was analysed (the camera was offline or
            stalled: that is "no data", never zero people).
        """
        if self.frames == 0:
            return None
        zones = [
            ZoneCount(
                zone_id=zone_id,
                count=round(self._last[zone_id]),
                count_max=round(self._max[zone_id]),
                count_mean=round(self._sum[zone_id] / self.frames, 3),
                longest_wait_s=waits[zone_id].longest_s if waits is not None else None,
                median_wait_s=waits[zone_id].median_s if waits is not None else None,
                density_per_m2=(
                    density_per_m2(self._last[zone_id], areas_m2[zone_id])
                    if areas_m2 is not None
                    else None
                ),
                peak_density_per_m2=(
                    density_per_m2(self._max[zone_id], areas_m2[zone_id])
                    if areas_m2 is not None
                    else None
                ),
                method=methods[zone_id] if methods is not None else None,
                count_flag=flags[zone_id][0] if flags and zone_id in flags else None,
                flagged_count=flags[zone_id][1] if flags and zone_id in flags else None,
                vehicles=vehicles[zone_id] if vehicles is not None else None,
                mean_speed_kmh=speeds_kmh[zone_id] if speeds_kmh is not None else None,
                vehicle_density=(densities or {}).get(zone_id),
                queue_length_m=(queues_m or {}).get(zone_id),
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
            lines=list(lines),
        )
        self._reset()
        return message
