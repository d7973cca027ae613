"""The SQL that follows from the zone metrics' declaration (:mod:`crowdwatch.contracts.metrics`).

Column lists and aggregate expressions for the raw rows, the rollups of both database paths
(plain tables refreshed by :mod:`crowdwatch.storage.rollups`, TimescaleDB continuous
aggregates) and the site rollups, and the readers' select lists.  Built once at import from
constants (metric and column names), never from values.

Migrations do not call this module at run time: a migration is literal SQL that never
changes once released.  A new metric's migration pastes what :func:`new_metric_migration`
prints, and ``tests/test_metrics.py`` checks that the newest migration's continuous
aggregates and the migrated plain tables match what is derived here.

How each rollup is kept (composable parts, so a coarser bucket is an exact aggregate of
finer ones):

===========  ====================================  ==================================
rollup       raw -> 1 min                          finer -> coarser
===========  ====================================  ==================================
SUM          sum(x)                                sum(part)
MAX          max(x)                                max(part)
MEAN         sum(x), count(x) (or the samples)     sum(part), sum(count)
LAST         x of the newest row, its ts           part of the newest last_ts
===========  ====================================  ==================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import assert_never

from crowdwatch.contracts.metrics import ZONE_METRICS, Aggregate, Rollup, ZoneMetric


@dataclass(frozen=True, slots=True)
class Column:
    """A column of a rollup relation and its SQL type."""

    name: str
    sql_type: str
    not_null: bool

    def ddl(self, width: int) -> str:
        null = " NOT NULL" if self.not_null else ""
        return f"    {self.name:<{width}} {self.sql_type}{null},"


@dataclass(frozen=True, slots=True)
class _Part:
    """One stored rollup column with its expression over raw rows and over finer buckets."""

    column: Column
    from_raw: str
    """over raw rows; ``{p}`` is the raw table's alias prefix (``c.`` or empty)"""
    from_finer: str
    """over finer buckets of the same relation (alias ``f``)"""


def _sum_type(metric: ZoneMetric) -> str:
    return "bigint" if metric.sql_type == "integer" else "double precision"


def _parts(metric: ZoneMetric, aggregate: Aggregate, with_last_ts: bool) -> list[_Part]:
    x, c = metric.column, aggregate.column
    match aggregate.rollup:
        case Rollup.SUM:
            cast = "::bigint" if metric.sql_type == "integer" else ""
            raw = f"sum({{p}}{x})::bigint" if cast else f"sum({{p}}{x}::double precision)"
            return [_Part(Column(c, _sum_type(metric), metric.required), raw, f"sum(f.{c}){cast}")]
        case Rollup.MAX:
            return [
                _Part(Column(c, metric.sql_type, metric.required), f"max({{p}}{x})", f"max(f.{c})")
            ]
        case Rollup.MEAN:
            parts = [
                _Part(
                    Column(c, "double precision", metric.required),
                    f"sum({{p}}{x}::double precision)",
                    f"sum(f.{c})",
                )
            ]
            if aggregate.samples is not None:
                s = aggregate.samples
                parts.append(
                    _Part(Column(s, "bigint", True), f"count({{p}}{x})", f"sum(f.{s})::bigint")
                )
            return parts
        case Rollup.LAST:
            parts = [
                _Part(
                    Column(c, metric.sql_type, metric.required),
                    f"(array_agg({{p}}{x} ORDER BY {{p}}ts DESC, {{p}}message_id DESC))[1]",
                    f"(array_agg(f.{c} ORDER BY f.last_ts DESC))[1]",
                )
            ]
            if with_last_ts:
                parts.append(
                    _Part(Column("last_ts", "timestamptz", True), "max({p}ts)", "max(f.last_ts)")
                )
            return parts
        case _:
            assert_never(aggregate.rollup)


def _zone_parts(metrics: tuple[ZoneMetric, ...]) -> list[_Part]:
    parts = [_Part(Column("samples", "bigint", True), "count(*)", "sum(f.samples)::bigint")]
    seen_last = False
    for metric in metrics:
        for aggregate in metric.aggregates:
            first_last = aggregate.rollup is Rollup.LAST and not seen_last
            seen_last = seen_last or first_last
            parts += _parts(metric, aggregate, first_last)
    return parts


