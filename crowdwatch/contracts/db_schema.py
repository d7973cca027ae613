"""The database schema, as ordered migrations of plain SQL.

Time-series tables (``zone_counts``, ``line_counts``, ``camera_status``) are partitioned by
time: a TimescaleDB hypertable where the server preloads ``timescaledb``, native range
partitions (one per UTC day, plus a DEFAULT partition so a late or far-off row is never
refused) otherwise.  Everything else is an ordinary table.  All timestamps are ``timestamptz``
stored in UTC; local days are computed in queries with the district's time zone.

Idempotency: each raw row's primary key contains the message id, so a redelivered message
inserts nothing (``ON CONFLICT DO NOTHING``).  The partition key ``ts`` is part of every
primary key because PostgreSQL requires it on partitioned tables.

Rollups (migration 3) at 1 min, 15 min and 1 h per zone and line, with site views over them,
have the same names and columns on both paths: continuous aggregates with TimescaleDB, tables
refreshed from an invalidation log (``crowdwatch.storage.rollups``) otherwise.

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

-- Payloads that broke the contract, with the reason so nothing is silently lost (since
-- migration 6 only their first 8 KiB, with size and SHA-256, and expired by the upkeep).
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


# Migration 2: optional per-zone waiting time and density (ZoneCount's additive fields).
# ADD COLUMN on the partitioned parent (or hypertable) reaches every partition (or chunk).
_V2_COMMON = """
ALTER TABLE zone_counts
    ADD COLUMN longest_wait_s real,
    ADD COLUMN median_wait_s real,
    ADD COLUMN density_per_m2 real;
ALTER TABLE zone_latest
    ADD COLUMN longest_wait_s real,
    ADD COLUMN median_wait_s real,
    ADD COLUMN density_per_m2 real;
"""

ROLLUP_ORIGIN = "2000-01-01 00:00:00+00"
"""Origin of every rollup bucket (``date_bin``).  TimescaleDB's ``time_bucket`` counts
minute and hour buckets from 2000-01-03 00:00 UTC, which is on the same 1 min / 15 min / 1 h
grid, so both paths cut time at the same instants."""

ROLLUP_RESOLUTIONS = (("1m", "1 minute"), ("15m", "15 minutes"), ("1h", "1 hour"))
"""(table suffix, bucket width) of the rollups, finest first."""

ROLLUP_TABLES = tuple(
    f"{source}_{suffix}"
    for suffix, _ in ROLLUP_RESOLUTIONS
    for source in ("zone_counts", "line_counts", "site_counts")
)
"""Every rollup relation: tables on plain PostgreSQL; continuous aggregates (zone, line) and
views (site) on TimescaleDB."""

# Rollup tables (plain) and continuous aggregates (TimescaleDB) have the same names and
# columns, so every query reads both alike.  The metrics and how each rolls up are declared
# in ``crowdwatch.contracts.metrics``; the text below is migration 3's as released, equal to
# what ``crowdwatch.contracts.rollup_sql`` derives for the metrics of migrations 1 and 2
# (tests/test_metrics.py).  They hold composable parts (sums and counts,
# not means) so a coarser rollup is an exact aggregate of a finer one:
#   samples          raw rows (count messages) in the bucket
#   count_max        max of count_max          count_mean_sum   sum of count_mean
#   count_last       count of the newest row   last_ts          ts of the newest row
#   wait_max         max of longest_wait_s     wait_median_sum / wait_samples: mean median wait
#   density_max      max of density_per_m2     density_sum / density_samples: mean density
# A raw row belongs to the bucket of its ts (the end of its interval).
_ZONE_ROLLUP_COLUMNS = """
    bucket           timestamptz NOT NULL,
    site_id          text NOT NULL,
    zone_id          text NOT NULL,
    samples          bigint NOT NULL,
    count_max        integer NOT NULL,
    count_mean_sum   double precision NOT NULL,
    count_last       integer NOT NULL,
    last_ts          timestamptz NOT NULL,
    wait_max         real,
    wait_median_sum  double precision,
    wait_samples     bigint NOT NULL,
    density_max      real,
    density_sum      double precision,
    density_samples  bigint NOT NULL,
    PRIMARY KEY (site_id, zone_id, bucket)
"""

_LINE_ROLLUP_COLUMNS = """
    bucket           timestamptz NOT NULL,
    site_id          text NOT NULL,
    line_id          text NOT NULL,
    samples          bigint NOT NULL,
    in_sum           bigint NOT NULL,
    out_sum          bigint NOT NULL,
    PRIMARY KEY (site_id, line_id, bucket)
"""

# Site rollups: per bucket, the sum over the site's zones of each zone's value in the same
# bucket.  So count_max is the sum of the zones' maxima (an upper bound of the site's true
# maximum when zones peak at different moments), count_mean is the sum of the zones' means
# (the mean of the site total when every zone reported throughout the bucket), count_last the
# sum of the zones' last counts.  Waiting time and density are not additive: wait_max and
# density_max are the largest over the zones, wait_mean and density_mean the mean over every
# sample of every zone.  A zone that sent nothing in a bucket adds nothing.
# Plain PostgreSQL materialises this into tables ``site_counts_*`` in the same refresh as the
# zone rollups (the wall reads sites a lot); TimescaleDB gets views of the same name and
# columns over the continuous aggregates (always exact; no hierarchical aggregate to test).
_V3_SITE_ROLLUP_SELECT = """
SELECT bucket,
       site_id,
       count(*)::integer AS zones,
       sum(samples)::bigint AS samples,
       sum(count_max)::bigint AS count_max,
       sum(count_mean_sum / samples) AS count_mean,
       sum(count_last)::bigint AS count_last,
       max(wait_max) AS wait_max,
       sum(wait_median_sum) / nullif(sum(wait_samples), 0) AS wait_mean,
       max(density_max) AS density_max,
       sum(density_sum) / nullif(sum(density_samples), 0) AS density_mean
