"""Raw count rows for the rollup, retention and series tests, written as ingest writes them.

Rows go through a real ``INSERT ... ON CONFLICT DO NOTHING`` into the raw tables, so the
invalidation trigger and the idempotency key work exactly as in production.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg

_ids = itertools.count()


def _message_id() -> str:
    return f"msg-{next(_ids):08d}"


@dataclass(frozen=True, slots=True)
class ZoneRow:
    ts: datetime
    site_id: str
    zone_id: str
    count: int
    count_max: int | None = None
    count_mean: float | None = None
    longest_wait_s: float | None = None
    median_wait_s: float | None = None
    density_per_m2: float | None = None
    message_id: str = field(default_factory=_message_id)
    vehicles: int | None = None
    mean_speed_kmh: float | None = None


@dataclass(frozen=True, slots=True)
class LineRow:
    ts: datetime
    site_id: str
    line_id: str
    in_count: int
    out_count: int
    message_id: str = field(default_factory=_message_id)


def insert_zones(conn: psycopg.Connection, rows: Iterable[ZoneRow]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO zone_counts (ts, site_id, camera_id, zone_id, count, count_max,"
            " count_mean, interval_s, message_id, longest_wait_s, median_wait_s, density_per_m2,"
            " vehicles, mean_speed_kmh)"
            " VALUES (%s, %s, 'cam1', %s, %s, %s, %s, 5, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            [
                (
                    r.ts,
                    r.site_id,
                    r.zone_id,
                    r.count,
                    r.count if r.count_max is None else r.count_max,
                    float(r.count) if r.count_mean is None else r.count_mean,
                    r.message_id,
                    r.longest_wait_s,
                    r.median_wait_s,
                    r.density_per_m2,
                    r.vehicles,
                    r.mean_speed_kmh,
                )
                for r in rows
            ],
        )


def insert_lines(conn: psycopg.Connection, rows: Iterable[LineRow]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO line_counts (ts, site_id, camera_id, line_id, in_count, out_count,"
            " message_id) VALUES (%s, %s, 'cam1', %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            [(r.ts, r.site_id, r.line_id, r.in_count, r.out_count, r.message_id) for r in rows],
        )


def hour_ago(hours: int) -> datetime:
    """The start of the UTC hour ``hours`` before the current one."""
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return now - timedelta(hours=hours)
