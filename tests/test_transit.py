"""Bus routes for dispatch: the ``transit`` config section, headway timetables and GTFS import.

The GTFS feed is the small made-up one in ``tests/fixtures/gtfs_haiwan`` (see its README).
"""

from __future__ import annotations

import re
import shutil
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from factories import config_dict, site_dict

from crowdwatch.analytics.gtfs_import import read_gtfs, stop_buses
from crowdwatch.analytics.timetable import headway_buses
from crowdwatch.contracts.config import (
    BusRoute,
    CrowdwatchConfig,
    Headway,
    load_config,
    parse_config,
)
from crowdwatch.contracts.errors import ConfigError

FEED = Path(__file__).parent / "fixtures" / "gtfs_haiwan"
TZ = ZoneInfo("Asia/Shanghai")


def local(day: int, hour: int, minute: int = 0, month: int = 10) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=TZ)


def beach_dict(site_id: str = "beach-a") -> dict[str, Any]:
    site = site_dict(site_id)
    site["kind"] = "beach"
    return site


def k1(**changes: Any) -> dict[str, Any]:
    route: dict[str, Any] = {
        "id": "K1",
        "bus_capacity": 80,
        "stops": ["stop-a"],
        "headways": [{"start": "06:00", "end": "22:00", "every_min": 8}],
    }
    return {**route, **changes}


def with_transit(transit: dict[str, Any]) -> dict[str, Any]:
    data = config_dict(site_dict("stop-a"), site_dict("stop-b"), beach_dict())
    data["transit"] = transit
    return data


def test_routes_parse_as_typed_values() -> None:
    config = parse_config(
        with_transit(
            {
                "routes": [
                    k1(extra_bus_lead_min=12, short_turn_lead_min=6),
                    k1(id="K3", bus_capacity=60, stops=["stop-a", "stop-b"]),
                ],
                "target_min": 10,
            }
        )
    )
    assert config.transit is not None
    assert [r.id for r in config.transit.routes_at("stop-b")] == ["K3"]
    route = config.transit.routes_at("stop-a")[0]
    assert (route.bus_capacity, route.short_turn_lead_min) == (80, 6)
    assert route.headways[0] == Headway(start="06:00", end="22:00", every_min=8)
    assert (config.transit.target_min, config.transit.horizon_min) == (10, 30)


def test_a_config_without_transit_is_unchanged() -> None:
    assert parse_config(config_dict()).transit is None