FROM zone_counts_{suffix}
"""
"""The site views of migrations 3 and 7, frozen as released.  The plain refresh uses the
select derived from the metrics' declaration (:mod:`crowdwatch.contracts.rollup_sql`), the
same text until a metric is added after migration 7."""

_SITE_TABLE = """
CREATE TABLE site_counts_{suffix} (
    bucket        timestamptz NOT NULL,
    site_id       text NOT NULL,
    zones         integer NOT NULL,
    samples       bigint NOT NULL,
    count_max     bigint NOT NULL,
    count_mean    double precision NOT NULL,
    count_last    bigint NOT NULL,
    wait_max      real,
    wait_mean     double precision,
    density_max   real,
    density_mean  double precision,
    PRIMARY KEY (site_id, bucket)
);
CREATE INDEX site_counts_{suffix}_bucket ON site_counts_{suffix} (bucket);
"""

_SITE_VIEW = (
    "CREATE VIEW site_counts_{suffix} AS" + _V3_SITE_ROLLUP_SELECT + "GROUP BY bucket, site_id;\n"
)

_ROLLUP_INDEXES = """
CREATE INDEX zone_counts_{suffix}_site_bucket ON zone_counts_{suffix} (site_id, bucket);
CREATE INDEX zone_counts_{suffix}_bucket ON zone_counts_{suffix} (bucket);
CREATE INDEX line_counts_{suffix}_bucket ON line_counts_{suffix} (bucket);
"""

# Plain PostgreSQL: the raw tables log which 1-minute buckets each INSERT touched (a
# statement trigger reading the transition table, so one row per bucket per batch, not per
# raw row).  The log row commits or rolls back with the raw rows, so the refresher sees a
# bucket as touched exactly when it can see the rows: late, out-of-order and retried batches
# (whose received_at may be minutes old) are never missed.  TimescaleDB keeps the same kind
# of invalidation log for its continuous aggregates.  No unique key: concurrent ingest
# workers append without waiting on each other; the refresher de-duplicates.
_V3_PLAIN_LOG = """
CREATE TABLE rollup_invalidations (
    source     text NOT NULL,
    bucket     timestamptz NOT NULL,
    logged_at  timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION log_rollup_invalidation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rollup_invalidations (source, bucket)
    SELECT DISTINCT TG_TABLE_NAME,
           date_bin(INTERVAL '1 minute', ts, TIMESTAMPTZ '{origin}')
    FROM new_rows;
    RETURN NULL;
END
$$;

CREATE TRIGGER zone_counts_rollup_invalidation AFTER INSERT ON zone_counts
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION log_rollup_invalidation();
CREATE TRIGGER line_counts_rollup_invalidation AFTER INSERT ON line_counts
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION log_rollup_invalidation();
"""

# TimescaleDB: one continuous aggregate per resolution, straight from the raw hypertable
# (the same sums and counts as the plain path's chain 1m -> 15m -> 1h), real-time so
# the bucket being filled is read from the raw rows, refreshed by crowdwatch's own
# refresher (``crowdwatch.storage.rollups``) and, where TimescaleDB's job scheduler runs,
# by a policy every 30 s over the last two days.  Compression: raw chunks older than two days,
# segmented by the key the queries filter on.
_TS_ZONE_CAGG = """
CREATE MATERIALIZED VIEW zone_counts_{suffix}
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '{width}', ts) AS bucket,
       site_id,
       zone_id,
       count(*) AS samples,
       max(count_max) AS count_max,
       sum(count_mean::double precision) AS count_mean_sum,
       last(count, ts) AS count_last,
       max(ts) AS last_ts,
       max(longest_wait_s) AS wait_max,
       sum(median_wait_s::double precision) AS wait_median_sum,
       count(median_wait_s) AS wait_samples,
       max(density_per_m2) AS density_max,
       sum(density_per_m2::double precision) AS density_sum,
       count(density_per_m2) AS density_samples
FROM zone_counts
GROUP BY 1, 2, 3
WITH NO DATA;

CREATE MATERIALIZED VIEW line_counts_{suffix}
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '{width}', ts) AS bucket,
       site_id,
       line_id,
       count(*) AS samples,
       sum(in_count)::bigint AS in_sum,
       sum(out_count)::bigint AS out_sum
FROM line_counts
GROUP BY 1, 2, 3
WITH NO DATA;

SELECT add_continuous_aggregate_policy('zone_counts_{suffix}',
    start_offset => INTERVAL '2 days', end_offset => INTERVAL '1 minute',
    schedule_interval => INTERVAL '30 seconds');
SELECT add_continuous_aggregate_policy('line_counts_{suffix}',
    start_offset => INTERVAL '2 days', end_offset => INTERVAL '1 minute',
    schedule_interval => INTERVAL '30 seconds');
"""

_V3_TIMESCALE_COMPRESSION = """
ALTER TABLE zone_counts SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'site_id, zone_id',
    timescaledb.compress_orderby = 'ts DESC, message_id');
ALTER TABLE line_counts SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'site_id, line_id',
    timescaledb.compress_orderby = 'ts DESC, message_id');
ALTER TABLE camera_status SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'site_id, camera_id',
    timescaledb.compress_orderby = 'ts DESC, message_id');
SELECT add_compression_policy('zone_counts', compress_after => INTERVAL '2 days');
SELECT add_compression_policy('line_counts', compress_after => INTERVAL '2 days');
SELECT add_compression_policy('camera_status', compress_after => INTERVAL '2 days');
"""


def _v3_plain() -> str:
    parts = [_V3_PLAIN_LOG.replace("{origin}", ROLLUP_ORIGIN)]
    for suffix, _ in ROLLUP_RESOLUTIONS:
        parts.append(f"CREATE TABLE zone_counts_{suffix} ({_ZONE_ROLLUP_COLUMNS});")
        parts.append(f"CREATE TABLE line_counts_{suffix} ({_LINE_ROLLUP_COLUMNS});")
        parts.append(_ROLLUP_INDEXES.replace("{suffix}", suffix))
        parts.append(_SITE_TABLE.replace("{suffix}", suffix))
    return "\n".join(parts)


def _v3_timescale() -> str:
    parts = []
    for suffix, width in ROLLUP_RESOLUTIONS:
        parts.append(_TS_ZONE_CAGG.replace("{suffix}", suffix).replace("{width}", width))
        parts.append(_ROLLUP_INDEXES.replace("{suffix}", suffix))
        parts.append(_SITE_VIEW.replace("{suffix}", suffix))
    parts.append(_V3_TIMESCALE_COMPRESSION)
    return "\n".join(parts)


# Migration 4: the alert engine's durable state.  Acknowledgement and escalation on the alert
# row; every step of an alert's life in ``alert_events`` (who, when, what, note); pending
# timers (``alert_pending``) so a restarted engine neither restarts nor forgets a ``for``
# period; each notification to each channel with its attempts (``notifications``); silences;
# and the lease that lets exactly one of several engines notify (``alert_engine_lease``).
_V4_COMMON = """
ALTER TABLE alerts
    ADD COLUMN camera_id text,
    ADD COLUMN department text,
    ADD COLUMN group_key text,
    ADD COLUMN acknowledged_at timestamptz,
    ADD COLUMN acknowledged_by text,
    ADD COLUMN ack_note text,
    ADD COLUMN escalation_level integer NOT NULL DEFAULT 0,
    ADD COLUMN escalated_at timestamptz,
    ADD COLUMN escalation_notified integer NOT NULL DEFAULT 0,
    ADD COLUMN clearing_since timestamptz,
    ADD COLUMN notified_at timestamptz,
    ADD COLUMN resolve_notified_at timestamptz,
    ADD COLUMN resolve_value double precision;