_KEY = (
    Column("bucket", "timestamptz", True),
    Column("site_id", "text", True),
    Column("zone_id", "text", True),
)


def zone_rollup_columns(metrics: tuple[ZoneMetric, ...] = ZONE_METRICS) -> tuple[Column, ...]:
    """The columns of ``zone_counts_{1m,15m,1h}`` (tables and continuous aggregates)."""
    return _KEY + tuple(p.column for p in _zone_parts(metrics))


def zone_rollup_ddl(metrics: tuple[ZoneMetric, ...] = ZONE_METRICS) -> str:
    """The column list of a plain ``zone_counts_*`` table, as migration 3 wrote it."""
    lines = [c.ddl(16) for c in zone_rollup_columns(metrics)]
    return "\n" + "\n".join(lines) + "\n    PRIMARY KEY (site_id, zone_id, bucket)\n"


def zone_rollup_names(metrics: tuple[ZoneMetric, ...] = ZONE_METRICS) -> str:
    """``bucket, site_id, zone_id, samples, ...``: the zone rollup's columns, comma-separated."""
    return ", ".join(c.name for c in zone_rollup_columns(metrics))


def zone_from_raw_exprs(prefix: str, metrics: tuple[ZoneMetric, ...] = ZONE_METRICS) -> list[str]:
    """The rollup columns after the key, computed from raw rows aliased ``prefix``."""
    return [p.from_raw.format(p=prefix) for p in _zone_parts(metrics)]


def zone_from_finer_exprs(metrics: tuple[ZoneMetric, ...] = ZONE_METRICS) -> list[str]:
    """The rollup columns after the key, computed from finer buckets aliased ``f``."""
    return [p.from_finer for p in _zone_parts(metrics)]


def timescale_zone_cagg(metrics: tuple[ZoneMetric, ...] = ZONE_METRICS) -> str:
    """The continuous aggregate ``zone_counts_{suffix}`` (placeholders ``{suffix}`` and
    ``{width}``), as the newest migration that (re)creates it must write it."""
    names = [c.name for c in zone_rollup_columns(metrics)][3:]
    select = "".join(
        f"       {expr} AS {name},\n"
        for expr, name in zip(zone_from_raw_exprs("", metrics), names, strict=True)
    ).rstrip(",\n")
    return (
        "CREATE MATERIALIZED VIEW zone_counts_{suffix}\n"
        "WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS\n"
        "SELECT time_bucket(INTERVAL '{width}', ts) AS bucket,\n"
        "       site_id,\n"
        "       zone_id,\n"
        f"{select}\n"
        "FROM zone_counts\n"
        "GROUP BY 1, 2, 3\n"
        "WITH NO DATA;\n"
    )


# --- Sites -----------------------------------------------------------------------------


def _site_part(metric: ZoneMetric, aggregate: Aggregate) -> tuple[Column, str]:
    """A site rollup column and its expression over the zone rollup rows of one bucket."""
    c, n = aggregate.column, aggregate.name
    summed = "bigint" if metric.sql_type == "integer" else "double precision"
    cast = "::bigint" if metric.sql_type == "integer" else ""
    match aggregate.rollup:
        case Rollup.MEAN:
            column = Column(n, "double precision", metric.required)
            if metric.additive:
                # The sum of the zones' means: the mean of the site total.
                per_zone = (
                    "samples" if aggregate.samples is None else f"nullif({aggregate.samples}, 0)"
                )
                return column, f"sum({c} / {per_zone})"
            samples = "samples" if aggregate.samples is None else aggregate.samples
            return column, f"sum({c}) / nullif(sum({samples}), 0)"
        case Rollup.SUM:
            return Column(n, summed, metric.required), f"sum({c}){cast}"
        case Rollup.MAX | Rollup.LAST if metric.additive:
            return Column(n, summed, metric.required), f"sum({c}){cast}"
        case Rollup.MAX:
            return Column(n, metric.sql_type, metric.required), f"max({c})"
        case Rollup.LAST:
            return (
                Column(n, metric.sql_type, metric.required),
                f"(array_agg({c} ORDER BY last_ts DESC))[1]",
            )
        case _:
            assert_never(aggregate.rollup)


