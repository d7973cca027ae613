"""``crowdwatch simulate --history``: a seeded past of holidays and ordinary days in the database.

So that a fresh demo's reports have something to compare with, every site gets one count row
per zone every 15 minutes of its opening hours (06:00-22:00 local) over the days asked for,
and a site with counting lines gets its entries and exits; a road gets a row every 5 minutes
with its vehicles, their mean speed and density (no people), as the live simulator sends
them; the rollups are then refreshed.

How full a day gets, as a share of the holiday curve (:mod:`crowdwatch.simulator.curves`)::

    day kind          beach / scenic spot     bus stop / road
    holiday           by holiday (0.45-1.0)   the same
    ordinary weekend  0.45                    0.5
    workday           0.15                    0.35
    make-up workday   0.12                    0.35

x the season for beaches (July-September 1.0, winter 0.3; the south coast swims into
October) x growth year on year (+8 %) x the day's weather (a seeded log-normal; one day in
ten rainy, x 0.35) x a 15-minute jitter per zone.  The data is simulated: do not read trends
into it.

Rows are written with COPY straight into the raw tables, the way ingest writes them (message
ids ``hist-…``), then :func:`~crowdwatch.storage.rollups.refresh_rollups` runs with a retention
that reaches back over the whole history (the usual raw retention would skip days that old).
The raw rows of days past ``database.retention.raw_days`` go at the next retention run; the
rollups stay for ``rollup_days``.  So write the history before ingest starts (the demo does):
a running ingest's retention may delete those raw rows before this refresh has rolled them
up (the refreshers' lock, held here, keeps only the refreshers away).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import psycopg

from crowdwatch.contracts.config import CrowdwatchConfig, RetentionConfig, Site, SiteKind
from crowdwatch.contracts.errors import StorageError
from crowdwatch.contracts.site_kinds import road_thresholds, spec
from crowdwatch.reports.holidays import DayKind, HolidayCalendar
from crowdwatch.simulator.crowd import approach_queue_m, line_share, vehicle_density
from crowdwatch.simulator.curves import expected_occupancy
from crowdwatch.storage.db import connect
from crowdwatch.storage.migrate import upgrade
from crowdwatch.storage.rollups import ROLLUP_LOCK_KEY, refresh_rollups

logger = logging.getLogger(__name__)

STEP = timedelta(minutes=15)
ROAD_STEP = timedelta(minutes=5)
"""Roads get a row every 5 minutes: their report grades each minute with a row (the others
are no data), and a row a minute would make the demo's history refresh touch twelve times
the minutes (the demo waits for it before it starts)."""
OPEN_HOURS = (6, 22)
GROWTH_PER_YEAR = 0.08
HOLIDAY_FACTOR = {
    "national_day": 1.0,
    "labour_day": 0.9,
    "dragon_boat_festival": 0.85,
    "mid_autumn_festival": 0.85,
    "tomb_sweeping_day": 0.6,
    "spring_festival": 0.7,
    "new_years_day": 0.45,
}
# Beach crowds follow the water temperature: month -> share of a July day.
BEACH_SEASON = (0.3, 0.3, 0.35, 0.5, 0.7, 0.9, 1.0, 1.0, 1.0, 0.95, 0.6, 0.35)
VISITOR_KINDS = (SiteKind.BEACH, SiteKind.SCENIC_SPOT)


@dataclass(frozen=True, slots=True)
class HistoryResult:
    first_day: date
    last_day: date
    days: int
    zone_rows: int
    line_rows: int
    rollup_minutes: int


def day_factor(calendar: HolidayCalendar, site: Site, day: date, reference_year: int) -> float:
    """The expected share of the holiday curve on ``day`` at ``site`` (no weather)."""
    info = calendar.day(day)
    visitor = site.kind in VISITOR_KINDS
    match info.kind:
        case DayKind.HOLIDAY:
            factor = HOLIDAY_FACTOR.get(info.holiday or "", 0.6)
        case DayKind.WEEKEND:
            factor = 0.45 if visitor else 0.5
        case DayKind.WORKDAY:
            factor = 0.15 if visitor else 0.35
        case DayKind.MAKEUP_WORKDAY:
            factor = 0.12 if visitor else 0.35
    if site.kind is SiteKind.BEACH:
        factor *= BEACH_SEASON[day.month - 1]
    return factor * (1 + GROWTH_PER_YEAR) ** (day.year - reference_year)


def _weather(rng: random.Random) -> float:
    rainy = rng.random() < 0.1
    return (0.35 if rainy else 1.0) * math.exp(rng.gauss(0.0, 0.12))


def _steps(day: date, tz: ZoneInfo, step: timedelta = STEP) -> Iterator[tuple[datetime, float]]:
    """(row ts in UTC, local hour at the middle of the interval) of the day's open steps."""
    start = datetime.combine(day, time(OPEN_HOURS[0]), tzinfo=tz)
    per_hour = round(timedelta(hours=1) / step)
    for i in range(1, (OPEN_HOURS[1] - OPEN_HOURS[0]) * per_hour + 1):
        end = start + step * i
        yield end.astimezone(UTC), OPEN_HOURS[0] + (i - 0.5) / per_hour