CREATE INDEX alerts_state_started ON alerts (state, started_at DESC);

CREATE TABLE alert_events (
    id           bigserial PRIMARY KEY,
    alert_id     bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    at           timestamptz NOT NULL,
    kind         text NOT NULL,
    who          text NOT NULL DEFAULT '',
    note         text NOT NULL DEFAULT '',
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_events_alert ON alert_events (alert_id, at, id);

CREATE TABLE alert_pending (
    alert_key     text PRIMARY KEY,
    site_id       text NOT NULL,
    zone_id       text,
    rule_id       text NOT NULL,
    pending_since timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE notifications (
    id            bigserial PRIMARY KEY,
    alert_id      bigint REFERENCES alerts (id) ON DELETE CASCADE,
    alert_ids     bigint[] NOT NULL DEFAULT '{}',
    event         text NOT NULL,
    level         integer NOT NULL DEFAULT 0,
    channel_id    text NOT NULL,
    channel_type  text NOT NULL,
    group_key     text,
    state         text NOT NULL DEFAULT 'queued'
                  CHECK (state IN ('queued', 'sent', 'failed', 'suppressed')),
    attempts      integer NOT NULL DEFAULT 0,
    last_error    text,
    payload       jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    sent_at       timestamptz
);
CREATE INDEX notifications_alert ON notifications (alert_id, id);
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE state = 'queued';

CREATE TABLE alert_silences (
    id          bigserial PRIMARY KEY,
    site_id     text,
    zone_id     text,
    rule_id     text,
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    created_by  text NOT NULL,
    comment     text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at)
);
CREATE INDEX alert_silences_ends ON alert_silences (ends_at);

CREATE TABLE alert_engine_lease (
    name        text PRIMARY KEY,
    holder      text NOT NULL,
    expires_at  timestamptz NOT NULL,
    renewed_at  timestamptz NOT NULL DEFAULT now()
);
"""


# Migration 5: what produced each zone count (``ZoneCount.method``: ``detect`` boxes or the
# ``dense`` crowd counter's density map), so a reader can tell an estimate from a box count.
# Nullable, no default: rows written before it keep NULL, "counted before the method was
# recorded", and adding the column rewrites nothing.  NULL passes the CHECK.  The rollups
# are left as they are.  ``zone_latest`` is an ordinary table on both paths.
_V5_COMMON = """
ALTER TABLE zone_latest
    ADD COLUMN method text CONSTRAINT zone_latest_method_check
        CHECK (method IN ('detect', 'dense'));
"""

# Plain PostgreSQL: ADD COLUMN and its CHECK on the partitioned parent reach every partition,
# DEFAULT included, and every partition created later.
_V5_PLAIN = """
ALTER TABLE zone_counts
    ADD COLUMN method text CONSTRAINT zone_counts_method_check
        CHECK (method IN ('detect', 'dense'));
"""

# TimescaleDB (run by the suite where the test server preloads it; see the README).  The
# hypertable has compression enabled (migration 3); a nullable column without a default is
# allowed there and reaches every chunk, compressed ones included.  A CHECK is not: releases
# before timescale/timescaledb#7864 and #7868 (2025) refuse any constraint on a hypertable
# with compression enabled ("cannot add column with constraints to a hypertable that has
# compression enabled"), and the whole migration would roll back.  So the raw column goes
# without one on this path; ingest only writes what the message contract (``CountMethod``)
# accepted, and ``zone_latest`` keeps its CHECK.
_V5_TIMESCALE = """
ALTER TABLE zone_counts ADD COLUMN method text;
"""


# Migration 6: a dead letter keeps a bounded prefix of its payload (8192 bytes, the ingest's
# ``KEPT_PAYLOAD_BYTES``) with the payload's full size and SHA-256: a hostile sender must not
# fill the database with megabyte payloads, and the prefix, size and hash are enough to tell
# what was sent and match it against a sender's logs.  Existing rows are cut the same way.
# The index serves the upkeep's expiry by age (``database.retention.dead_letter_days``).
# An ordinary table on both paths.
_V6_COMMON = """
ALTER TABLE dead_letters
    ADD COLUMN payload_bytes bigint,
    ADD COLUMN payload_sha256 text;
UPDATE dead_letters
SET payload_bytes = octet_length(payload),
    payload_sha256 = encode(sha256(payload), 'hex'),
    payload = substring(payload FROM 1 FOR 8192);
ALTER TABLE dead_letters
    ALTER COLUMN payload_bytes SET NOT NULL,
    ALTER COLUMN payload_sha256 SET NOT NULL,
    ADD CONSTRAINT dead_letters_payload_kept CHECK (octet_length(payload) <= 8192),
    ADD CONSTRAINT dead_letters_payload_bytes CHECK (payload_bytes >= octet_length(payload));
CREATE INDEX dead_letters_received ON dead_letters (received_at);
"""


# Migration 7 (TimescaleDB only): the zone aggregates' ``count_last`` breaks a tie of two
# rows with the same ts by message_id, with the plain path's expression (``last(count, ts)``
# kept whichever row it read first, so a rebuild could pick the other one; ``last(count,
# (ts, message_id))`` fails once the rows span two chunks: TimescaleDB aggregates chunk by
# chunk and combines the partial states, and a state holding an anonymous record cannot be
# read back).  A continuous
# aggregate's query cannot be altered, so each is rebuilt: its materialised buckets are
# carried over as they are (those older than the raw rows cannot be recomputed), and the
# next refresh recomputes the rest from the raw rows with the tie-break.  Until that refresh
# (the maintenance starts with one) the aggregate reads the raw rows only.  The site views
# over it are dropped and created again; its policies go with it (retention re-adds its own).
_V7_TIMESCALE_ZONE = """
ALTER MATERIALIZED VIEW zone_counts_{suffix} SET (timescaledb.materialized_only = true);
CREATE TEMP TABLE zone_counts_{suffix}_kept ON COMMIT DROP AS SELECT * FROM zone_counts_{suffix};
DROP VIEW site_counts_{suffix};
DROP MATERIALIZED VIEW zone_counts_{suffix};

CREATE MATERIALIZED VIEW zone_counts_{suffix}
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '{width}', ts) AS bucket,
       site_id,
       zone_id,
       count(*) AS samples,
       max(count_max) AS count_max,
       sum(count_mean::double precision) AS count_mean_sum,
       (array_agg(count ORDER BY ts DESC, message_id DESC))[1] AS count_last,
       max(ts) AS last_ts,
       max(longest_wait_s) AS wait_max,
       sum(median_wait_s::double precision) AS wait_median_sum,
       count(median_wait_s) AS wait_samples,
       max(density_per_m2) AS density_max,
       sum(density_per_m2::double precision) AS density_sum,
       count(density_per_m2) AS density_samples