def _site_parts(metrics: tuple[ZoneMetric, ...]) -> list[tuple[Column, str]]:
    parts = [
        (Column("zones", "integer", True), "count(*)::integer"),
        (Column("samples", "bigint", True), "sum(samples)::bigint"),
    ]
    return parts + [_site_part(m, a) for m in metrics for a in m.aggregates]


def site_rollup_columns(metrics: tuple[ZoneMetric, ...] = ZONE_METRICS) -> tuple[Column, ...]:
    """The columns of ``site_counts_{1m,15m,1h}`` (tables on plain PostgreSQL, views on
    TimescaleDB)."""
    key = (Column("bucket", "timestamptz", True), Column("site_id", "text", True))
    return key + tuple(c for c, _ in _site_parts(metrics))


def site_rollup_ddl(metrics: tuple[ZoneMetric, ...] = ZONE_METRICS) -> str:
    """``CREATE TABLE site_counts_{suffix}`` and its index, as migration 3 wrote them."""
    lines = "\n".join(c.ddl(13) for c in site_rollup_columns(metrics))
    return (
        "\nCREATE TABLE site_counts_{suffix} (\n"
        f"{lines}\n"
        "    PRIMARY KEY (site_id, bucket)\n"
        ");\n"
        "CREATE INDEX site_counts_{suffix}_bucket ON site_counts_{suffix} (bucket);\n"
    )


def site_rollup_select(metrics: tuple[ZoneMetric, ...] = ZONE_METRICS) -> str:
    """The site rollup of ``zone_counts_{suffix}`` rows; append a WHERE, then
    ``GROUP BY bucket, site_id``."""
    lines = ["bucket", "site_id"] + [f"{e} AS {c.name}" for c, e in _site_parts(metrics)]
    return "\nSELECT " + ",\n       ".join(lines) + "\nFROM zone_counts_{suffix}\n"


def site_rollup_names(metrics: tuple[ZoneMetric, ...] = ZONE_METRICS) -> str:
    """The site rollup's columns, comma-separated."""
    return ", ".join(c.name for c in site_rollup_columns(metrics))


# --- Readers ---------------------------------------------------------------------------


def series_names(metrics: tuple[ZoneMetric, ...] = ZONE_METRICS) -> tuple[str, ...]:
    """The columns of every series statement: ``bucket, samples`` and each aggregate's name."""
    return ("bucket", "samples", *(a.name for m in metrics for a in m.aggregates))


def zone_series_select(metrics: tuple[ZoneMetric, ...] = ZONE_METRICS) -> str:
    """The select list of a zone series from a ``zone_counts_*`` rollup."""
    exprs = ["bucket", "samples"]
    for metric in metrics:
        for a in metric.aggregates:
            if a.rollup is Rollup.MEAN:
                samples = "samples" if a.samples is None else f"nullif({a.samples}, 0)"
                exprs.append(f"{a.column} / {samples} AS {a.name}")
            else:
                exprs.append(a.name if a.column == a.name else f"{a.column} AS {a.name}")
    return ", ".join(exprs)


def raw_series_select(metrics: tuple[ZoneMetric, ...] = ZONE_METRICS) -> str:
    """The select list of a zone series from raw ``zone_counts`` rows (one point per row)."""
    exprs = ["ts AS bucket", "1 AS samples"]
    exprs += [f"{m.column} AS {a.name}" for m in metrics for a in m.aggregates]
    return ", ".join(exprs)


def site_series_select(metrics: tuple[ZoneMetric, ...] = ZONE_METRICS) -> str:
    """The select list of a site series from a ``site_counts_*`` rollup."""
    return ", ".join(series_names(metrics))


# --- Writing a migration ---------------------------------------------------------------


