"""The database schema, as ordered migrations of plain SQL.

Time-series tables (``zone_counts``, ``line_counts``, ``camera_status``) are partitioned by
time: a TimescaleDB hypertable where the ``timescaledb`` extension is available, native range
partitions (one per UTC day, plus a DEFAULT partition so a late or far-off row is never
refused) otherwise.  Everything else is an ordinary table.  All timestamps are ``timestamptz``
stored in UTC; local days are computed in queries with the district's time zone.

Idempotency: each raw row's primary key contains the message id, so a redelivered message
inserts nothing (``ON CONFLICT DO NOTHING``).  The partition key ``ts`` is part of every
primary key because PostgreSQL requires it on partitioned tables.

This module is pure text so every component (and the edge, which has no database driver)
may import it; ``crowdwatch.storage.migrate`` executes it.
"""

from __future__ import annotations

from dataclasses import dataclass

TIME_SERIES_TABLES = ("zone_counts", "line_counts", "camera_status")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    common_sql: str
    """Runs on every PostgreSQL."""
    timescale_sql: str
    """Runs after ``common_sql`` when TimescaleDB is present."""
    plain_sql: str
    """Runs after ``common_sql`` on plain PostgreSQL."""


_V1_COMMON = """
CREATE TABLE sites (
    site_id      text PRIMARY KEY,
    kind         text NOT NULL,
    name_zh      text NOT NULL,
    name_en      text NOT NULL,
    lat          double precision NOT NULL,
    lon          double precision NOT NULL,
    capacity     integer NOT NULL CHECK (capacity > 0),
    department   text NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE zones (
    site_id      text NOT NULL REFERENCES sites (site_id) ON DELETE CASCADE,
    camera_id    text NOT NULL,
    zone_id      text NOT NULL,
    name_zh      text NOT NULL,
    name_en      text NOT NULL,
    capacity     integer CHECK (capacity > 0),
    PRIMARY KEY (site_id, zone_id)
);

CREATE TABLE zone_counts (
    ts           timestamptz NOT NULL,
    site_id      text NOT NULL,
    camera_id    text NOT NULL,
    zone_id      text NOT NULL,
    count        integer NOT NULL CHECK (count >= 0),
    count_max    integer NOT NULL CHECK (count_max >= 0),
    count_mean   real NOT NULL CHECK (count_mean >= 0),
    interval_s   real NOT NULL,
    message_id   text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ts, message_id, zone_id)
) {partition_clause};

CREATE TABLE line_counts (
    ts           timestamptz NOT NULL,
    site_id      text NOT NULL,
    camera_id    text NOT NULL,
    line_id      text NOT NULL,
    in_count     integer NOT NULL CHECK (in_count >= 0),
    out_count    integer NOT NULL CHECK (out_count >= 0),
    message_id   text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ts, message_id, line_id)
) {partition_clause};

CREATE TABLE camera_status (
    ts             timestamptz NOT NULL,
    site_id        text NOT NULL,
    camera_id      text NOT NULL,
    state          text NOT NULL,
    fps            real NOT NULL,
    inference_ms   real NOT NULL,
    dropped_frames bigint NOT NULL,
    detail         text NOT NULL,
    message_id     text NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ts, message_id)
) {partition_clause};

CREATE INDEX zone_counts_zone_ts ON zone_counts (site_id, zone_id, ts DESC);
CREATE INDEX line_counts_line_ts ON line_counts (site_id, line_id, ts DESC);
CREATE INDEX camera_status_camera_ts ON camera_status (site_id, camera_id, ts DESC);

-- The newest count of every zone, kept by ingest in the same transaction as the raw rows so
-- the wall and the alert engine read one small table instead of scanning partitions.
CREATE TABLE zone_latest (
    site_id      text NOT NULL,
    zone_id      text NOT NULL,
    camera_id    text NOT NULL,
    ts           timestamptz NOT NULL,
    count        integer NOT NULL,
    count_max    integer NOT NULL,
    count_mean   real NOT NULL,
    PRIMARY KEY (site_id, zone_id)
);

CREATE TABLE camera_latest_status (
    site_id        text NOT NULL,
    camera_id      text NOT NULL,
    ts             timestamptz NOT NULL,
    state          text NOT NULL,
    fps            real NOT NULL,
    inference_ms   real NOT NULL,
    dropped_frames bigint NOT NULL,
    detail         text NOT NULL,
    PRIMARY KEY (site_id, camera_id)
);

-- Payloads that broke the contract, kept whole with the reason so nothing is silently lost.
CREATE TABLE dead_letters (
    id           bigserial PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    topic        text NOT NULL,
    payload      bytea NOT NULL,
    reason       text NOT NULL
);

CREATE TABLE alerts (
    id           bigserial PRIMARY KEY,
    alert_key    text NOT NULL,
    site_id      text NOT NULL,
    zone_id      text,
    rule_id      text NOT NULL,
    severity     text NOT NULL,
    state        text NOT NULL CHECK (state IN ('firing', 'resolved')),
    value        double precision NOT NULL,
    threshold    double precision NOT NULL,
    started_at   timestamptz NOT NULL,
    resolved_at  timestamptz,
    summary_zh   text NOT NULL,
    summary_en   text NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
-- At most one firing alert per key: deduplication enforced by the database itself.
CREATE UNIQUE INDEX alerts_one_firing_per_key ON alerts (alert_key) WHERE state = 'firing';
CREATE INDEX alerts_site_started ON alerts (site_id, started_at DESC);
"""

_V1_TIMESCALE = """
CREATE EXTENSION IF NOT EXISTS timescaledb;
SELECT create_hypertable('zone_counts', by_range('ts', INTERVAL '1 day'));
SELECT create_hypertable('line_counts', by_range('ts', INTERVAL '1 day'));
SELECT create_hypertable('camera_status', by_range('ts', INTERVAL '1 day'));
"""

_V1_PLAIN = """
CREATE TABLE zone_counts_default PARTITION OF zone_counts DEFAULT;
CREATE TABLE line_counts_default PARTITION OF line_counts DEFAULT;
CREATE TABLE camera_status_default PARTITION OF camera_status DEFAULT;
"""


def _v1(partitioned: bool) -> str:
    clause = "PARTITION BY RANGE (ts)" if partitioned else ""
    return _V1_COMMON.replace("{partition_clause}", clause)


def migrations(timescale: bool) -> list[Migration]:
    """The ordered migrations for a database with or without TimescaleDB."""
    return [
        Migration(
            version=1,
            name="sites, zones, raw counts, status, dead letters, alerts",
            common_sql=_v1(partitioned=not timescale),
            timescale_sql=_V1_TIMESCALE,
            plain_sql=_V1_PLAIN,
        ),
    ]


def daily_partition_sql(table: str, day_start_utc: str, day_end_utc: str, suffix: str) -> str:
    """DDL for one UTC day's range partition of ``table`` (plain PostgreSQL only).

    Rows already in the DEFAULT partition for that range must be moved first; the caller
    (``crowdwatch.storage.partitions``) does it in the same transaction.
    """
    if table not in TIME_SERIES_TABLES:
        raise ValueError(f"expected one of {TIME_SERIES_TABLES}, got {table!r}")
    return (
        f"CREATE TABLE IF NOT EXISTS {table}_{suffix} PARTITION OF {table} "
        f"FOR VALUES FROM ('{day_start_utc}') TO ('{day_end_utc}')"
    )
