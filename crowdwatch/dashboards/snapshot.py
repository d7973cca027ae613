"""The live picture every page shows, as JSON: sites, zones, trends, queues' waits, alerts.

One :class:`Snapshot` is read from the database in four short statements (newest counts,
camera health, firing alerts, the trend window) and turned into the JSON of ``/api/state``
and of each ``state`` event of ``/api/stream``.  The phone page, the wall and the dispatcher
page all draw from it, so the three never disagree about a figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from crowdwatch.analytics.readings import SiteReading, ZoneReading, site_readings, zone_readings
from crowdwatch.contracts.config import CrowdwatchConfig, Site
from crowdwatch.contracts.congestion import SectionLevel
from crowdwatch.contracts.site_kinds import (
    DENSITY_SOURCE_TEXT,
    LEVEL_SOURCE_DENSITY,
    SITE_KINDS,
    SPILLBACK_SHARE,
    level_source,
    road_level,
    spec,
)
from crowdwatch.dashboards.road_levels import RoadLevelMemory, SectionKey
from crowdwatch.dashboards.trends import earlier_means, site_earlier, trend
from crowdwatch.storage.queries import (
    AlertRow,
    ZoneLatest,
    active_alerts,
    latest_camera_status,
    latest_zone_counts,
)


def iso(ts: datetime | None) -> str | None:
    """UTC ISO 8601 with a ``Z`` (what JavaScript's ``Date`` parses everywhere)."""
    return None if ts is None else ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The database's view of the district at one instant."""

    at: datetime
    sites: list[SiteReading]
    zone_rows: dict[tuple[str, str], ZoneLatest]
    earlier: dict[tuple[str, str], float]
    alerts: list[AlertRow] = field(default_factory=list)
    road_levels: dict[SectionKey, SectionLevel] = field(default_factory=dict)
    """each road section's level held with hysteresis (:mod:`.road_levels`); a section
    missing here is shown at its raw level"""


def read_snapshot(
    conn: psycopg.Connection,
    config: CrowdwatchConfig,
    now: datetime,
    levels: RoadLevelMemory | None = None,
    *,
    site_id: str | None = None,
) -> Snapshot:
    """Read the live picture.

    Args:
        conn: an open (autocommit) connection.
        config: the site config: every configured site appears, even one without data.
        now: the instant to judge freshness and trends at.
        levels: the process's road levels, held with hysteresis across reads; ``None``:
            each road at the raw level of its newest count.
        site_id: only this site (one site's page: its rows, no alerts), instead of the
            district (at 20,000 zones reading the district for one site cost ~0.6 s of CPU).

    Returns:
        The snapshot.

    Raises:
        StorageError: a query failed or the database is away.
    """
    zones = latest_zone_counts(conn, site_id)
    cameras = latest_camera_status(conn, site_id)
    alerts = active_alerts(conn) if site_id is None else []
    earlier = earlier_means(conn, now, site_id)
    readings = site_readings(zone_readings(config, zones, cameras, now, site_id), config)
    if site_id is not None:
        readings = [r for r in readings if r.site.id == site_id]
    rows = {(r.site_id, r.zone_id): r for r in zones}
    held = road_levels(readings, levels) if levels is not None else {}
    return Snapshot(now, readings, rows, earlier, alerts, held)


def road_levels(
    readings: Sequence[SiteReading], levels: RoadLevelMemory
) -> dict[SectionKey, SectionLevel]:
    """Each road zone's held level, and each road's from its slowest zone (the police act on
    the worst direction; without speeds, its densest)."""
    held: dict[SectionKey, SectionLevel] = {}
    for reading in readings:
        site = reading.site
        if not spec(site.kind).vehicles:
            continue
        for z in reading.zones:
            graded = levels.grade(
                site,
                (site.id, z.zone.id),
                speed_kmh=z.mean_speed_kmh,
                vehicles=z.vehicles,
                density=z.vehicle_density,
                ts=z.ts if z.count is not None else None,
            )
            if graded is not None:
                held[(site.id, z.zone.id)] = graded
        fresh = [z for z in reading.zones if z.count is not None]
        speeds = [z.mean_speed_kmh for z in fresh if z.mean_speed_kmh is not None]
        densities = [z.vehicle_density for z in fresh if z.vehicle_density is not None]
        counted = [z.vehicles for z in fresh if z.vehicles is not None]
        graded = levels.grade(
            site,
            (site.id, None),
            speed_kmh=min(speeds, default=None),
            vehicles=sum(counted) if counted else None,
            density=max(densities, default=None),
            ts=max((z.ts for z in fresh if z.ts is not None), default=None),
        )
        if graded is not None:
            held[(site.id, None)] = graded
    return held


def _wait(row: ZoneLatest | None, reading: ZoneReading) -> float | None:
    # A wait from a stale or offline camera is as unknown as its count.
    if row is None or reading.count is None or row.longest_wait_s is None:
        return None
    return round(row.longest_wait_s, 1)


def _queue(reading: ZoneReading) -> tuple[float, float] | None:
    # Only an approach with a measured length has a queue to show (and to call a spill-back).
    share = reading.queue_share
    if share is None or reading.queue_length_m is None:
        return None
    return reading.queue_length_m, share


def _method(row: ZoneLatest | None, reading: ZoneReading) -> str | None:
    # The method belongs to the count shown: none when the count is withheld (stale, offline).
    if row is None or reading.count is None or row.method is None:
        return None
    return row.method.value


def _held(row: ZoneLatest | None, reading: ZoneReading) -> ZoneLatest | None:
    # Like the method, a flag belongs to the count shown: a withheld count holds nothing back.
    if row is None or reading.count is None or row.count_flag is None:
        return None
    return row


def traffic_json(
    site: Site,
    vehicles: int | None,
    speed_kmh: float | None,
    density: float | None = None,
    held: SectionLevel | None = None,
    queue: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Vehicles, mean speed, density, congestion level and stop-line queue (``TrafficOut``)
    of a road or road zone: the ``held`` level (with hysteresis) where given, else the raw
    one; its ``level_source`` says what it was graded from (``density``: a model); ``queue``:
    metres and share of the approach (an approach zone, or a road's fullest approach)."""
    raw = road_level(site, speed_kmh, vehicles, density)
    level = held.level if held is not None and raw is not None else raw
    source = level_source(speed_kmh, density) if level is not None else None
    return {
        "vehicles": vehicles,
        "speed_kmh": _round(speed_kmh, 1),
        "density": _round(density, 1),
        "level": None if level is None else int(level),
        "level_name": None if level is None else {"zh": level.zh, "en": level.en},
        "level_source": source,
        "level_note": (
            {"zh": DENSITY_SOURCE_TEXT.zh, "en": DENSITY_SOURCE_TEXT.en}
            if source == LEVEL_SOURCE_DENSITY
            else None
        ),
        "queue_m": None if queue is None else _round(queue[0], 1),
        "queue_share": None if queue is None else _round(queue[1], 2),
        "spills_back": None if queue is None else queue[1] >= SPILLBACK_SHARE,
    }


def _site_traffic(
    site: Site, zones: list[dict[str, Any]], held: SectionLevel | None
) -> dict[str, Any] | None:
    # The police act on the worst direction of a road, so its slowest zone speaks for it
    # (an average over an empty outbound lane would hide an inbound jam).
    if not spec(site.kind).vehicles:
        return None
    shown = [z["traffic"] for z in zones if z["traffic"] is not None]
    counted = [t["vehicles"] for t in shown if t["vehicles"] is not None]
    speeds = [t["speed_kmh"] for t in shown if t["speed_kmh"] is not None]
    densities = [t["density"] for t in shown if t["density"] is not None]
    # Likewise its fullest approach: the queue nearest to spilling back.
    queues = [(t["queue_m"], t["queue_share"]) for t in shown if t["queue_share"] is not None]
    vehicles = sum(counted) if counted else None
    return traffic_json(
        site,
        vehicles,
        min(speeds, default=None),
        max(densities, default=None),
        held,
        max(queues, key=lambda q: q[1], default=None),
    )


def zone_json(
    reading: ZoneReading,
    row: ZoneLatest | None = None,
    earlier: Mapping[tuple[str, str], float] | None = None,
    levels: Mapping[SectionKey, SectionLevel] | None = None,
) -> dict[str, Any]:
    """One zone: count, share of capacity, status, trend, longest wait, age, ``method``
    (``detect``: people counted one by one; ``dense``: a density estimate; None: unknown),
    and ``count_flag``: why the edge refused its newest reading and kept ``count`` at the last
    usable one (None: the count is the newest reading), with the refused ``flagged_count``."""
    key = (reading.site.id, reading.zone.id)
    direction = trend(reading.count, (earlier or {}).get(key), reading.capacity)
    held = _held(row, reading)
    return {
        "zone_id": reading.zone.id,
        "camera_id": reading.camera_id,
        "name": {"zh": reading.zone.name.zh, "en": reading.zone.name.en},
        "capacity": reading.capacity,
        "count": reading.count,
        "occupancy": _round(reading.occupancy, 4),
        "status": reading.status.value,
        "trend": None if direction is None else direction.value,
        "longest_wait_s": _wait(row, reading),
        "method": _method(row, reading),
        "count_flag": None if held is None else held.count_flag,
        "flagged_count": None if held is None else held.flagged_count,
        "ts": iso(reading.ts),
        "age_s": _round(reading.age_s, 1),
        "traffic": (
            traffic_json(
                reading.site,
                reading.vehicles,
                reading.mean_speed_kmh,
                reading.vehicle_density,
                (levels or {}).get(key),
                _queue(reading),
            )
            if spec(reading.site.kind).vehicles
            else None
        ),
    }


def site_json(
    reading: SiteReading,
    rows: Mapping[tuple[str, str], ZoneLatest] | None = None,
    earlier: Mapping[tuple[str, str], float] | None = None,
    held: Mapping[SectionKey, SectionLevel] | None = None,
) -> dict[str, Any]:
    """One site with its zones (the shape of ``/api/sites``, plus trends and waits); a
    road's levels are the ``held`` ones (:func:`road_levels`) where given."""
    site = reading.site
    rows = rows or {}
    earlier = earlier or {}
    held = held or {}
    zones = [zone_json(z, rows.get((site.id, z.zone.id)), earlier, held) for z in reading.zones]
    fresh = [(site.id, z.zone.id) for z in reading.zones if z.count is not None]
    direction = trend(reading.count, site_earlier(fresh, earlier), site.capacity)
    waits = [z["longest_wait_s"] for z in zones if z["longest_wait_s"] is not None]
    return {
        "id": site.id,
        "kind": site.kind.value,
        "name": {"zh": site.name.zh, "en": site.name.en},
        "location": {"lat": site.location.lat, "lon": site.location.lon},
        "capacity": site.capacity,
        "department": site.department.value,
        "count": reading.count,
        "occupancy": _round(reading.occupancy, 4),
        "status": reading.status.value,
        "trend": None if direction is None else direction.value,
        "longest_wait_s": max(waits) if waits else None,
        "ts": iso(reading.ts),
        "age_s": _round(reading.age_s, 1),
        "traffic": _site_traffic(site, zones, held.get((site.id, None))),
        "zones": zones,
    }


def alert_json(alert: AlertRow, config: CrowdwatchConfig | None = None) -> dict[str, Any]:
    """One alert, with who acknowledged it and its escalation level."""
    return {
        "id": alert.id,
        "alert_key": alert.alert_key,
        "site_id": alert.site_id,
        "zone_id": alert.zone_id,
        "rule_id": alert.rule_id,
        "department": alert_department(alert, config),
        "severity": alert.severity,
        "state": alert.state,
        "value": alert.value,
        "threshold": alert.threshold,
        "started_at": iso(alert.started_at),
        "resolved_at": iso(alert.resolved_at),
        "summary": {"zh": alert.summary_zh, "en": alert.summary_en},
        "acknowledged_at": iso(alert.acknowledged_at),
        "acknowledged_by": alert.acknowledged_by,
        "escalation_level": alert.escalation_level,
        "escalated_at": iso(alert.escalated_at),
    }


def alert_department(alert: AlertRow, config: CrowdwatchConfig | None) -> str | None:
    """The department an alert goes to: its own column, else its site's in the config."""
    if alert.department:
        return alert.department
    site = _site(config, alert.site_id)
    return None if site is None else site.department.value


def _site(config: CrowdwatchConfig | None, site_id: str) -> Site | None:
    if config is None:
        return None
    return next((s for s in config.sites if s.id == site_id), None)


def state_json(
    config: CrowdwatchConfig,
    snapshot: Snapshot | None,
    *,
    database_ok: bool,
    detail: str | None = None,
    generated_at: datetime | None = None,
) -> dict[str, Any]:
    """The body of ``/api/state`` and of every ``state`` event of ``/api/stream``.

    Args:
        config: the site config.
        snapshot: the newest snapshot read (the last good one while the database is away);
            None before any read succeeded.
        database_ok: whether the newest read succeeded.
        detail: why it failed.
        generated_at: when this state is sent (default now).

    Returns:
        ``{generated_at, district, stale_after_s, database: {ok, detail, as_of}, kinds,
        sites, alerts}``; ``database.as_of`` is when ``sites`` were read, so a page can say how old
        the figures it keeps are.
    """
    sites: Sequence[dict[str, Any]] = []
    alerts: Sequence[dict[str, Any]] = []
    if snapshot is not None:
        sites = [
            site_json(r, snapshot.zone_rows, snapshot.earlier, snapshot.road_levels)
            for r in snapshot.sites
        ]
        alerts = [alert_json(a, config) for a in snapshot.alerts]
    return {
        "generated_at": iso(generated_at or datetime.now(UTC)),
        "district": {"zh": config.district.name.zh, "en": config.district.name.en},
        "stale_after_s": config.alerts.stale_after_s,
        "database": {
            "ok": database_ok,
            "detail": detail,
            "as_of": None if snapshot is None else iso(snapshot.at),
        },
        # What each kind means to a page (headings, order, the queue and section views):
        # declared once, in crowdwatch.contracts.site_kinds, not in each page's script.
        "kinds": [spec.describe() for spec in SITE_KINDS.values()],
        "sites": sites,
        "alerts": alerts,
    }