FROM zone_counts
GROUP BY 1, 2, 3
WITH NO DATA;

SELECT add_continuous_aggregate_policy('zone_counts_{suffix}',
    start_offset => INTERVAL '2 days', end_offset => INTERVAL '1 minute',
    schedule_interval => INTERVAL '30 seconds');
CREATE INDEX zone_counts_{suffix}_site_bucket ON zone_counts_{suffix} (site_id, bucket);
CREATE INDEX zone_counts_{suffix}_bucket ON zone_counts_{suffix} (bucket);

DO $carry$
DECLARE
    materialized text;
BEGIN
    SELECT format('%I.%I', materialization_hypertable_schema, materialization_hypertable_name)
    INTO STRICT materialized
    FROM timescaledb_information.continuous_aggregates
    WHERE view_schema = current_schema() AND view_name = 'zone_counts_{suffix}';
    EXECUTE format('INSERT INTO %s SELECT * FROM zone_counts_{suffix}_kept', materialized);
END
$carry$;
"""


# Migration 9: dispatch recommendations and what the dispatcher did about them.  The engine
# keeps one row per bus-stop alert with the advice as it stands (it follows the counts); each
# press of "dispatched" or "declined" on the dispatcher page is one decision row with the
# advice shown at that moment.  The outcome is the alert's own ``resolved_at`` (the stop fell
# back under its clear threshold): time to clear = resolved_at - the decision's ``at``, read
# by a join rather than copied, so the two cannot disagree.  Ordinary tables on both paths.
_V9_COMMON = """
CREATE TABLE dispatch_advice (
    alert_id    bigint PRIMARY KEY REFERENCES alerts (id) ON DELETE CASCADE,
    advice      jsonb NOT NULL,
    updated_at  timestamptz NOT NULL
);

CREATE TABLE dispatch_decisions (
    id          bigserial PRIMARY KEY,
    alert_id    bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL,
    who         text NOT NULL CHECK (who <> ''),
    action      text NOT NULL CHECK (action IN ('dispatched', 'declined')),
    route       text,
    buses       integer CHECK (buses BETWEEN 1 AND 20),
    reason      text NOT NULL DEFAULT '',
    recommended jsonb,
    CHECK ((action = 'dispatched') = (route IS NOT NULL AND buses IS NOT NULL)),
    CHECK (action = 'dispatched' OR reason <> '')
);
CREATE INDEX dispatch_decisions_alert ON dispatch_decisions (alert_id, at, id);
"""


# Migration 10: why a zone's newest count was held back.  The edge refuses a density reading
# that no crowd could produce on the zone's ground, or a frame it cannot count in (night,
# backlight), and keeps publishing the zone's last usable count with the reason
# (``ZoneCount.count_flag``, a short English sentence) and the refused reading
# (``flagged_count``; NULL for an unusable frame); see ``crowdwatch.edge.plausibility``.
# Stored beside the metrics, not declared in ``crowdwatch.contracts.metrics``: a reason is not
# a quantity, and the rollups keep nothing of it.  They roll up ``count``, which is the held
# count the pages showed, so trends stay right; a per-bucket tally of flagged intervals would
# mean rebuilding every TimescaleDB continuous aggregate (as migrations 7 and 8 did) for a
# figure the raw rows already answer ("how often was this camera refused" is a query over
# ``zone_counts`` within their retention).  Nullable without a default or constraint, so the
# same statements run on both paths, a compressed hypertable included (see migration 5; one
# column per statement, as migration 8 added its own): NULL is "nothing flagged", as on every
# row before it, and the message contract bounds both values.
_V10_COMMON = """
ALTER TABLE zone_counts ADD COLUMN count_flag text;
ALTER TABLE zone_counts ADD COLUMN flagged_count integer;
ALTER TABLE zone_latest ADD COLUMN count_flag text;
ALTER TABLE zone_latest ADD COLUMN flagged_count integer;
"""


# Migration 11: the daily report scheduler's memory of the days it sent, so that a restart
# neither sends a day again nor skips one (``crowdwatch.storage.report_sends``).  A row is
# claimed (``sending``) before the poster goes out and marked ``sent`` after; a claim whose
# holder died is taken over once it is older than the scheduler's lease.
_V11_COMMON = """
CREATE TABLE report_sends (
    day         date PRIMARY KEY,
    state       text NOT NULL CHECK (state IN ('sending', 'sent')),
    holder      text NOT NULL CHECK (holder <> ''),
    claimed_at  timestamptz NOT NULL,
    sent_at     timestamptz,
    results     jsonb,
    CHECK ((state = 'sent') = (sent_at IS NOT NULL))
);
"""


def _v7_timescale() -> str:
    parts = []
    for suffix, width in ROLLUP_RESOLUTIONS:
        parts.append(_V7_TIMESCALE_ZONE.replace("{suffix}", suffix).replace("{width}", width))
        parts.append(_SITE_VIEW.replace("{suffix}", suffix))
    return "\n".join(parts)


# Migration 8: a zone's peak density over each interval (``ZoneCount.peak_density_per_m2``,
# declared in ``crowdwatch.contracts.metrics``), in the raw rows, ``zone_latest`` and the
# rollups (its largest value per bucket, ``peak_density_max``).  Nullable: rows and buckets
# before it keep NULL, "not measured".  Pasted from ``rollup_sql.new_metric_migration``;
# tests/test_metrics.py checks it is what the declaration derives.  TimescaleDB rebuilds
# each zone aggregate as migration 7 did (a continuous aggregate's query cannot be
# altered), carrying its materialised buckets over with NULL in the new column.
_V8_COMMON = """
ALTER TABLE zone_counts ADD COLUMN peak_density_per_m2 real;
ALTER TABLE zone_latest ADD COLUMN peak_density_per_m2 real;
"""

_V8_PLAIN = """
ALTER TABLE zone_counts_1m
    ADD COLUMN peak_density_max real;
ALTER TABLE site_counts_1m
    ADD COLUMN peak_density_max real;