def _road_rows(
    site: Site, day: date, factor: float, tz: ZoneInfo, rng: random.Random
) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """A road's day as the live simulator sends it (:mod:`crowdwatch.simulator.crowd`), a
    row every :data:`ROAD_STEP`: no people; its vehicles, their mean
    speed by Greenshields (free flow on an empty road, a crawl as the holiday curve's
    inbound-morning and outbound-evening peaks fill it: the jams build and clear), their
    density on zones with lanes, the queue at a stop line's approach, and its lines' traffic,
    inbound in the morning."""
    zones: list[tuple[object, ...]] = []
    lines: list[tuple[object, ...]] = []
    free_flow = road_thresholds(site).free_flow_kmh
    dwell_h = spec(site.kind).dwell_h
    passing = 0.0
    for ts, hour in _steps(day, tz, ROAD_STEP):
        share = expected_occupancy(site.kind, hour) * factor
        stamp = f"{ts:%Y%m%d%H%M}"
        total = 0
        for camera in site.cameras:
            for zone in camera.zones:
                load = min(1.0, max(0.0, share * math.exp(rng.gauss(0.0, 0.05))))
                cars = round(load * (zone.capacity or site.capacity))
                total += cars
                speed = free_flow * (1.0 - load) + rng.gauss(0.0, 1.5)
                zones.append(
                    (ts, site.id, camera.id, zone.id, 0, 0, 0.0, ROAD_STEP.total_seconds(),
                     f"hist-{site.id}-{zone.id}-{stamp}", cars,
                     round(min(free_flow, max(1.0, speed)), 1),
                     vehicle_density(zone, camera, cars),
                     approach_queue_m(zone, camera, cars, load))
                )  # fmt: skip
        # Its lines' crossings go in a row a quarter hour, as other sites' do (a rollup
        # refresh costs by the minutes it touches, and the demo waits for this one).
        passing += total / dwell_h * ROAD_STEP.total_seconds() / 3600
        if ts.minute % 15 == 0:
            inbound = 0.8 if hour < 13 else 0.25
            for camera in site.cameras:
                for line in camera.lines:
                    flow = passing * line_share(line, camera, vehicles=True)
                    lines.append(
                        (ts, site.id, camera.id, line.id, round(flow * inbound),
                         round(flow * (1 - inbound)), f"hist-{site.id}-{line.id}-{stamp}")
                    )  # fmt: skip
            passing = 0.0
    return zones, lines


def _site_rows(
    site: Site,
    day: date,
    factor: float,
    tz: ZoneInfo,
    rng: random.Random,
    stay_min: float,
) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    if spec(site.kind).vehicles:
        return _road_rows(site, day, factor, tz, rng)
    zones: list[tuple[object, ...]] = []
    lines: list[tuple[object, ...]] = []
    zone_list = [(c.id, z.id, z.capacity or site.capacity) for c in site.cameras for z in c.zones]
    line_list = [
        (c.id, line.id, line_share(line, c, vehicles=False))
        for c in site.cameras
        for line in c.lines
    ]
    previous = 0.0
    for ts, hour in _steps(day, tz):
        share = expected_occupancy(site.kind, hour) * factor
        total = 0.0
        for camera_id, zone_id, capacity in zone_list:
            mean = max(0.0, capacity * share * math.exp(rng.gauss(0.0, 0.05)))
            total += mean
            peak = math.ceil(mean * (1.04 + 0.04 * rng.random()))
            zones.append(
                (ts, site.id, camera_id, zone_id, round(mean), peak, round(mean, 2), 900.0,
                 f"hist-{site.id}-{zone_id}-{ts:%Y%m%d%H%M}", None, None, None, None)
            )  # fmt: skip
        if line_list:
            # Little's law: people present / mean stay arrive (and leave) per minute; a rise
            # in occupancy is extra arrivals, a fall extra departures.
            base = total * STEP.total_seconds() / 60 / stay_min
            arrivals = base + max(0.0, total - previous)
            departures = base + max(0.0, previous - total)
            for camera_id, line_id, share in line_list:
                lines.append(
                    (ts, site.id, camera_id, line_id, round(share * arrivals / len(line_list)),
                     round(share * departures / len(line_list)),
                     f"hist-{site.id}-{line_id}-{ts:%Y%m%d%H%M}")
                )  # fmt: skip
        previous = total
    return zones, lines


def compared_days(calendar: HolidayCalendar, today: date, *, back: int = 7) -> list[date]:
    """The days the reports of ``today`` and the ``back`` days before it compare with."""
    from crowdwatch.reports.daily import comparison_days

    wanted: set[date] = set()
    for offset in range(back + 1):
        day = today - timedelta(days=offset)
        wanted.update(d for d in comparison_days(calendar, day).values() if d is not None)
    return sorted(d for d in wanted if d < today)


