"""Whether a zone's density count is physically possible; no I/O.

A density counter on a scene it was not trained on can read hundreds of people where a
handful stand (1,167 for 4 on one shore webcam; 2,234 on an evening frame).  Such a number must
not reach the phone page as a count.  Two physical bounds catch the absurd ones:

* **room**: a zone cannot hold more people than stand on its ground: ``max_per_m2`` times its
  area on a calibrated camera (6 per m² is a crush; a beach holds far fewer), else one person
  per ``min_px_per_person`` pixels of its polygon (heads packed tighter than the counter can
  resolve);
* **jump**: between two density passes a crowd changes by at most ``jump_floor +
  jump_ratio x last + max_change_per_s x seconds``, measured from the last *accepted* count,
  so a run of flagged passes does not move the reference, while a real change is accepted
  once enough time has passed for people to walk in.

A refused pass is not published: the zone keeps its last usable count (or detection) and its
message says why (:attr:`~crowdwatch.contracts.messages.ZoneCount.count_flag`).

Example:
    >>> from crowdwatch.contracts.config import LocalizedName, PlausibilityConfig, Zone
    >>> zone = Zone(id="sand", name=LocalizedName(zh="沙滩", en="Sand"),
    ...             polygon=[(0, 0), (100, 0), (100, 100), (0, 100)])
    >>> check = CountPlausibility([zone], {"sand": 50.0}, PlausibilityConfig())
    >>> check.check("sand", 40.0, ts=0.0) is None
    True
    >>> check.check("sand", 400.0, ts=1.0)
    'implausible: 400 people on 50 m² is 8.0 per m², more than the 6 that can stand there'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from crowdwatch.contracts.config import PlausibilityConfig, Zone


@dataclass(frozen=True, slots=True)
class ZoneRoom:
    """How many people a zone can hold at most, and why (for the flag's reason)."""

    max_people: float
    basis: str


def polygon_area_px(polygon: Sequence[tuple[float, float]]) -> float:
    """Area of a polygon in square pixels (shoelace formula).

    Example:
        >>> polygon_area_px([(0, 0), (4, 0), (4, 3), (0, 3)])
        12.0
    """
    xy = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    x, y = xy[:, 0], xy[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def zone_room(zone: Zone, area_m2: float | None, rules: PlausibilityConfig) -> ZoneRoom | None:
    """The most people ``zone`` can hold, or ``None`` when no bound applies.

    Args:
        zone: the zone (polygon in the camera's ``frame_size`` pixels, optional ``max_per_m2``).
        area_m2: its ground area on a calibrated camera, else ``None``.
        rules: ``edge.dense.plausibility``.
    """
    per_m2 = zone.max_per_m2 if zone.max_per_m2 is not None else rules.max_per_m2
    if area_m2 is not None and per_m2 is not None:
        return ZoneRoom(per_m2 * area_m2, f"{area_m2:.0f} m² at most {per_m2:g} per m²")
    if rules.min_px_per_person is not None:
        area_px = polygon_area_px(zone.polygon)
        return ZoneRoom(
            area_px / rules.min_px_per_person,
            f"{area_px:.0f} px at one person per {rules.min_px_per_person:g} px",
        )
    return None


class CountPlausibility:
    """Checks each density pass of a camera's zones against the room and jump bounds.

    Args:
        zones: the camera's zones.
        areas_m2: ground area per zone id of a calibrated camera, else ``None``.
        rules: ``edge.dense.plausibility``.
    """

    def __init__(
        self,
        zones: Sequence[Zone],
        areas_m2: Mapping[str, float] | None,
        rules: PlausibilityConfig,
    ) -> None:
        self.rules = rules
        self.areas_m2 = dict(areas_m2 or {})
        self.per_m2 = {
            z.id: z.max_per_m2 if z.max_per_m2 is not None else rules.max_per_m2 for z in zones
        }
        self.rooms = {z.id: zone_room(z, self.areas_m2.get(z.id), rules) for z in zones}
        self.accepted: dict[str, tuple[float, float]] = {}
        """zone id -> (count, ts) of its last accepted pass"""

    def check(self, zone_id: str, count: float, ts: float) -> str | None:
        """``None`` when ``count`` is possible (it becomes the reference), else the reason.

        Args:
            zone_id: a zone of the camera.
            count: people the density map puts in it.
            ts: the frame's time in seconds.

        Returns:
            ``None``, or one line saying which bound the count breaks.
        """
        reason = self._room(zone_id, count) or self._jump(zone_id, count, ts)
        if reason is None:
            self.accepted[zone_id] = (count, ts)
        return reason

    def _room(self, zone_id: str, count: float) -> str | None:
        room = self.rooms[zone_id]
        if room is None or count <= room.max_people:
            return None
        area, per_m2 = self.areas_m2.get(zone_id), self.per_m2[zone_id]
        if area is not None and per_m2 is not None:
            return (
                f"implausible: {count:.0f} people on {area:.0f} m² is {count / area:.1f} per "
                f"m², more than the {per_m2:g} that can stand there"
            )
        return (
            f"implausible: {count:.0f} people, more than the {room.max_people:.0f} the zone's "
            f"{room.basis} holds"
        )

    def _jump(self, zone_id: str, count: float, ts: float) -> str | None:
        rate = self.rules.max_change_per_s
        if rate is None or zone_id not in self.accepted:
            return None
        last, last_ts = self.accepted[zone_id]
        seconds = max(ts - last_ts, 0.0)
        allowed = self.rules.jump_floor + self.rules.jump_ratio * last + rate * seconds
        if abs(count - last) <= allowed:
            return None
        return (
            f"implausible: {last:.0f} to {count:.0f} people in {seconds:.0f} s, a jump no "
            f"crowd makes (at most {allowed:.0f})"
        )