@pytest.mark.parametrize(
    ("transit", "message"),
    [
        (
            {"routes": [k1(stops=["stop-x"])]},
            "transit.routes[0].stops: route 'K1' names ['stop-x'], which are not bus_stop sites",
        ),
        (
            {"routes": [k1(stops=["beach-a"])]},
            "transit.routes[0].stops: route 'K1' names ['beach-a'], which are not bus_stop",
        ),
        ({"routes": [k1(headways=[])]}, "route(s) ['K1'] have no headways and there is no gtfs"),
        (
            {
                "routes": [
                    k1(
                        headways=[
                            {"start": "06:00", "end": "12:00", "every_min": 8},
                            {"start": "11:00", "end": "22:00", "every_min": 5},
                        ]
                    )
                ]
            },
            "transit.routes[0]: headways overlap around 11:00",
        ),
        (
            {"routes": [k1(headways=[{"start": "18:00", "end": "09:00", "every_min": 8}])]},
            "transit.routes[0].headways[0]: end 09:00 must be after start 18:00",
        ),
        (
            {"routes": [k1(headways=[{"start": "6:00", "end": "22:00", "every_min": 8}])]},
            "transit.routes[0].headways[0].start: String should match pattern",
        ),
        (
            {"routes": [k1(extra_bus_lead_min=5, short_turn_lead_min=8)]},
            "short_turn_lead_min (8) must be shorter than extra_bus_lead_min (5)",
        ),
        ({"routes": [k1(), k1()]}, "duplicate route id 'K1'"),
        ({"routes": [k1()], "target_min": 40}, "target_min (40) must not exceed horizon_min (30)"),
        ({"routes": [k1(bus_capacity=0)]}, "transit.routes[0].bus_capacity: Input should be"),
        ({"routes": [k1(seats=80)]}, "transit.routes[0].seats: unknown key"),
        (
            {"routes": [k1()], "gtfs": {"path": str(FEED), "stops": {"XW": "beach-a"}}},
            "transit.gtfs.stops: ['beach-a'] are not bus_stop sites",
        ),
    ],
)
def test_a_wrong_route_names_its_yaml_path(transit: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(with_transit(transit))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_headways_by_time_of_day() -> None:
    route = BusRoute(
        id="K1",
        bus_capacity=80,
        stops=["stop-a"],
        headways=[
            Headway(start="16:00", end="17:10", every_min=10),
            Headway(start="17:10", end="18:00", every_min=6),
        ],
    )
    got = headway_buses(route, TZ, local(1, 16, 45), local(1, 17, 30))
    times = [b.at.astimezone(TZ).strftime("%H:%M") for b in got]
    assert times == ["16:50", "17:00", "17:10", "17:16", "17:22", "17:28"]
    assert {(b.route, b.capacity) for b in got} == {("K1", 80)}


def test_headways_repeat_each_local_day() -> None:
    route = BusRoute(
        id="N2",
        bus_capacity=60,
        stops=["stop-a"],
        headways=[
            Headway(start="23:00", end="24:00", every_min=30),
            Headway(start="00:00", end="01:00", every_min=30),
        ],
    )
    got = headway_buses(route, TZ, local(1, 23, 15), local(2, 0, 45))
    assert [b.at for b in got] == [local(1, 23, 30), local(2, 0, 0), local(2, 0, 30)]


def gtfs_config(feed: Path, **route_changes: Any) -> CrowdwatchConfig:
    return parse_config(
        with_transit(
            {
                "routes": [
                    k1(headways=[], **route_changes),
                    k1(id="K3", bus_capacity=60, headways=[]),
                ],
                "gtfs": {"path": str(feed), "stops": {"XW": "stop-a"}},
            }
        )
    )


def test_gtfs_holiday_timetable_at_the_terminus() -> None:
    feed = read_gtfs(FEED)
    config = gtfs_config(FEED)
    assert config.transit is not None
    feed.check(config.transit)
    # National Day (a Thursday): calendar_dates swaps the weekday service for the holiday one.
    holiday = stop_buses(config.transit, feed, "stop-a", TZ, local(1, 17), local(1, 18))
    assert [(b.route, b.at, b.capacity) for b in holiday] == [
        ("K1", local(1, 17, 0), 80),
        ("K1", local(1, 17, 10), 80),
        ("K3", local(1, 17, 15), 60),
    ]
    # A week later, an ordinary Thursday: the weekday trip only.
    ordinary = stop_buses(config.transit, feed, "stop-a", TZ, local(8, 17), local(8, 18))
    assert [(b.route, b.at) for b in ordinary] == [("K1", local(8, 17, 5))]
    # 24:30:00 of the holiday's service day is 00:30 the next morning.
    night = stop_buses(config.transit, feed, "stop-a", TZ, local(2, 0), local(2, 1))
    assert [(b.route, b.at) for b in night] == [("K3", local(2, 0, 30))]
    # A stop the feed does not map has no GTFS buses.
    assert stop_buses(config.transit, feed, "stop-b", TZ, local(1, 0), local(2, 0)) == []


def test_gtfs_from_a_zip(tmp_path: Path) -> None:
    archive = tmp_path / "feed.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for file in FEED.glob("*.txt"):
            out.write(file, file.name)
    feed = read_gtfs(archive)
    assert feed.routes == {"K1", "K3"}
    assert len(feed.buses("XW", {"K1": 80, "K3": 60}, TZ, local(1, 17), local(1, 18))) == 3


def test_headway_and_gtfs_routes_at_one_stop() -> None:
    config = parse_config(
        with_transit(
            {
                "routes": [
                    k1(headways=[]),
                    k1(
                        id="B9",
                        bus_capacity=40,
                        headways=[{"start": "17:00", "end": "18:00", "every_min": 30}],
                    ),
                ],
                "gtfs": {"path": str(FEED), "stops": {"XW": "stop-a"}},
            }
        )
    )
    assert config.transit is not None
    buses = stop_buses(
        config.transit, read_gtfs(FEED), "stop-a", TZ, local(1, 17), local(1, 17, 40)
    )
    assert [(b.route, b.at.astimezone(TZ).strftime("%H:%M")) for b in buses] == [
        ("B9", "17:00"),
        ("K1", "17:00"),
        ("K1", "17:10"),
        ("B9", "17:30"),
    ]


@pytest.mark.parametrize(
    ("route_changes", "mapping", "message"),
    [
        (
            {"id": "K9"},
            None,
            "transit.routes[0]: route 'K9' has no headways and no trips in the GTFS",
        ),
        ({}, {"XX": "stop-a"}, "transit.gtfs.stops: stop_id(s) ['XX'] are not in stops.txt"),
    ],
)
def test_config_and_feed_must_agree(
    route_changes: dict[str, Any], mapping: dict[str, str] | None, message: str
) -> None:
    config = gtfs_config(FEED, **route_changes)
    assert config.transit is not None
    transit = config.transit
    if mapping is not None:
        assert transit.gtfs is not None
        transit = transit.model_copy(
            update={"gtfs": transit.gtfs.model_copy(update={"stops": mapping})}
        )
    with pytest.raises(ConfigError, match=re.escape(message)):
        read_gtfs(FEED).check(transit)


def broken_feed(tmp_path: Path, name: str, text: str | None) -> Path:
    feed = tmp_path / "feed"
    shutil.copytree(FEED, feed)
    if text is None:
        (feed / name).unlink()
    else:
        (feed / name).write_text(text, encoding="utf-8")
    return feed


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("stop_times.txt", None, "the GTFS feed has no stop_times.txt"),
        (
            "stop_times.txt",
            "trip_id,departure_time,stop_id\nk1-1700,17:61:00,XW\n",
            "stop_times.txt:2: expected a time HH:MM:SS (hours may pass 24), got '17:61:00'",
        ),
        (
            "stop_times.txt",
            "trip_id,departure_time,stop_id\nnope,17:00:00,XW\n",
            "stop_times.txt:2: trip_id 'nope' is not in trips.txt",
        ),
        (
            "stop_times.txt",
            "trip_id,departure_time,stop_id\nk1-1700,17:00:00,ZZ\n",
            "stop_times.txt:2: stop_id 'ZZ' is not in stops.txt",
        ),
        (
            "trips.txt",
            "route_id,trip_id\nr-k1,k1-1700\n",
            "trips.txt: missing column(s) ['service_id']",
        ),
        (
            "trips.txt",
            "route_id,service_id,trip_id\nr-k7,holiday,x\n",
            "trips.txt:2: route_id 'r-k7' is not in routes.txt",
        ),
        (
            "trips.txt",
            "route_id,service_id,trip_id\nr-k1,,x\n",
            "trips.txt:2: empty ['service_id']",
        ),
        (
            "routes.txt",
            "route_id,route_short_name\nr-k1,K1,extra\n",
            "routes.txt:2: more values than the header",
        ),
        ("calendar.txt", None, None),
        (
            "calendar.txt",
            "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date\nweekday,1,1,1,1,1,0,2,20260101,20261231\n",
            "calendar.txt:2: sunday must be 0 or 1, got '2'",
        ),
        (
            "calendar_dates.txt",
            "service_id,date,exception_type\nholiday,2026-10-01,1\n",
            "calendar_dates.txt:2: date must be a date YYYYMMDD, got '2026-10-01'",
        ),
        (
            "calendar_dates.txt",
            "service_id,date,exception_type\nholiday,20261001,3\n",
            "calendar_dates.txt:2: exception_type must be 1 or 2, got '3'",
        ),
    ],
)
def test_a_broken_feed_is_one_line_naming_file_and_line(
    tmp_path: Path, name: str, text: str | None, message: str | None
) -> None:
    feed = broken_feed(tmp_path, name, text)
    if message is None:
        # calendar_dates.txt alone is a valid calendar.
        table = read_gtfs(feed)
        assert table.runs("holiday", local(1, 0).date())
        assert not table.runs("holiday", local(3, 0).date())
        return
    with pytest.raises(ConfigError) as info:
        read_gtfs(feed)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_no_calendar_at_all(tmp_path: Path) -> None:
    feed = broken_feed(tmp_path, "calendar.txt", None)
    (feed / "calendar_dates.txt").unlink()
    with pytest.raises(ConfigError, match=re.escape("needs calendar.txt or calendar_dates.txt")):
        read_gtfs(feed)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "absent", "no such GTFS folder or .zip (transit.gtfs.path)"),
        (lambda p: _write(p / "feed.zip", b"not a zip"), "not a GTFS folder or .zip archive"),
        (lambda p: _write(p / "f" / "stops.txt", b"\xff\xfe\x00bad"), "stops.txt: not UTF-8 text"),
    ],
)
def test_a_path_that_is_not_a_feed(tmp_path: Path, make: Any, message: str) -> None:
    path = make(tmp_path)
    if path.name == "stops.txt":
        path = path.parent
    with pytest.raises(ConfigError, match=re.escape(message)):
        read_gtfs(path)


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_the_example_district_times_its_stops() -> None:
    example = Path(__file__).resolve().parents[1] / "configs" / "district.example.yaml"
    config = load_config(example)
    assert config.transit is not None
    buses = stop_buses(
        config.transit, None, "stop-xiwan-terminus", TZ, local(1, 17), local(1, 17, 30)
    )
    # K1 every 8 min from 16:00 (16:56, 17:04, ...), K3 every 15 min from 07:00.
    assert [(b.route, b.at.astimezone(TZ).strftime("%H:%M")) for b in buses] == [
        ("K3", "17:00"),
        ("K1", "17:04"),
        ("K1", "17:12"),
        ("K3", "17:15"),
        ("K1", "17:20"),
        ("K1", "17:28"),
        ("K3", "17:30"),
    ]