ALTER TABLE zone_counts_15m
    ADD COLUMN peak_density_max real;
ALTER TABLE site_counts_15m
    ADD COLUMN peak_density_max real;
ALTER TABLE zone_counts_1h
    ADD COLUMN peak_density_max real;
ALTER TABLE site_counts_1h
    ADD COLUMN peak_density_max real;
"""

_V8_TIMESCALE_ZONE = """
ALTER MATERIALIZED VIEW zone_counts_{suffix} SET (timescaledb.materialized_only = true);
CREATE TEMP TABLE zone_counts_{suffix}_kept ON COMMIT DROP AS SELECT * FROM zone_counts_{suffix};
DROP VIEW site_counts_{suffix};
DROP MATERIALIZED VIEW zone_counts_{suffix};

CREATE MATERIALIZED VIEW zone_counts_{suffix}
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '{width}', ts) AS bucket,
       site_id,
       zone_id,
       count(*) AS samples,
       max(count_max) AS count_max,
       sum(count_mean::double precision) AS count_mean_sum,
       (array_agg(count ORDER BY ts DESC, message_id DESC))[1] AS count_last,
       max(ts) AS last_ts,
       max(longest_wait_s) AS wait_max,
       sum(median_wait_s::double precision) AS wait_median_sum,
       count(median_wait_s) AS wait_samples,
       max(density_per_m2) AS density_max,
       sum(density_per_m2::double precision) AS density_sum,
       count(density_per_m2) AS density_samples,
       max(peak_density_per_m2) AS peak_density_max
FROM zone_counts
GROUP BY 1, 2, 3
WITH NO DATA;

SELECT add_continuous_aggregate_policy('zone_counts_{suffix}',
    start_offset => INTERVAL '2 days', end_offset => INTERVAL '1 minute',
    schedule_interval => INTERVAL '30 seconds');
CREATE INDEX zone_counts_{suffix}_site_bucket ON zone_counts_{suffix} (site_id, bucket);
CREATE INDEX zone_counts_{suffix}_bucket ON zone_counts_{suffix} (bucket);

DO $carry$
DECLARE
    materialized text;
BEGIN
    SELECT format('%I.%I', materialization_hypertable_schema, materialization_hypertable_name)
    INTO STRICT materialized
    FROM timescaledb_information.continuous_aggregates
    WHERE view_schema = current_schema() AND view_name = 'zone_counts_{suffix}';
    EXECUTE format('INSERT INTO %s SELECT *, NULL FROM zone_counts_{suffix}_kept', materialized);
END
$carry$;

CREATE VIEW site_counts_{suffix} AS
SELECT bucket,
       site_id,
       count(*)::integer AS zones,
       sum(samples)::bigint AS samples,
       sum(count_max)::bigint AS count_max,
       sum(count_mean_sum / samples) AS count_mean,
       sum(count_last)::bigint AS count_last,
       max(wait_max) AS wait_max,
       sum(wait_median_sum) / nullif(sum(wait_samples), 0) AS wait_mean,
       max(density_max) AS density_max,
       sum(density_sum) / nullif(sum(density_samples), 0) AS density_mean,
       max(peak_density_max) AS peak_density_max
FROM zone_counts_{suffix}
GROUP BY bucket, site_id;
"""


def _v8_timescale() -> str:
    return "\n".join(
        _V8_TIMESCALE_ZONE.replace("{suffix}", suffix).replace("{width}", width)
        for suffix, width in ROLLUP_RESOLUTIONS
    )


# Migration 12: vehicles in a zone (road cameras), rolled up by ``max``
# (``vehicles_max``).  Nullable: rows before it (and edges that count no vehicles) have
# none.  Pasted from ``rollup_sql.new_metric_migration``; tests/test_metrics.py checks it
# is what the declaration derives.
_V12_COMMON = """
ALTER TABLE zone_counts ADD COLUMN vehicles integer;
ALTER TABLE zone_latest ADD COLUMN vehicles integer;
"""

_V12_PLAIN = """
ALTER TABLE zone_counts_1m
    ADD COLUMN vehicles_max integer;
ALTER TABLE site_counts_1m
    ADD COLUMN vehicles_max bigint;
ALTER TABLE zone_counts_15m
    ADD COLUMN vehicles_max integer;
ALTER TABLE site_counts_15m
    ADD COLUMN vehicles_max bigint;
ALTER TABLE zone_counts_1h
    ADD COLUMN vehicles_max integer;
ALTER TABLE site_counts_1h
    ADD COLUMN vehicles_max bigint;
"""

_V12_TIMESCALE_ZONE = """
ALTER MATERIALIZED VIEW zone_counts_{suffix} SET (timescaledb.materialized_only = true);
CREATE TEMP TABLE zone_counts_{suffix}_kept ON COMMIT DROP AS SELECT * FROM zone_counts_{suffix};
DROP VIEW site_counts_{suffix};
DROP MATERIALIZED VIEW zone_counts_{suffix};

CREATE MATERIALIZED VIEW zone_counts_{suffix}
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '{width}', ts) AS bucket,
       site_id,
       zone_id,
       count(*) AS samples,
       max(count_max) AS count_max,
       sum(count_mean::double precision) AS count_mean_sum,
       (array_agg(count ORDER BY ts DESC, message_id DESC))[1] AS count_last,
       max(ts) AS last_ts,
       max(longest_wait_s) AS wait_max,
       sum(median_wait_s::double precision) AS wait_median_sum,
       count(median_wait_s) AS wait_samples,
       max(density_per_m2) AS density_max,
       sum(density_per_m2::double precision) AS density_sum,
       count(density_per_m2) AS density_samples,
       max(peak_density_per_m2) AS peak_density_max,
       max(vehicles) AS vehicles_max
FROM zone_counts
GROUP BY 1, 2, 3
WITH NO DATA;

SELECT add_continuous_aggregate_policy('zone_counts_{suffix}',
    start_offset => INTERVAL '2 days', end_offset => INTERVAL '1 minute',
    schedule_interval => INTERVAL '30 seconds');
CREATE INDEX zone_counts_{suffix}_site_bucket ON zone_counts_{suffix} (site_id, bucket);
CREATE INDEX zone_counts_{suffix}_bucket ON zone_counts_{suffix} (bucket);

DO $carry$
DECLARE
    materialized text;
BEGIN
    SELECT format('%I.%I', materialization_hypertable_schema, materialization_hypertable_name)
    INTO STRICT materialized
    FROM timescaledb_information.continuous_aggregates
    WHERE view_schema = current_schema() AND view_name = 'zone_counts_{suffix}';
    EXECUTE format('INSERT INTO %s SELECT *, NULL FROM zone_counts_{suffix}_kept', materialized);
