"""A small seeded history for the report tests, with its figures computed by hand.

District time is Asia/Shanghai (UTC+8).  Every zone row stands for 15 minutes (its ts is the
end of that interval), so each row is one 15-minute rollup step on its own.

``beach-a`` (beach, no lines, capacity 100, mean stay 120 min), zone ``sand``:

==============  ===========  ==========  ======================================
local day       ts (local)   mean / max  note
==============  ===========  ==========  ======================================
2025-10-03 Fri  00:00:00     8 / 9       first instant of the day: counts on Oct 3
(National Day   10:15        90 / 95
 day 3)         10:30        80 / 85
                10:45        100 / 110   peak 110 at 10:45
                11:00        50 / 60
2025-10-04      00:00:00     70 / 70     next day: not on Oct 3
2024-10-03      12:00, 12:15 60 / 60     National Day 2024 day 3 (same day last year)
2025-06-02      12:00        40 / 40     Dragon Boat 2025 day 3 (previous holiday)
2025-09-27 Sat  12:00        120 / 120   ordinary weekend (Sun 28 Sep was worked)
==============  ===========  ==========  ======================================

Oct 3: person-hours (8 + 90 + 80 + 100 + 50) x 0.25 = 82; visits 82 / 2 h = 41 (estimate);
minutes at or above 80 % (80 people): 90, 80, 100 -> 45; 90 %: 90, 100 -> 30; 100 %: 15.
Last year: (60 + 60) x 0.25 = 30 ph -> 15 visits, +173.3 %; previous holiday 10 ph -> 5,
+720.0 %; ordinary weekend 30 ph -> 15, +173.3 %.

``spot-b`` (scenic_spot, a line ``gate``, capacity 50), Oct 3: in 30 / out 10 at 09:00 and
in 5 / out 25 at 23:59:59; in 100 at Oct 4 00:00:00 (next day).  Entries 35, exits 35,
visits = entries 35.  Last year (2024-10-03 09:00): in 20 -> +75.0 %; previous holiday
(2025-06-02) in 7 -> +400.0 %; ordinary weekend (2025-09-27) in 70 -> -50.0 %.
District: 41 + 35 = 76 against 15 + 20 = 35 last year: +117.1 %.

``stop-c`` (bus stop, capacity 40) on Oct 3: 31 waiting at 10:00 (longest wait 600 s), 48 at
17:30 (900 s), 44 at 17:45 (300 s): peak 48 at 17:30, longest wait 900 s; two alerts.
Alerts by department (``ALERTS``): transport 2, both acknowledged, after 4 and 8 min (median
6.0); culture & tourism 1 on Oct 3, not acknowledged (the one at Oct 4 00:00 is the next day's).

``road-d`` (road, ``road_class: secondary``: smooth > 35, mostly smooth (25, 35], light
(15, 25], moderate (10, 15], severe <= 10 km/h), zones ``inbound`` and ``outbound``; each
minute is graded by its slowest zone's mean speed, vehicles summed (``ROAD_ROWS``, Oct 3):

=========  ====================  ====================  =====  ==============================
local      inbound km/h (veh)    outbound km/h (veh)   min    level
=========  ====================  ====================  =====  ==============================
00:00:00   40 (3)                —                     40     smooth (first instant of day)
08:00      30 (10)               50 (2)                30     mostly smooth
08:01      12 (30)               45 (2)                12     moderate
08:02      10 (40)               20 (5)                10     severe (10 is <= 10)
08:03      6 and 10 (two rows)   —                     8      severe (the minute's mean)
08:04      15 (20)               15.5 (3)              15     moderate (15 is not > 15)
08:05      — (12 vehicles)       — (0)                 —      no data: vehicles, no speed
08:06      — (0)                 — (0)                 —      smooth: an empty road
08:07      20 (8)                — (4)                 20     light
23:59:30   14 (9)                —                     14     moderate
=========  ====================  ====================  =====  ==============================

Oct 2 23:59:59 and Oct 4 00:00:00 (5 km/h) are other days.  Oct 3: smooth 2, mostly smooth
1, light 1, moderate 3, severe 2 minutes; moderate or worse 5; no data 1,440 - 9 = 1,431;
worst severe, first at 08:02; slowest 8.0 km/h.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any

from raw_rows import LineRow, ZoneRow

LOCAL = timezone(timedelta(hours=8))
DAY = date(2025, 10, 3)


def at(day: date, hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=LOCAL)


def report_config_dict() -> dict[str, Any]:
    def site(
        site_id: str,
        kind: str,
        capacity: int,
        zone: str,
        lines: list[Any],
        department: str = "culture_tourism",
    ) -> dict[str, Any]:
        return {
            "id": site_id,
            "kind": kind,
            "name": {"zh": f"{site_id}中", "en": site_id},
            "location": {"lat": 22.5, "lon": 114.5},
            "capacity": capacity,
            "department": department,
            "cameras": [
                {
                    "id": "cam1",
                    "source": "simulated",
                    "frame_size": [100, 100],
                    "zones": [
                        {
                            "id": zone,
                            "name": {"zh": "区", "en": zone},
                            "polygon": [[0, 0], [100, 0], [100, 100], [0, 100]],
                        }
                    ],
                    "lines": lines,
                }
            ],
        }

    gate = {
        "id": "gate",
        "name": {"zh": "大门", "en": "Gate"},
        "start": [0, 50],
        "end": [100, 50],
        "in_direction": [0, 1],
    }
    road = site("road-d", "road", 200, "inbound", [], "traffic_police")
    outbound = dict(road["cameras"][0]["zones"][0], id="outbound")
    road["cameras"][0]["zones"].append(outbound)
    road["road"] = {"road_class": "secondary"}
    return {
        "district": {"id": "test", "name": {"zh": "测试区", "en": "Test District"}},
        "reports": {"mean_stay_min": {"beach": 120, "scenic_spot": 60}},
        "sites": [
            site("beach-a", "beach", 100, "sand", []),
            site("spot-b", "scenic_spot", 50, "plaza", [gate]),
            site("stop-c", "bus_stop", 40, "platform", [], "transport"),
            road,
        ],
    }


def zone_rows() -> list[ZoneRow]:
    def row(ts: datetime, mean: float, peak: int) -> ZoneRow:
        return ZoneRow(ts, "beach-a", "sand", int(mean), count_max=peak, count_mean=mean)

    last_year = date(2024, 10, 3)
    return [
        row(at(DAY, 0, 0), 8, 9),
        row(at(DAY, 10, 15), 90, 95),
        row(at(DAY, 10, 30), 80, 85),
        row(at(DAY, 10, 45), 100, 110),
        row(at(DAY, 11, 0), 50, 60),
        row(at(date(2025, 10, 4), 0, 0), 70, 70),
        row(at(last_year, 12, 0), 60, 60),
        row(at(last_year, 12, 15), 60, 60),
        row(at(date(2025, 6, 2), 12, 0), 40, 40),
        row(at(date(2025, 9, 27), 12, 0), 120, 120),
        # the scenic spot's zone, so it has occupancy too (not used for its visits)
        ZoneRow(at(DAY, 9, 0), "spot-b", "plaza", 10),
        # the bus stop: its peak and its longest wait
        ZoneRow(at(DAY, 10, 0), "stop-c", "platform", 30, count_max=31, longest_wait_s=600),
        ZoneRow(at(DAY, 17, 30), "stop-c", "platform", 45, count_max=48, longest_wait_s=900),
        ZoneRow(at(DAY, 17, 45), "stop-c", "platform", 20, count_max=44, longest_wait_s=300),
        *ROAD_ROWS,
    ]


def _road(ts: datetime, zone: str, speed: float | None, vehicles: int, ss: int = 0) -> ZoneRow:
    return ZoneRow(
        ts + timedelta(seconds=ss), "road-d", zone, 0, vehicles=vehicles, mean_speed_kmh=speed
    )


ROAD_ROWS = [
    _road(at(DAY, 0, 0), "inbound", 40, 3),
    _road(at(DAY, 8, 0), "inbound", 30, 10),
    _road(at(DAY, 8, 0), "outbound", 50, 2),
    _road(at(DAY, 8, 1), "inbound", 12, 30),
    _road(at(DAY, 8, 1), "outbound", 45, 2),
    _road(at(DAY, 8, 2), "inbound", 10, 40),
    _road(at(DAY, 8, 2), "outbound", 20, 5),
    _road(at(DAY, 8, 3), "inbound", 6, 30, ss=10),
    _road(at(DAY, 8, 3), "inbound", 10, 30, ss=50),
    _road(at(DAY, 8, 4), "inbound", 15, 20),
    _road(at(DAY, 8, 4), "outbound", 15.5, 3),
    _road(at(DAY, 8, 5), "inbound", None, 12),
    _road(at(DAY, 8, 5), "outbound", None, 0),
    _road(at(DAY, 8, 6), "inbound", None, 0),
    _road(at(DAY, 8, 6), "outbound", None, 0),
    _road(at(DAY, 8, 7), "inbound", 20, 8),
    _road(at(DAY, 8, 7), "outbound", None, 4),
    _road(at(DAY, 23, 59), "inbound", 14, 9, ss=30),
    _road(at(date(2025, 10, 2), 23, 59), "inbound", 5, 50, ss=59),
    _road(at(date(2025, 10, 4), 0, 0), "inbound", 5, 50),
]

EXPECTED_ROAD = {
    "minutes_at": {"smooth": 2, "mostly_smooth": 1, "light": 1, "moderate": 3, "severe": 2},
    "minutes_moderate_or_worse": 5,
    "minutes_severe": 2,
    "minutes_no_data": 1431,
    "minutes_total": 1440,
    "worst": "severe",
    "worst_level": 5,
    "worst_name": {"zh": "严重拥堵", "en": "severe congestion"},
    "worst_at": "2025-10-03T00:02:00Z",
    "worst_local": "08:02",
    "slowest_kmh": 8.0,
}


def line_rows() -> list[LineRow]:
    return [
        LineRow(at(DAY, 9, 0), "spot-b", "gate", 30, 10),
        LineRow(at(DAY, 23, 59, 59), "spot-b", "gate", 5, 25),
        LineRow(at(date(2025, 10, 4), 0, 0), "spot-b", "gate", 100, 0),
        LineRow(at(date(2024, 10, 3), 9, 0), "spot-b", "gate", 20, 0),
        LineRow(at(date(2025, 6, 2), 9, 0), "spot-b", "gate", 7, 0),
        LineRow(at(date(2025, 9, 27), 9, 0), "spot-b", "gate", 70, 0),
    ]


EXPECTED_BEACH = {
    "visits": 41,
    "visits_estimated": True,
    "entries": None,
    "person_hours": 82.0,
    "peak": 110,
    "peak_local": "10:45",
    "minutes_above": {"yellow": 45, "orange": 30, "red": 15},
    "comparisons": {
        "last_year": {"day": "2024-10-03", "visits": 15, "change_pct": 173.3},
        "previous_holiday": {"day": "2025-06-02", "visits": 5, "change_pct": 720.0},
        "ordinary_weekend": {"day": "2025-09-27", "visits": 15, "change_pct": 173.3},
    },
}

EXPECTED_SPOT = {
    "visits": 35,
    "visits_estimated": False,
    "entries": 35,
    "exits": 35,
    "comparisons": {
        "last_year": {"day": "2024-10-03", "visits": 20, "change_pct": 75.0},
        "previous_holiday": {"day": "2025-06-02", "visits": 7, "change_pct": 400.0},
        "ordinary_weekend": {"day": "2025-09-27", "visits": 70, "change_pct": -50.0},
    },
}

# Alerts started on Oct 3 (local): two at the stop (transport), acknowledged after 4 and 8
# minutes; one at the beach (culture & tourism), never acknowledged; one on Oct 4 00:00.
ALERTS = [
    ("stop-c/platform/crowded", at(DAY, 17, 20), 4),
    ("stop-c/platform/long-wait", at(DAY, 17, 25), 8),
    ("beach-a/sand/full", at(DAY, 10, 40), None),
    ("beach-a/sand/filling", at(date(2025, 10, 4), 0, 0), None),
]

EXPECTED_STOP = {"peak": 48, "peak_local": "17:30", "longest_wait_s": 900.0, "alerts": 2}

EXPECTED_DEPARTMENTS = [
    {"department": "culture_tourism", "alerts": 1, "acknowledged": 0, "median_ack_min": None},
    {"department": "transport", "alerts": 2, "acknowledged": 2, "median_ack_min": 6.0},
]

EXPECTED_TOTAL_LAST_YEAR = {"day": "2024-10-03", "visits": 35, "change_pct": 117.1}
