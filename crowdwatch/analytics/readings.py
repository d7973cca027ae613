"""What each configured zone and site shows right now: a count, or a reason there is none.

The database keeps the newest count of every zone and the newest health report of every
camera; this module joins them with the site config and decides, at one instant, whether a
count is usable.  A count older than ``alerts.stale_after_s`` is *stale* and a camera whose
newest status is ``offline`` makes its zones *offline*: both mean "no data", never zero
people, so neither the alert engine nor the phone page mistakes a dead camera for an empty
beach.  Everything here is pure (rows + config + now -> readings) and tested without a database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from crowdwatch.contracts.config import CrowdwatchConfig, Site, Zone
from crowdwatch.contracts.ground import approach_length_m, derived_capacities
from crowdwatch.contracts.messages import CameraState, CountMethod
from crowdwatch.storage.queries import CameraStatusRow, ZoneLatest


class ZoneStatus(StrEnum):
    OK = "ok"
    """a fresh count from a working camera"""
    STALE = "stale"
    """the newest count is older than ``alerts.stale_after_s``"""
    OFFLINE = "offline"
    """the camera reported itself offline"""
    NO_DATA = "no_data"
    """the zone never reported"""


# Worst first: a site shows the worst status of its zones.
_SEVERITY = {ZoneStatus.OK: 0, ZoneStatus.NO_DATA: 1, ZoneStatus.STALE: 2, ZoneStatus.OFFLINE: 3}


@dataclass(frozen=True, slots=True)
class ZoneReading:
    """One configured zone at one instant."""

    site: Site
    camera_id: str
    zone: Zone
    status: ZoneStatus
    count: int | None
    """people now; ``None`` unless ``status`` is OK"""
    ts: datetime | None
    """time of the newest count ever received (even a stale one); ``None`` if never"""
    age_s: float | None
    longest_wait_s: float | None = None
    """longest wait of the people now in the zone (OK status and a tracking edge only)"""
    density_per_m2: float | None = None
    """people per m² (OK status and a calibrated camera only)"""
    method: CountMethod | None = None
    """what produced ``count`` (OK status only; None where the edge did not say)"""
    area_capacity: int | None = None
    """the capacity from the zone's ground area (``reports.sites``), for a zone with none of
    its own (:func:`crowdwatch.contracts.ground.derived_capacities`)"""
    vehicles: int | None = None
    """motor vehicles in the zone (OK status and a camera that counts vehicles only)"""
    mean_speed_kmh: float | None = None
    """their space-mean speed (OK status, a calibrated camera and a measured speed only)"""
    vehicle_density: float | None = None
    """vehicles per km per lane (OK status and a road zone with lanes only)"""
    queue_length_m: float | None = None
    """the queue back from the stop line (OK status and an approach zone only)"""

    @property
    def approach_m(self) -> float | None:
        """The length of an approach zone, metres (its ``length_m`` or from its camera's
        calibration); ``None`` for a zone that is no approach or whose length is unknown."""
        if self.zone.approach is None:  # most zones: no camera lookup on the alert hot path
            return None
        camera = next((c for c in self.site.cameras if c.id == self.camera_id), None)
        return approach_length_m(self.zone, camera.calibration if camera is not None else None)

    @property
    def queue_share(self) -> float | None:
        """The queue over its approach's length: 1.0 reaches its upstream end (spills back)."""
        if self.queue_length_m is None:
            return None
        length = self.approach_m
        return None if not length else self.queue_length_m / length

    @property
    def capacity(self) -> int:
        """The zone's capacity: its own, else from its ground area, else the site's (as the
        daily report counts it, so an alert at 80 % is the report's yellow level)."""
        if self.zone.capacity is not None:
            return self.zone.capacity
        return self.area_capacity if self.area_capacity is not None else self.site.capacity

    @property
    def occupancy(self) -> float | None:
        return None if self.count is None else self.count / self.capacity


@dataclass(frozen=True, slots=True)
class SiteReading:
    """One configured site at one instant: its zones and their sum."""

    site: Site
    zones: tuple[ZoneReading, ...]
    status: ZoneStatus
    """the worst status of the site's zones"""
    count: int | None
    """sum of the zones with a fresh count; ``None`` when none has one"""
    ts: datetime | None
    age_s: float | None

    @property
    def occupancy(self) -> float | None:
        return None if self.count is None else self.count / self.site.capacity