def fill_history(
    config: CrowdwatchConfig,
    db_url: str,
    days: Iterable[date],
    *,
    seed: int = 0,
) -> HistoryResult:
    """Write a seeded history of every site on ``days`` and refresh the rollups.

    Args:
        config: the district.
        db_url: the schema owner's URL (the schema is created or upgraded first).
        days: local days to fill (e.g. a year and a half, or :func:`compared_days`).
        seed: the same seed and days write the same rows.

    Raises:
        StorageError: the database refused, or already holds history rows on one of the days.
        ConfigError: the holiday calendar lacks a year of the days.
        ValueError: no days.
    """
    ordered = sorted(set(days))
    if not ordered:
        raise ValueError("no days to fill")
    tz = ZoneInfo(config.district.timezone)
    calendar = HolidayCalendar(config.reports.holidays)
    upgrade(db_url, config)
    rng = random.Random(seed)
    with connect(db_url, autocommit=True) as conn:
        _refuse_twice(conn, ordered, config.district.timezone)
        # Hold the refreshers' lock from the first row to our refresh: a running ingest's
        # refresher would otherwise take these days' invalidations and drop them as older
        # than its raw retention, and their rollups would never be built.
        conn.execute("SELECT pg_advisory_lock(%s)", (ROLLUP_LOCK_KEY,))
        try:
            zone_count, line_count = _write_days(conn, config, calendar, ordered, tz, rng)
            reach = (datetime.now(UTC).date() - ordered[0]).days + 2
            keep = RetentionConfig(raw_days=max(2, reach), rollup_days=max(2, reach))
            refreshed = refresh_rollups(conn, retention=keep)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (ROLLUP_LOCK_KEY,))
    logger.info(
        "history of %d days %s..%s: %d zone rows, %d line rows",
        len(ordered),
        ordered[0],
        ordered[-1],
        zone_count,
        line_count,
    )
    return HistoryResult(
        ordered[0], ordered[-1], len(ordered), zone_count, line_count, refreshed.minutes
    )


def _write_days(
    conn: psycopg.Connection,
    config: CrowdwatchConfig,
    calendar: HolidayCalendar,
    days: list[date],
    tz: ZoneInfo,
    rng: random.Random,
) -> tuple[int, int]:
    """COPY every day's rows (one transaction a day); (zone rows, line rows) written."""
    zone_count = line_count = 0
    for day in days:
        zones: list[tuple[object, ...]] = []
        lines: list[tuple[object, ...]] = []
        weather = _weather(rng)  # one sky over the whole district
        for site in config.sites:
            factor = day_factor(calendar, site, day, days[-1].year) * weather
            stay = config.reports.mean_stay_min.get(site.kind.value, 60.0)
            z, li = _site_rows(site, day, factor, tz, rng, stay)
            zones += z
            lines += li
        _copy(conn, zones, lines)
        zone_count += len(zones)
        line_count += len(lines)
    return zone_count, line_count


def _refuse_twice(conn: psycopg.Connection, days: list[date], tz: str) -> None:
    zone = ZoneInfo(tz)
    start = datetime.combine(days[0], time(0), tzinfo=zone)
    end = datetime.combine(days[-1] + timedelta(days=1), time(0), tzinfo=zone)
    try:
        found = conn.execute(
            "SELECT DISTINCT (ts AT TIME ZONE %s)::date FROM zone_counts"
            " WHERE ts >= %s AND ts < %s AND message_id LIKE 'hist-%%'",
            (tz, start, end),
        ).fetchall()
    except psycopg.Error as exc:
        raise StorageError(f"cannot read the history: {exc}") from exc
    clash = sorted({row[0] for row in found} & set(days))
    if clash:
        raise StorageError(
            f"the database already holds simulated history on {len(clash)} of these days "
            f"(first {clash[0]}); use a fresh database or other days"
        )


def _copy(
    conn: psycopg.Connection, zones: list[tuple[object, ...]], lines: list[tuple[object, ...]]
) -> None:
    try:
        with conn.transaction(), conn.cursor() as cur:
            with cur.copy(
                "COPY zone_counts (ts, site_id, camera_id, zone_id, count, count_max, count_mean,"
                " interval_s, message_id, vehicles, mean_speed_kmh, vehicle_density,"
                " queue_length_m) FROM STDIN"
            ) as copy:
                for row in zones:
                    copy.write_row(row)
            if lines:
                with cur.copy(
                    "COPY line_counts (ts, site_id, camera_id, line_id, in_count, out_count,"
                    " message_id) FROM STDIN"
                ) as copy:
                    for row in lines:
                        copy.write_row(row)
    except psycopg.Error as exc:
        raise StorageError(f"cannot write the history: {exc}") from exc
