"""The zone metrics' declaration and everything said to follow from it.

Without a database: the released migrations' rollup SQL is what the declaration derives
(TimescaleDB's continuous aggregates are compared statement for statement, so the check
holds where the test server has no TimescaleDB), the newest migration adds exactly what
``new_metric_migration`` derives, and the typed rows and the API carry every metric.
With PostgreSQL, on each storage path the server offers: a migrated database has the
declared columns, and the metric added last (``peak_density_per_m2``, migration 8) goes
from a count message to the rollups, the series and the web API's points.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from raw_rows import hour_ago

from crowdwatch.contracts import db_schema
from crowdwatch.contracts.db_schema import ROLLUP_RESOLUTIONS, migrations
from crowdwatch.contracts.messages import CountMessage, ZoneCount
from crowdwatch.contracts.metrics import ZONE_METRICS, ZoneMetric, aggregates
from crowdwatch.contracts.rollup_sql import (
    new_metric_migration,
    site_rollup_columns,
    site_rollup_ddl,
    site_rollup_select,
    timescale_zone_cagg,
    zone_rollup_columns,
    zone_rollup_ddl,
)
from crowdwatch.dashboards.api_schema import SeriesPointOut
from crowdwatch.dashboards.web import series_point_json
from crowdwatch.ingest.validate import Accepted, Envelope
from crowdwatch.ingest.writer import BatchWriter
from crowdwatch.storage.migrate import upgrade
from crowdwatch.storage.queries import (
    Resolution,
    SeriesPoint,
    ZoneLatest,
    latest_zone_counts,
    site_series,
    zone_series,
)
from crowdwatch.storage.rollups import refresh_rollups


def _up_to(version: int) -> tuple[ZoneMetric, ...]:
    return tuple(m for m in ZONE_METRICS if m.since <= version)


def _site_view(metrics: tuple[ZoneMetric, ...]) -> str:
    return "CREATE VIEW site_counts_{suffix} AS" + site_rollup_select(metrics)


def test_migration_3_created_what_the_declaration_derives_for_its_metrics() -> None:
    first = _up_to(2)
    assert zone_rollup_ddl(first) == db_schema._ZONE_ROLLUP_COLUMNS
    assert site_rollup_ddl(first) == db_schema._SITE_TABLE
    assert site_rollup_select(first) == db_schema._V3_SITE_ROLLUP_SELECT


def test_every_timescale_rebuild_is_what_the_declaration_derives() -> None:
    # Migration 3 used last(count, ts), which migration 7 replaced; every later migration
    # that (re)creates the zone aggregates and site views must write the derived text.
    rebuilds = [
        m
        for m in migrations(timescale=True)
        if m.version > 3 and "CREATE MATERIALIZED VIEW zone_counts_" in m.timescale_sql
    ]
    assert [m.version for m in rebuilds][:1] == [7]
    for migration in rebuilds:
        metrics = _up_to(migration.version)
        for suffix, width in ROLLUP_RESOLUTIONS:
            for text in (timescale_zone_cagg(metrics), _site_view(metrics)):
                expected = text.replace("{suffix}", suffix).replace("{width}", width)
                assert expected in migration.timescale_sql, (migration.version, suffix)
    # The newest rebuild holds every declared metric: none was declared without a migration.
    assert _up_to(rebuilds[-1].version) == ZONE_METRICS


@pytest.mark.parametrize("metric", [m for m in ZONE_METRICS if m.since > 7], ids=str)
def test_a_metric_added_later_has_the_migration_the_declaration_derives(
    metric: ZoneMetric,
) -> None:
    [migration] = [m for m in migrations(timescale=True) if m.version == metric.since]
    common, timescale, plain = new_metric_migration(metric)
    assert migration.common_sql.strip() == common.strip()
    [plain_migration] = [m for m in migrations(timescale=False) if m.version == metric.since]
    assert plain_migration.plain_sql.strip() == plain.strip()
    for suffix, width in ROLLUP_RESOLUTIONS:
        expected = timescale.replace("{suffix}", suffix).replace("{width}", width)
        assert expected.strip() in migration.timescale_sql


def test_a_required_metric_cannot_be_added_to_a_database_with_rows() -> None:
    late = dataclasses.replace(ZONE_METRICS[-1], required=True)
    with pytest.raises(ValueError, match="declare it with required=False"):
        new_metric_migration(late)


def test_names_are_unique_and_every_typed_row_carries_every_metric() -> None:
    columns = [m.column for m in ZONE_METRICS]
    names = [a.name for a in aggregates()]
    stored = [c.name for c in zone_rollup_columns()]
    apis = [a.api for a in aggregates() if a.api is not None]
    for listed in (columns, names, stored, apis, [c.name for c in site_rollup_columns()]):
        assert len(listed) == len(set(listed)), listed
    assert set(columns) <= set(ZoneCount.model_fields)
    assert set(columns) <= {f.name for f in dataclasses.fields(ZoneLatest)}
    assert set(names) <= {f.name for f in dataclasses.fields(SeriesPoint)}
    assert set(SeriesPointOut.model_fields) == {"ts", *apis}


def test_series_points_show_the_declared_api_fields() -> None:
    point = SeriesPoint(
        ts=datetime(2026, 10, 1, 2, 3, tzinfo=UTC),
        count_last=7,
        count_mean=6.123,
        count_max=9,
        samples=12,
        peak_density_max=1.4567,
        vehicles_max=31,
        speed_mean=27.346,
        veh_density_mean=41.666,
        queue_max=57.25,
    )
    body = series_point_json(point)
    assert body == {
        "ts": "2026-10-01T02:03:00Z",
        "count": 7,
        "mean": 6.12,
        "max": 9,
        "peak_density": 1.46,
        "vehicles": 31,
        "speed_kmh": 27.35,
        "veh_per_km_lane": 41.67,
        "queue_m": 57.25,
    }
    assert SeriesPointOut.model_validate(body).peak_density == 1.46


def _types(conn: psycopg.Connection, table: str) -> dict[str, tuple[str, bool]]:
    rows = conn.execute(
        "SELECT column_name, data_type, is_nullable = 'NO' FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = %s",
        (table,),
    ).fetchall()
    return {name: (kind, not_null) for name, kind, not_null in rows}


def _pg(sql_type: str) -> str:
    return {"timestamptz": "timestamp with time zone"}.get(sql_type, sql_type)


def test_a_migrated_database_has_the_declared_columns(db_url: str, timescale: bool) -> None:
    upgrade(db_url, timescale=timescale)
    with psycopg.connect(db_url, autocommit=True) as conn:
        for suffix, _ in ROLLUP_RESOLUTIONS:
            for table, declared in (
                (f"zone_counts_{suffix}", zone_rollup_columns()),
                (f"site_counts_{suffix}", site_rollup_columns()),
            ):
                expected = {c.name: (_pg(c.sql_type), c.not_null) for c in declared}
                # Columns added by a later migration are nullable whatever their kind.
                actual = _types(conn, table)
                assert {n: t for n, (t, _) in actual.items()} == {
                    n: t for n, (t, _) in expected.items()
                }, table
                assert {n for n, (_, nn) in actual.items() if nn} <= {
                    n for n, (_, nn) in expected.items() if nn
                }, table
        for table in ("zone_counts", "zone_latest"):
            actual = _types(conn, table)
            for metric in ZONE_METRICS:
                assert actual[metric.column] == (metric.sql_type, metric.required), table


def _message(ts: datetime, zones: list[ZoneCount]) -> CountMessage:
    return CountMessage(
        site_id="stop-a", camera_id="cam1", ts=ts, interval_s=5.0, frames=50, zones=zones
    )


def test_peak_density_goes_from_a_message_to_the_rollups_series_and_api(
    db_url: str, timescale: bool
) -> None:
    upgrade(db_url, timescale=timescale)
    start = hour_ago(3)
    messages = [
        _message(
            start + timedelta(seconds=5 * i),
            [
                ZoneCount(
                    zone_id="platform",
                    count=10,
                    count_max=12,
                    count_mean=10.5,
                    density_per_m2=1.0,
                    peak_density_per_m2=peak,
                ),
                ZoneCount(zone_id="queue", count=3, count_max=3, count_mean=3.0),
            ],
        )
        for i, peak in enumerate([1.25, 2.5, 1.75])
    ]
    writer = BatchWriter(db_url)
    try:
        envelope = Envelope("crowdwatch/v1/stop-a/cam1/counts", b"{}", datetime.now(UTC))
        written = writer.write([Accepted(envelope, m) for m in messages])
    finally:
        writer.close()
    assert written.rows_written == 6
    with psycopg.connect(db_url, autocommit=True) as conn:
        refresh_rollups(conn)
        latest = {r.zone_id: r.peak_density_per_m2 for r in latest_zone_counts(conn)}
        end = start + timedelta(hours=1)
        by_resolution = {
            res: [
                p.peak_density_max for p in zone_series(conn, "stop-a", z, start, end, res).points
            ]
            for res in Resolution
            for z in ["platform"]
        }
        queue = zone_series(conn, "stop-a", "queue", start, end, Resolution.HOUR).points
        site = site_series(conn, "stop-a", start, end, Resolution.QUARTER_HOUR).points
    assert latest == {"platform": 1.75, "queue": None}
    assert by_resolution[Resolution.RAW] == [1.25, 2.5, 1.75]
    for res in (Resolution.MINUTE, Resolution.QUARTER_HOUR, Resolution.HOUR):
        assert by_resolution[res] == [2.5], res
    assert [p.peak_density_max for p in queue] == [None]
    # A site's peak density is its densest zone's, not a sum over zones.
    assert [(p.peak_density_max, p.count_max) for p in site] == [(2.5, 15)]
    assert series_point_json(site[0])["peak_density"] == 2.5


def test_vehicles_and_speed_go_from_a_message_to_the_rollups_series_and_api(db_url: str) -> None:
    upgrade(db_url, timescale=False)
    start = hour_ago(3)
    # Two lanes of one road; the message before the edge measured speed has none.
    readings = [(12, 40.0, 8, 30.0), (20, 25.0, 10, None), (30, 10.0, 14, 14.0)]
    messages = [
        _message(
            start + timedelta(seconds=5 * i),
            [
                ZoneCount(
                    zone_id="inbound",
                    count=0,
                    count_max=0,
                    count_mean=0.0,
                    vehicles=cars_in,
                    mean_speed_kmh=speed_in,
                ),
                ZoneCount(
                    zone_id="outbound",
                    count=0,
                    count_max=0,
                    count_mean=0.0,
                    vehicles=cars_out,
                    mean_speed_kmh=speed_out,
                ),
            ],
        )
        for i, (cars_in, speed_in, cars_out, speed_out) in enumerate(readings)
    ]
    writer = BatchWriter(db_url)
    try:
        envelope = Envelope("crowdwatch/v1/stop-a/cam1/counts", b"{}", datetime.now(UTC))
        written = writer.write([Accepted(envelope, m) for m in messages])
    finally:
        writer.close()
    assert written.rows_written == 6
    with psycopg.connect(db_url, autocommit=True) as conn:
        refresh_rollups(conn)
        latest = {r.zone_id: (r.vehicles, r.mean_speed_kmh) for r in latest_zone_counts(conn)}
        end = start + timedelta(hours=1)
        inbound = {
            res: [
                (p.vehicles_max, p.speed_mean)
                for p in zone_series(conn, "stop-a", "inbound", start, end, res).points
            ]
            for res in Resolution
        }
        outbound = zone_series(conn, "stop-a", "outbound", start, end, Resolution.HOUR).points
        site = site_series(conn, "stop-a", start, end, Resolution.QUARTER_HOUR).points
    assert latest == {"inbound": (30, 10.0), "outbound": (14, 14.0)}
    assert inbound[Resolution.RAW] == [(12, 40.0), (20, 25.0), (30, 10.0)]
    for res in (Resolution.MINUTE, Resolution.QUARTER_HOUR, Resolution.HOUR):
        assert inbound[res] == [(30, 25.0)], res
    # A missing speed is left out of the mean, not read as 0 km/h.
    assert [(p.vehicles_max, p.speed_mean) for p in outbound] == [(14, 22.0)]
    # A site's vehicles add up over its zones; its speed is the mean of every sample.
    assert [(p.vehicles_max, p.speed_mean) for p in site] == [(44, 119.0 / 5)]
    body = series_point_json(site[0])
    assert (body["vehicles"], body["speed_kmh"]) == (44, 23.8)


def test_density_and_queue_go_from_a_message_to_the_rollups_series_and_api(db_url: str) -> None:
    upgrade(db_url, timescale=False)
    start = hour_ago(3)
    # A section with lanes (density) and an approach (queue); the first message is from an
    # edge before either existed.
    readings = [(None, None), (40.0, 12.5), (80.0, 61.0), (60.0, 30.0)]
    messages = [
        _message(
            start + timedelta(seconds=5 * i),
            [
                ZoneCount(
                    zone_id="approach",
                    count=0,
                    count_max=0,
                    count_mean=0.0,
                    vehicles=5,
                    vehicle_density=density,
                    queue_length_m=queue,
                ),
            ],
        )
        for i, (density, queue) in enumerate(readings)
    ]
    writer = BatchWriter(db_url)
    try:
        envelope = Envelope("crowdwatch/v1/stop-a/cam1/counts", b"{}", datetime.now(UTC))
        written = writer.write([Accepted(envelope, m) for m in messages])
    finally:
        writer.close()
    assert written.rows_written == 4
    with psycopg.connect(db_url, autocommit=True) as conn:
        refresh_rollups(conn)
        latest = [(r.vehicle_density, r.queue_length_m) for r in latest_zone_counts(conn)]
        end = start + timedelta(hours=1)
        series = {
            res: [
                (p.veh_density_mean, p.queue_max)
                for p in zone_series(conn, "stop-a", "approach", start, end, res).points
            ]
            for res in Resolution
        }
        site = site_series(conn, "stop-a", start, end, Resolution.HOUR).points
    assert latest == [(60.0, 30.0)]
    assert series[Resolution.RAW] == [(None, None), *readings[1:]]
    # The mean skips the row without a density; the queue's rollup is its longest.
    for res in (Resolution.MINUTE, Resolution.QUARTER_HOUR, Resolution.HOUR):
        assert series[res] == [(60.0, 61.0)], res
    body = series_point_json(site[0])
    assert (body["veh_per_km_lane"], body["queue_m"]) == (60.0, 61.0)


def test_a_version_7_database_gets_the_peak_density_and_keeps_its_rollups(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now(), timescale boolean NOT NULL)"
        )
        for migration in migrations(timescale=False)[:7]:
            for sql in (migration.common_sql, migration.plain_sql):
                if sql.strip():
                    conn.execute(sql)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, timescale) VALUES (%s, %s, false)",
                (migration.version, migration.name),
            )
        # A raw row not yet rolled up, and a bucket an older release rolled up already.
        ts = hour_ago(3)
        conn.execute(
            "INSERT INTO zone_counts (ts, site_id, camera_id, zone_id, count, count_max,"
            " count_mean, interval_s, message_id) VALUES (%s, 'stop-a', 'cam1', 'platform',"
            " 4, 5, 4.5, 5, 'old-message')",
            (ts,),
        )
        before = ts - timedelta(hours=1)
        conn.execute(
            "INSERT INTO zone_counts_1m (bucket, site_id, zone_id, samples, count_max,"
            " count_mean_sum, count_last, last_ts, wait_samples, density_samples)"
            " VALUES (%s, 'stop-a', 'platform', 2, 7, 12.0, 6, %s, 0, 0)",
            (before, before + timedelta(seconds=50)),
        )
    upgrade(db_url, timescale=False)
    with psycopg.connect(db_url, autocommit=True) as conn:
        refresh_rollups(conn)
        points = zone_series(
            conn, "stop-a", "platform", before, ts + timedelta(minutes=1), Resolution.MINUTE
        ).points
    assert [(p.ts, p.count_max, p.samples, p.peak_density_max) for p in points] == [
        (before, 7, 2, None),
        (ts, 5, 1, None),
    ]