def zone_status(*, offline: bool, age_s: float | None, stale_after_s: float) -> ZoneStatus:
    """How fresh a zone's newest count is: offline wins, then no data, stale, ok.

    Args:
        offline: the zone's camera last reported itself offline.
        age_s: seconds since the newest count; None when there is none.
        stale_after_s: older counts are stale (no data for alerts, never zero).
    """
    if offline:
        return ZoneStatus.OFFLINE
    if age_s is None:
        return ZoneStatus.NO_DATA
    if age_s > stale_after_s:
        return ZoneStatus.STALE
    return ZoneStatus.OK


def zone_reading(
    site: Site,
    camera_id: str,
    zone: Zone,
    row: ZoneLatest | None,
    status: ZoneStatus,
    age_s: float | None,
    area_capacity: int | None = None,
) -> ZoneReading:
    """One zone's reading from its newest row: the count and its details only when OK;
    ``area_capacity`` from :func:`crowdwatch.contracts.ground.derived_capacities`."""
    ok = row if status is ZoneStatus.OK else None
    return ZoneReading(
        site=site,
        camera_id=camera_id,
        zone=zone,
        status=status,
        count=ok.count if ok is not None else None,
        ts=row.ts if row is not None else None,
        age_s=age_s,
        longest_wait_s=ok.longest_wait_s if ok is not None else None,
        density_per_m2=ok.density_per_m2 if ok is not None else None,
        method=ok.method if ok is not None else None,
        area_capacity=area_capacity,
        vehicles=ok.vehicles if ok is not None else None,
        mean_speed_kmh=ok.mean_speed_kmh if ok is not None else None,
        vehicle_density=ok.vehicle_density if ok is not None else None,
        queue_length_m=ok.queue_length_m if ok is not None else None,
    )


def zone_readings(
    config: CrowdwatchConfig,
    zone_rows: Sequence[ZoneLatest],
    camera_rows: Sequence[CameraStatusRow],
    now: datetime,
    site_id: str | None = None,
) -> list[ZoneReading]:
    """Classify every configured zone, in config order.

    Args:
        config: the site config (which zones exist and which camera sees each).
        zone_rows: newest count per zone (``latest_zone_counts``); unknown zones are ignored.
        camera_rows: newest status per camera (``latest_camera_status``).
        now: the instant to judge freshness at (UTC-aware).
        site_id: only this site's zones; every site's when None.

    Returns:
        One reading per configured zone (of ``site_id``).
    """
    counts = {(r.site_id, r.zone_id): r for r in zone_rows}
    states = {(r.site_id, r.camera_id): r.state for r in camera_rows}
    stale_after = config.alerts.stale_after_s
    derived = derived_capacities(config)
    readings = []
    for site, camera in config.cameras():
        if site_id is not None and site.id != site_id:
            continue
        offline = states.get((site.id, camera.id)) == CameraState.OFFLINE
        for zone in camera.zones:
            row = counts.get((site.id, zone.id))
            ts = row.ts if row is not None else None
            age = (now - ts).total_seconds() if ts is not None else None
            status = zone_status(offline=offline, age_s=age, stale_after_s=stale_after)
            area = derived.get((site.id, zone.id))
            readings.append(zone_reading(site, camera.id, zone, row, status, age, area))
    return readings


def site_readings(zones: Sequence[ZoneReading], config: CrowdwatchConfig) -> list[SiteReading]:
    """Group zone readings by site, in config order (every site, even one with no data).

    Args:
        zones: the output of :func:`zone_readings`.
        config: the site config.

    Returns:
        One reading per configured site.
    """
    by_site: dict[str, list[ZoneReading]] = {s.id: [] for s in config.sites}
    for reading in zones:
        by_site.setdefault(reading.site.id, []).append(reading)
    out = []
    for site in config.sites:
        members = by_site[site.id]
        fresh = [z.count for z in members if z.count is not None]
        seen = [(z.ts, z.age_s) for z in members if z.ts is not None]
        newest_ts, newest_age = max(seen, key=lambda pair: pair[0]) if seen else (None, None)
        status = max((z.status for z in members), key=_SEVERITY.__getitem__, default=None)
        out.append(
            SiteReading(
                site=site,
                zones=tuple(members),
                status=status or ZoneStatus.NO_DATA,
                count=sum(fresh) if fresh else None,
                ts=newest_ts,
                age_s=newest_age,
            )
        )
    return out