END
$carry$;

CREATE VIEW site_counts_{suffix} AS
SELECT bucket,
       site_id,
       count(*)::integer AS zones,
       sum(samples)::bigint AS samples,
       sum(count_max)::bigint AS count_max,
       sum(count_mean_sum / samples) AS count_mean,
       sum(count_last)::bigint AS count_last,
       max(wait_max) AS wait_max,
       sum(wait_median_sum) / nullif(sum(wait_samples), 0) AS wait_mean,
       max(density_max) AS density_max,
       sum(density_sum) / nullif(sum(density_samples), 0) AS density_mean,
       max(peak_density_max) AS peak_density_max,
       sum(vehicles_max)::bigint AS vehicles_max
FROM zone_counts_{suffix}
GROUP BY bucket, site_id;
"""


def _v12_timescale() -> str:
    return "\n".join(
        _V12_TIMESCALE_ZONE.replace("{suffix}", suffix).replace("{width}", width)
        for suffix, width in ROLLUP_RESOLUTIONS
    )


# Migration 13: the vehicles' space-mean speed, rolled up by ``mean`` (``speed_mean``).
# Nullable: rows before it (and edges that measure no speed) have none.  Pasted from
# ``rollup_sql.new_metric_migration``; tests/test_metrics.py checks it is what the
# declaration derives.
_V13_COMMON = """
ALTER TABLE zone_counts ADD COLUMN mean_speed_kmh real;
ALTER TABLE zone_latest ADD COLUMN mean_speed_kmh real;
"""

_V13_PLAIN = """
ALTER TABLE zone_counts_1m
    ADD COLUMN speed_sum double precision,
    ADD COLUMN speed_samples bigint;
ALTER TABLE site_counts_1m
    ADD COLUMN speed_mean double precision;
ALTER TABLE zone_counts_15m
    ADD COLUMN speed_sum double precision,
    ADD COLUMN speed_samples bigint;
ALTER TABLE site_counts_15m
    ADD COLUMN speed_mean double precision;
ALTER TABLE zone_counts_1h
    ADD COLUMN speed_sum double precision,
    ADD COLUMN speed_samples bigint;
ALTER TABLE site_counts_1h
    ADD COLUMN speed_mean double precision;
"""

_V13_TIMESCALE_ZONE = """
ALTER MATERIALIZED VIEW zone_counts_{suffix} SET (timescaledb.materialized_only = true);
CREATE TEMP TABLE zone_counts_{suffix}_kept ON COMMIT DROP AS SELECT * FROM zone_counts_{suffix};
DROP VIEW site_counts_{suffix};
DROP MATERIALIZED VIEW zone_counts_{suffix};

CREATE MATERIALIZED VIEW zone_counts_{suffix}
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '{width}', ts) AS bucket,
       site_id,
       zone_id,
       count(*) AS samples,
       max(count_max) AS count_max,
       sum(count_mean::double precision) AS count_mean_sum,
       (array_agg(count ORDER BY ts DESC, message_id DESC))[1] AS count_last,
       max(ts) AS last_ts,
       max(longest_wait_s) AS wait_max,
       sum(median_wait_s::double precision) AS wait_median_sum,
       count(median_wait_s) AS wait_samples,
       max(density_per_m2) AS density_max,
       sum(density_per_m2::double precision) AS density_sum,
       count(density_per_m2) AS density_samples,
       max(peak_density_per_m2) AS peak_density_max,
       max(vehicles) AS vehicles_max,
       sum(mean_speed_kmh::double precision) AS speed_sum,
       count(mean_speed_kmh) AS speed_samples
FROM zone_counts
GROUP BY 1, 2, 3
WITH NO DATA;

SELECT add_continuous_aggregate_policy('zone_counts_{suffix}',
    start_offset => INTERVAL '2 days', end_offset => INTERVAL '1 minute',
    schedule_interval => INTERVAL '30 seconds');
CREATE INDEX zone_counts_{suffix}_site_bucket ON zone_counts_{suffix} (site_id, bucket);
CREATE INDEX zone_counts_{suffix}_bucket ON zone_counts_{suffix} (bucket);

DO $carry$
DECLARE
    materialized text;
BEGIN
    SELECT format('%I.%I', materialization_hypertable_schema, materialization_hypertable_name)
    INTO STRICT materialized
    FROM timescaledb_information.continuous_aggregates
    WHERE view_schema = current_schema() AND view_name = 'zone_counts_{suffix}';
    EXECUTE format('INSERT INTO %s SELECT *, NULL, NULL FROM zone_counts_{suffix}_kept', materialized);
END
$carry$;

CREATE VIEW site_counts_{suffix} AS
SELECT bucket,
       site_id,
       count(*)::integer AS zones,
       sum(samples)::bigint AS samples,
       sum(count_max)::bigint AS count_max,
       sum(count_mean_sum / samples) AS count_mean,
       sum(count_last)::bigint AS count_last,
       max(wait_max) AS wait_max,
       sum(wait_median_sum) / nullif(sum(wait_samples), 0) AS wait_mean,
       max(density_max) AS density_max,
       sum(density_sum) / nullif(sum(density_samples), 0) AS density_mean,
       max(peak_density_max) AS peak_density_max,
       sum(vehicles_max)::bigint AS vehicles_max,
       sum(speed_sum) / nullif(sum(speed_samples), 0) AS speed_mean
FROM zone_counts_{suffix}
GROUP BY bucket, site_id;
"""


def _v13_timescale() -> str:
    return "\n".join(
        _V13_TIMESCALE_ZONE.replace("{suffix}", suffix).replace("{width}", width)
        for suffix, width in ROLLUP_RESOLUTIONS
    )


# Migration 14: vehicles per km per lane, rolled up by ``mean`` (``veh_density_mean``).
# Nullable: rows before it (and zones that are not road sections) have none.  Pasted from
# ``rollup_sql.new_metric_migration``; tests/test_metrics.py checks it is what the
# declaration derives.
_V14_COMMON = """
ALTER TABLE zone_counts ADD COLUMN vehicle_density real;
ALTER TABLE zone_latest ADD COLUMN vehicle_density real;
"""

_V14_PLAIN = """
ALTER TABLE zone_counts_1m
    ADD COLUMN veh_density_sum double precision,
    ADD COLUMN veh_density_samples bigint;
ALTER TABLE site_counts_1m
    ADD COLUMN veh_density_mean double precision;
