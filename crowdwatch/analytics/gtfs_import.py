"""The timetable of a static GTFS feed: which buses reach a stop, on which route, and when.

Read with the standard library's ``csv``: of the maintained GTFS libraries, gtfs-kit needs
pandas, GeoPandas, Shapely, rtree and folium, and partridge pandas and networkx; the server
install has none of them (no numpy even), and only five small files are needed here:
``stops.txt``, ``routes.txt``, ``trips.txt``, ``stop_times.txt`` and the service calendar
(``calendar.txt`` and/or ``calendar_dates.txt``).  ``frequencies.txt`` is not read: a route
timed by headways is written in ``transit.routes[].headways`` instead.

A feed is a folder or a ``.zip``.  A mistake in it stops the reader with one line naming the
file, the line and the problem (:class:`~crowdwatch.contracts.errors.ConfigError`).
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from crowdwatch.analytics.dispatch_plan import ScheduledBus
from crowdwatch.analytics.timetable import headway_buses
from crowdwatch.contracts.config import TransitConfig
from crowdwatch.contracts.errors import ConfigError

_GTFS_TIME = re.compile(r"^(\d{1,3}):([0-5]\d):([0-5]\d)$")
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@dataclass(frozen=True, slots=True)
class StopVisit:
    """A trip's departure from a stop, in seconds after the service day's start."""

    route: str
    stop_id: str
    service_id: str
    seconds: int


@dataclass(frozen=True, slots=True)
class ServicePeriod:
    weekdays: frozenset[int]
    """ISO weekdays 1..7 the service runs on"""
    first: date
    last: date


@dataclass(slots=True)
class GtfsTimetable:
    """The departures of a feed, by stop; routes named by ``route_short_name`` (else id)."""

    stops: set[str] = field(default_factory=set)
    routes: set[str] = field(default_factory=set)
    visits: dict[str, list[StopVisit]] = field(default_factory=dict)
    """by stop_id"""
    periods: dict[str, ServicePeriod] = field(default_factory=dict)
    added: dict[date, set[str]] = field(default_factory=dict)
    removed: dict[date, set[str]] = field(default_factory=dict)

    def runs(self, service_id: str, day: date) -> bool:
        """Whether the service runs on ``day`` (calendar, then calendar_dates exceptions)."""
        if service_id in self.removed.get(day, set()):
            return False
        if service_id in self.added.get(day, set()):
            return True
        period = self.periods.get(service_id)
        return (
            period is not None
            and period.first <= day <= period.last
            and day.isoweekday() in period.weekdays
        )

    def buses(
        self,
        stop_id: str,
        capacity: Mapping[str, int],
        tz: ZoneInfo,
        start: datetime,
        end: datetime,
    ) -> list[ScheduledBus]:
        """Buses of the routes in ``capacity`` leaving ``stop_id`` between ``start`` and ``end``.

        GTFS times count from the service day's start and may pass 24:00:00 (a trip after
        midnight belongs to the day before), so the day before ``start`` is looked at too.
        The time is added on the local wall clock (GTFS's "noon minus 12 h" differs from it
        only on the two DST-change days, which Asia/Shanghai does not have).
        """
        buses: list[ScheduledBus] = []
        day = start.astimezone(tz).date() - timedelta(days=1)
        while datetime.combine(day, time(), tz) <= end:
            midnight = datetime.combine(day, time(), tz)
            for visit in self.visits.get(stop_id, []):
                if visit.route not in capacity:
                    continue
                at = midnight + timedelta(seconds=visit.seconds)
                if start <= at <= end and self.runs(visit.service_id, day):
                    buses.append(ScheduledBus(visit.route, at, capacity[visit.route]))
            day += timedelta(days=1)
        return sorted(buses, key=lambda b: b.at)

    def check(self, transit: TransitConfig) -> None:
        """Every mapped stop is in the feed and every route without headways has trips in it.

        Raises:
            ConfigError: naming the config path of the first mismatch.
        """
        gtfs = transit.gtfs
        if gtfs is None:
            return
        missing = sorted(set(gtfs.stops) - self.stops)
        if missing:
            raise ConfigError(f"transit.gtfs.stops: stop_id(s) {missing} are not in stops.txt")
        for i, route in enumerate(transit.routes):
            if not route.headways and route.id not in self.routes:
                raise ConfigError(
                    f"transit.routes[{i}]: route {route.id!r} has no headways and no trips in "
                    f"the GTFS feed (routes.txt route_short_name or route_id)"
                )


def read_gtfs(path: str | Path) -> GtfsTimetable:
    """Read a GTFS folder or ``.zip``.

    Raises:
        ConfigError: a required file or column is missing, or a value is malformed; the
            message names the file and line.
    """
    source = _Source(Path(path))
    table = GtfsTimetable()
    for _, row in source.rows("stops.txt", ("stop_id",)):
        table.stops.add(row["stop_id"])
    route_name: dict[str, str] = {}
    for _, row in source.rows("routes.txt", ("route_id",)):
        route_name[row["route_id"]] = row.get("route_short_name") or row["route_id"]
    table.routes = set(route_name.values())
    trips: dict[str, tuple[str, str]] = {}
    for where, row in source.rows("trips.txt", ("route_id", "service_id", "trip_id")):
        if row["route_id"] not in route_name:
            raise ConfigError(f"{where}: route_id {row['route_id']!r} is not in routes.txt")
        trips[row["trip_id"]] = (route_name[row["route_id"]], row["service_id"])
    for where, row in source.rows("stop_times.txt", ("trip_id", "stop_id")):
        trip = trips.get(row["trip_id"])
        if trip is None:
            raise ConfigError(f"{where}: trip_id {row['trip_id']!r} is not in trips.txt")
        if row["stop_id"] not in table.stops:
            raise ConfigError(f"{where}: stop_id {row['stop_id']!r} is not in stops.txt")
        text = row.get("departure_time") or row.get("arrival_time") or ""
        if not text:
            continue  # an untimed stop: GTFS lets consumers interpolate; we do not guess
        seconds = _seconds(text, where)
        visit = StopVisit(trip[0], row["stop_id"], trip[1], seconds)
        table.visits.setdefault(visit.stop_id, []).append(visit)
    _read_calendar(source, table)
    return table


def _read_calendar(source: _Source, table: GtfsTimetable) -> None:
    has_calendar = source.has("calendar.txt")
    has_dates = source.has("calendar_dates.txt")
    if not has_calendar and not has_dates:
        raise ConfigError(
            f"{source.path}: needs calendar.txt or calendar_dates.txt (which days trips run)"
        )
    if has_calendar:
        columns = ("service_id", *_WEEKDAYS, "start_date", "end_date")
        for where, row in source.rows("calendar.txt", columns):
            days = set()
            for iso, name in enumerate(_WEEKDAYS, start=1):
                if row[name] not in ("0", "1"):
                    raise ConfigError(f"{where}: {name} must be 0 or 1, got {row[name]!r}")
                if row[name] == "1":
                    days.add(iso)
            table.periods[row["service_id"]] = ServicePeriod(
                frozenset(days),
                _date(row["start_date"], where, "start_date"),
                _date(row["end_date"], where, "end_date"),
            )
    if has_dates:
        for where, row in source.rows(
            "calendar_dates.txt", ("service_id", "date", "exception_type")
        ):
            day = _date(row["date"], where, "date")
            match row["exception_type"]:
                case "1":
                    table.added.setdefault(day, set()).add(row["service_id"])
                case "2":
                    table.removed.setdefault(day, set()).add(row["service_id"])
                case other:
                    raise ConfigError(f"{where}: exception_type must be 1 or 2, got {other!r}")


def _seconds(text: str, where: str) -> int:
    match = _GTFS_TIME.match(text.strip())
    if match is None:
        raise ConfigError(f"{where}: expected a time HH:MM:SS (hours may pass 24), got {text!r}")
    hours, minutes, seconds = (int(g) for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def _date(text: str, where: str, column: str) -> date:
    try:
        return datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        raise ConfigError(f"{where}: {column} must be a date YYYYMMDD, got {text!r}") from None


class _Source:
    """The files of a feed, from a folder or a zip archive."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.is_dir():
            self._names = {p.name for p in path.iterdir()}
        elif path.is_file():
            try:
                with zipfile.ZipFile(path) as archive:
                    self._names = {Path(n).name for n in archive.namelist()}
            except zipfile.BadZipFile:
                raise ConfigError(f"{path}: not a GTFS folder or .zip archive") from None
        else:
            raise ConfigError(f"{path}: no such GTFS folder or .zip (transit.gtfs.path)")

    def has(self, name: str) -> bool:
        return name in self._names

    def rows(self, name: str, required: tuple[str, ...]) -> Iterator[tuple[str, dict[str, str]]]:
        """``(file:line, row)`` for each row, after checking the header has ``required``."""
        if name not in self._names:
            raise ConfigError(f"{self.path}: the GTFS feed has no {name}")
        text = self._read(name)
        reader = csv.DictReader(io.StringIO(text))
        header = [h.strip() for h in reader.fieldnames or []]
        missing = [c for c in required if c not in header]
        if missing:
            raise ConfigError(f"{self.path / name}: missing column(s) {missing}")
        reader.fieldnames = header
        for row in reader:
            where = f"{self.path / name}:{reader.line_num}"
            if None in row:
                raise ConfigError(f"{where}: more values than the header has columns")
            clean = {k: (v or "").strip() for k, v in row.items()}
            empty = [c for c in required if not clean.get(c)]
            if empty:
                raise ConfigError(f"{where}: empty {empty}")
            yield where, clean

    def _read(self, name: str) -> str:
        try:
            if self.path.is_dir():
                data = (self.path / name).read_bytes()
            else:
                with zipfile.ZipFile(self.path) as archive:
                    member = next(n for n in archive.namelist() if Path(n).name == name)
                    data = archive.read(member)
            return data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ConfigError(
                f"{self.path / name}: not UTF-8 text (GTFS files are UTF-8)"
            ) from None
        except OSError as exc:
            raise ConfigError(f"{self.path / name}: cannot read: {exc.strerror or exc}") from exc


def stop_buses(
    transit: TransitConfig,
    feed: GtfsTimetable | None,
    site_id: str,
    tz: ZoneInfo,
    start: datetime,
    end: datetime,
) -> list[ScheduledBus]:
    """Every scheduled bus at a stop: headway routes from the config, the others from GTFS."""
    buses: list[ScheduledBus] = []
    from_feed: dict[str, int] = {}
    for route in transit.routes_at(site_id):
        if route.headways:
            buses.extend(headway_buses(route, tz, start, end))
        else:
            from_feed[route.id] = route.bus_capacity
    if from_feed and feed is not None and transit.gtfs is not None:
        for stop_id, site in transit.gtfs.stops.items():
            if site == site_id:
                buses.extend(feed.buses(stop_id, from_feed, tz, start, end))
    return sorted(buses, key=lambda b: b.at)