def new_metric_migration(metric: ZoneMetric) -> tuple[str, str, str]:
    """(common, TimescaleDB, plain) SQL that adds ``metric`` to a database migrated with
    every metric before it: paste it into a new migration of ``db_schema`` as literals.

    Plain PostgreSQL: a column on the raw table, ``zone_latest`` and every rollup table (old
    buckets keep NULL: their raw rows had no value).  TimescaleDB: a continuous aggregate's
    query cannot be altered, so each is rebuilt as migration 7 did, its materialised
    buckets carried over (the new columns NULL), and the site views over it recreated.
    """
    if metric.required:
        raise ValueError(
            f"metric {metric.column!r} is required, but the rows stored before it have no value:"
            " declare it with required=False"
        )
    before = ZONE_METRICS[: ZONE_METRICS.index(metric)]
    with_it = (*before, metric)
    common = (
        f"ALTER TABLE zone_counts ADD COLUMN {metric.column} {metric.sql_type};\n"
        f"ALTER TABLE zone_latest ADD COLUMN {metric.column} {metric.sql_type};\n"
    )
    zone_new = [c for c in zone_rollup_columns(with_it) if c not in zone_rollup_columns(before)]
    site_new = [c for c in site_rollup_columns(with_it) if c not in site_rollup_columns(before)]
    plain = []
    for suffix in ("1m", "15m", "1h"):
        for table, new in (
            (f"zone_counts_{suffix}", zone_new),
            (f"site_counts_{suffix}", site_new),
        ):
            adds = ",\n".join(f"    ADD COLUMN {c.name} {c.sql_type}" for c in new)
            plain.append(f"ALTER TABLE {table}\n{adds};\n")
    # The new columns come last, so the kept rows go in by position with a NULL for each.
    nulls = "".join(", NULL" for _ in zone_new)
    timescale = (
        "ALTER MATERIALIZED VIEW zone_counts_{suffix} SET (timescaledb.materialized_only = true);\n"
        "CREATE TEMP TABLE zone_counts_{suffix}_kept ON COMMIT DROP AS"
        " SELECT * FROM zone_counts_{suffix};\n"
        "DROP VIEW site_counts_{suffix};\n"
        "DROP MATERIALIZED VIEW zone_counts_{suffix};\n\n"
        + timescale_zone_cagg(with_it)
        + "\nSELECT add_continuous_aggregate_policy('zone_counts_{suffix}',\n"
        "    start_offset => INTERVAL '2 days', end_offset => INTERVAL '1 minute',\n"
        "    schedule_interval => INTERVAL '30 seconds');\n"
        "CREATE INDEX zone_counts_{suffix}_site_bucket ON zone_counts_{suffix} (site_id, bucket);\n"
        "CREATE INDEX zone_counts_{suffix}_bucket ON zone_counts_{suffix} (bucket);\n\n"
        "DO $carry$\n"
        "DECLARE\n"
        "    materialized text;\n"
        "BEGIN\n"
        "    SELECT format('%I.%I', materialization_hypertable_schema,"
        " materialization_hypertable_name)\n"
        "    INTO STRICT materialized\n"
        "    FROM timescaledb_information.continuous_aggregates\n"
        "    WHERE view_schema = current_schema() AND view_name = 'zone_counts_{suffix}';\n"
        "    EXECUTE format('INSERT INTO %s SELECT *"
        + nulls
        + " FROM zone_counts_{suffix}_kept', materialized);\n"
        "END\n"
        "$carry$;\n\n"
        "CREATE VIEW site_counts_{suffix} AS"
        + site_rollup_select(with_it)
        + "GROUP BY bucket, site_id;\n"
    )
    return common, timescale, "".join(plain)


SITE_ROLLUP_SELECT = site_rollup_select()
"""The site rollup of ``zone_counts_{suffix}`` rows with every declared metric; append a
WHERE, then ``GROUP BY bucket, site_id``.  Semantics: see ``db_schema``'s site rollups."""

SITE_ROLLUP_COLUMNS = site_rollup_names()
"""The columns :data:`SITE_ROLLUP_SELECT` yields, comma-separated."""