ALTER TABLE zone_counts_15m
    ADD COLUMN veh_density_sum double precision,
    ADD COLUMN veh_density_samples bigint;
ALTER TABLE site_counts_15m
    ADD COLUMN veh_density_mean double precision;
ALTER TABLE zone_counts_1h
    ADD COLUMN veh_density_sum double precision,
    ADD COLUMN veh_density_samples bigint;
ALTER TABLE site_counts_1h
    ADD COLUMN veh_density_mean double precision;
"""

_V14_TIMESCALE_ZONE = """
ALTER MATERIALIZED VIEW zone_counts_{suffix} SET (timescaledb.materialized_only = true);
CREATE TEMP TABLE zone_counts_{suffix}_kept ON COMMIT DROP AS SELECT * FROM zone_counts_{suffix};
DROP VIEW site_counts_{suffix};
DROP MATERIALIZED VIEW zone_counts_{suffix};

CREATE MATERIALIZED VIEW zone_counts_{suffix}
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '{width}', ts) AS bucket,
       site_id,
       zone_id,
       count(*) AS samples,
       max(count_max) AS count_max,
       sum(count_mean::double precision) AS count_mean_sum,
       (array_agg(count ORDER BY ts DESC, message_id DESC))[1] AS count_last,
       max(ts) AS last_ts,
       max(longest_wait_s) AS wait_max,
       sum(median_wait_s::double precision) AS wait_median_sum,
       count(median_wait_s) AS wait_samples,
       max(density_per_m2) AS density_max,
       sum(density_per_m2::double precision) AS density_sum,
       count(density_per_m2) AS density_samples,
       max(peak_density_per_m2) AS peak_density_max,
       max(vehicles) AS vehicles_max,
       sum(mean_speed_kmh::double precision) AS speed_sum,
       count(mean_speed_kmh) AS speed_samples,
       sum(vehicle_density::double precision) AS veh_density_sum,
       count(vehicle_density) AS veh_density_samples
FROM zone_counts
GROUP BY 1, 2, 3
WITH NO DATA;

SELECT add_continuous_aggregate_policy('zone_counts_{suffix}',
    start_offset => INTERVAL '2 days', end_offset => INTERVAL '1 minute',
    schedule_interval => INTERVAL '30 seconds');
CREATE INDEX zone_counts_{suffix}_site_bucket ON zone_counts_{suffix} (site_id, bucket);
CREATE INDEX zone_counts_{suffix}_bucket ON zone_counts_{suffix} (bucket);

DO $carry$
DECLARE
    materialized text;
BEGIN
    SELECT format('%I.%I', materialization_hypertable_schema, materialization_hypertable_name)
    INTO STRICT materialized
    FROM timescaledb_information.continuous_aggregates
    WHERE view_schema = current_schema() AND view_name = 'zone_counts_{suffix}';
    EXECUTE format('INSERT INTO %s SELECT *, NULL, NULL FROM zone_counts_{suffix}_kept', materialized);
END
$carry$;

CREATE VIEW site_counts_{suffix} AS
SELECT bucket,
       site_id,
       count(*)::integer AS zones,
       sum(samples)::bigint AS samples,
       sum(count_max)::bigint AS count_max,
       sum(count_mean_sum / samples) AS count_mean,
       sum(count_last)::bigint AS count_last,
       max(wait_max) AS wait_max,
       sum(wait_median_sum) / nullif(sum(wait_samples), 0) AS wait_mean,
       max(density_max) AS density_max,
       sum(density_sum) / nullif(sum(density_samples), 0) AS density_mean,
       max(peak_density_max) AS peak_density_max,
       sum(vehicles_max)::bigint AS vehicles_max,
       sum(speed_sum) / nullif(sum(speed_samples), 0) AS speed_mean,
       sum(veh_density_sum) / nullif(sum(veh_density_samples), 0) AS veh_density_mean
FROM zone_counts_{suffix}
GROUP BY bucket, site_id;
"""


def _v14_timescale() -> str:
    return "\n".join(
        _V14_TIMESCALE_ZONE.replace("{suffix}", suffix).replace("{width}", width)
        for suffix, width in ROLLUP_RESOLUTIONS
    )


# Migration 15: the queue length at a stop line's approach, rolled up by ``max`` (``queue_max``).
# Nullable: rows before it (and zones that are not road sections) have none.  Pasted from
# ``rollup_sql.new_metric_migration``; tests/test_metrics.py checks it is what the
# declaration derives.
_V15_COMMON = """
ALTER TABLE zone_counts ADD COLUMN queue_length_m real;
ALTER TABLE zone_latest ADD COLUMN queue_length_m real;
"""

_V15_PLAIN = """
ALTER TABLE zone_counts_1m
    ADD COLUMN queue_max real;
ALTER TABLE site_counts_1m
    ADD COLUMN queue_max real;
ALTER TABLE zone_counts_15m
    ADD COLUMN queue_max real;
ALTER TABLE site_counts_15m
    ADD COLUMN queue_max real;
ALTER TABLE zone_counts_1h
    ADD COLUMN queue_max real;
ALTER TABLE site_counts_1h
    ADD COLUMN queue_max real;
"""

_V15_TIMESCALE_ZONE = """
ALTER MATERIALIZED VIEW zone_counts_{suffix} SET (timescaledb.materialized_only = true);
CREATE TEMP TABLE zone_counts_{suffix}_kept ON COMMIT DROP AS SELECT * FROM zone_counts_{suffix};
DROP VIEW site_counts_{suffix};
DROP MATERIALIZED VIEW zone_counts_{suffix};

CREATE MATERIALIZED VIEW zone_counts_{suffix}
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '{width}', ts) AS bucket,
       site_id,
       zone_id,
       count(*) AS samples,
       max(count_max) AS count_max,
       sum(count_mean::double precision) AS count_mean_sum,
       (array_agg(count ORDER BY ts DESC, message_id DESC))[1] AS count_last,
       max(ts) AS last_ts,
       max(longest_wait_s) AS wait_max,
       sum(median_wait_s::double precision) AS wait_median_sum,
       count(median_wait_s) AS wait_samples,
       max(density_per_m2) AS density_max,
       sum(density_per_m2::double precision) AS density_sum,
       count(density_per_m2) AS density_samples,
       max(peak_density_per_m2) AS peak_density_max,
       max(vehicles) AS vehicles_max,
       sum(mean_speed_kmh::double precision) AS speed_sum,
       count(mean_speed_kmh) AS speed_samples,
       sum(vehicle_density::double precision) AS veh_density_sum,
       count(vehicle_density) AS veh_density_samples,
       max(queue_length_m) AS queue_max
FROM zone_counts
GROUP BY 1, 2, 3
WITH NO DATA;

SELECT add_continuous_aggregate_policy('zone_counts_{suffix}',
    start_offset => INTERVAL '2 days', end_offset => INTERVAL '1 minute',
    schedule_interval => INTERVAL '30 seconds');
CREATE INDEX zone_counts_{suffix}_site_bucket ON zone_counts_{suffix} (site_id, bucket);
CREATE INDEX zone_counts_{suffix}_bucket ON zone_counts_{suffix} (bucket);

DO $carry$
DECLARE
    materialized text;
BEGIN
    SELECT format('%I.%I', materialization_hypertable_schema, materialization_hypertable_name)
    INTO STRICT materialized
    FROM timescaledb_information.continuous_aggregates
    WHERE view_schema = current_schema() AND view_name = 'zone_counts_{suffix}';
    EXECUTE format('INSERT INTO %s SELECT *, NULL FROM zone_counts_{suffix}_kept', materialized);
END
$carry$;

CREATE VIEW site_counts_{suffix} AS
SELECT bucket,
       site_id,
       count(*)::integer AS zones,
       sum(samples)::bigint AS samples,
       sum(count_max)::bigint AS count_max,
       sum(count_mean_sum / samples) AS count_mean,
       sum(count_last)::bigint AS count_last,
       max(wait_max) AS wait_max,
       sum(wait_median_sum) / nullif(sum(wait_samples), 0) AS wait_mean,
       max(density_max) AS density_max,
       sum(density_sum) / nullif(sum(density_samples), 0) AS density_mean,
       max(peak_density_max) AS peak_density_max,
       sum(vehicles_max)::bigint AS vehicles_max,
       sum(speed_sum) / nullif(sum(speed_samples), 0) AS speed_mean,
       sum(veh_density_sum) / nullif(sum(veh_density_samples), 0) AS veh_density_mean,
       max(queue_max) AS queue_max
FROM zone_counts_{suffix}
GROUP BY bucket, site_id;
"""


def _v15_timescale() -> str:
    return "\n".join(
        _V15_TIMESCALE_ZONE.replace("{suffix}", suffix).replace("{width}", width)
        for suffix, width in ROLLUP_RESOLUTIONS
    )


# Migration 16: which transaction last changed each "latest" row, so the alert engine's tick
# reads only what changed since its last one (``crowdwatch.storage.latest_changes``).  A
# trigger stamps it, whoever writes (ingest, a restore, a fix by hand): a column each writer
# had to set would be missed by the one that forgets.  A transaction id, not a time: a row
# committed late keeps the id its transaction had, and the reader goes back to the oldest
# transaction still running at its last read, so nothing committed behind it is missed with
# no overlap to guess.  No index: one on a column that changes with every update would cost
# ingest its HOT updates, and the server scans 20,000 latest rows in milliseconds.
_V16_COMMON = """
CREATE FUNCTION stamp_latest_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.changed_xid := pg_current_xact_id();
    RETURN NEW;
END
$$;
ALTER TABLE zone_latest
    ADD COLUMN changed_xid xid8 NOT NULL DEFAULT pg_current_xact_id();
ALTER TABLE camera_latest_status
    ADD COLUMN changed_xid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE TRIGGER zone_latest_changed BEFORE INSERT OR UPDATE ON zone_latest
    FOR EACH ROW EXECUTE FUNCTION stamp_latest_change();
CREATE TRIGGER camera_latest_status_changed BEFORE INSERT OR UPDATE ON camera_latest_status
    FOR EACH ROW EXECUTE FUNCTION stamp_latest_change();
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
        Migration(
            version=2,
            name="waiting time and density per zone",
            common_sql=_V2_COMMON,
            timescale_sql="",
            plain_sql="",
        ),
        Migration(
            version=3,
            name="rollups at 1 min, 15 min, 1 h per zone, line and site",
            common_sql="",
            timescale_sql=_v3_timescale(),
            plain_sql=_v3_plain(),
        ),
        Migration(
            version=4,
            name="alert acknowledgement, escalation, events, pending timers, notifications, "
            "silences, engine lease",
            common_sql=_V4_COMMON,
            timescale_sql="",
            plain_sql="",
        ),
        Migration(
            version=5,
            name="counting method (detect or dense) per zone count",
            common_sql=_V5_COMMON,
            timescale_sql=_V5_TIMESCALE,
            plain_sql=_V5_PLAIN,
        ),
        Migration(
            version=6,
            name="dead letters keep a bounded payload prefix, its size and SHA-256",
            common_sql=_V6_COMMON,
            timescale_sql="",
            plain_sql="",
        ),
        Migration(
            version=7,
            name="count_last breaks ties by message id on TimescaleDB too",
            common_sql="",
            timescale_sql=_v7_timescale(),
            plain_sql="",
        ),
        Migration(
            version=8,
            name="peak density per zone",
            common_sql=_V8_COMMON,
            timescale_sql=_v8_timescale(),
            plain_sql=_V8_PLAIN,
        ),
        Migration(
            version=9,
            name="dispatch advice per bus-stop alert and the dispatcher's decisions",
            common_sql=_V9_COMMON,
            timescale_sql="",
            plain_sql="",
        ),
        Migration(
            version=10,
            name="why a zone's count was held back: the edge's flag and the refused reading",
            common_sql=_V10_COMMON,
            timescale_sql="",
            plain_sql="",
        ),
        Migration(
            version=11,
            name="the days the daily report was sent",
            common_sql=_V11_COMMON,
            timescale_sql="",
            plain_sql="",
        ),
        Migration(
            version=12,
            name="vehicles per zone",
            common_sql=_V12_COMMON,
            timescale_sql=_v12_timescale(),
            plain_sql=_V12_PLAIN,
        ),
        Migration(
            version=13,
            name="mean vehicle speed per zone",
            common_sql=_V13_COMMON,
            timescale_sql=_v13_timescale(),
            plain_sql=_V13_PLAIN,
        ),
        Migration(
            version=14,
            name="vehicles per km per lane per zone",
            common_sql=_V14_COMMON,
            timescale_sql=_v14_timescale(),
            plain_sql=_V14_PLAIN,
        ),
        Migration(
            version=15,
            name="queue length at a stop line's approach",
            common_sql=_V15_COMMON,
            timescale_sql=_v15_timescale(),
            plain_sql=_V15_PLAIN,
        ),
        Migration(
            version=16,
            name="latest rows stamped with the transaction that changed them",
            common_sql=_V16_COMMON,
            timescale_sql="",
            plain_sql="",
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
