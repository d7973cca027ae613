"""Every zone metric, declared once: its name, unit, type and how it rolls up.

A zone metric is a per-zone value of a count message (``ZoneCount``), stored in the raw
``zone_counts`` rows and in ``zone_latest`` under the same name.  Everything that follows
from the declaration is derived from :data:`ZONE_METRICS`: the ingest's COPY columns and
``zone_latest`` upsert, the rollup statements of both database paths
(:mod:`crowdwatch.contracts.rollup_sql`), the read queries and their row builders
(:mod:`crowdwatch.storage.queries`) and the series fields of the web API.  Migrations stay
literal SQL; ``tests/test_metrics.py`` checks that the newest migration creates exactly what
the declaration derives (see CONTRIBUTING.md, "How to add a metric").

Order matters: the rollup relations have their columns in declaration order (migration 3
created ``count_max, count_mean_sum, count_last, ...``), so a new metric goes at the end.

Pure data: every component, the edge included, may import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal


class Rollup(StrEnum):
    """How a metric's raw values become one value per bucket (and per coarser bucket)."""

    SUM = "sum"
    """the total (e.g. crossings); stored as is, added up level by level"""
    MAX = "max"
    """the largest value in the bucket"""
    MEAN = "mean"
    """the mean of the values present; stored as a sum and a count so coarser levels are exact"""
    LAST = "last"
    """the value of the bucket's newest row (ties broken by message id)"""


SqlType = Literal["integer", "real"]


@dataclass(frozen=True, slots=True)
class Aggregate:
    """One rolled-up value of a metric: a column of every series point.

    Args:
        rollup: how it is computed.
        name: its name in the series (rollup views, :class:`~crowdwatch.storage.queries.
            SeriesPoint`, Grafana), e.g. ``density_max``.
        stored: the rollup column holding its composable part (a MEAN's sum), default ``name``.
        samples: a MEAN's column counting the values present; ``None`` for a metric every row
            has, whose mean divides by the bucket's ``samples``.
        api: its field in the web API's series points; ``None`` keeps it out of the API.
    """

    rollup: Rollup
    name: str
    stored: str = ""
    samples: str | None = None
    api: str | None = None

    @property
    def column(self) -> str:
        return self.stored or self.name


@dataclass(frozen=True, slots=True)
class ZoneMetric:
    """A per-zone value of a count message.

    Args:
        column: the ``ZoneCount`` field, and the column of ``zone_counts`` and ``zone_latest``.
        unit: what it is measured in (for people: ``people``).
        sql_type: the raw column's type.
        required: every row has it (NOT NULL); optional metrics are NULL where the edge did
            not send them (not tracking, not calibrated) and their means skip the NULLs.
        additive: a site's value is the sum of its zones' (people), not their max or mean
            (waiting times, densities).
        aggregates: what the rollups keep of it, in column order.
        since: the migration that added its raw column (the rollups of migration 3 hold the
            metrics of migrations 1 and 2).
    """

    column: str
    unit: str
    sql_type: SqlType
    required: bool
    additive: bool
    aggregates: tuple[Aggregate, ...]
    since: int
    description: str


ZONE_METRICS: tuple[ZoneMetric, ...] = (
    ZoneMetric(
        column="count_max",
        unit="people",
        sql_type="integer",
        required=True,
        additive=True,
        aggregates=(Aggregate(Rollup.MAX, "count_max", api="max"),),
        since=1,
        description="most people seen during the interval",
    ),
    ZoneMetric(
        column="count_mean",
        unit="people",
        sql_type="real",
        required=True,
        additive=True,
        aggregates=(Aggregate(Rollup.MEAN, "count_mean", stored="count_mean_sum", api="mean"),),
        since=1,
        description="mean over the interval's frames",
    ),
    ZoneMetric(
        column="count",
        unit="people",
        sql_type="integer",
        required=True,
        additive=True,
        aggregates=(Aggregate(Rollup.LAST, "count_last", api="count"),),
        since=1,
        description="people in the zone at the interval's end",
    ),
    ZoneMetric(
        column="longest_wait_s",
        unit="s",
        sql_type="real",
        required=False,
        additive=False,
        aggregates=(Aggregate(Rollup.MAX, "wait_max"),),
        since=2,
        description="longest time a person now in the zone has been there",
    ),
    ZoneMetric(
        column="median_wait_s",
        unit="s",
        sql_type="real",
        required=False,
        additive=False,
        aggregates=(
            Aggregate(Rollup.MEAN, "wait_mean", stored="wait_median_sum", samples="wait_samples"),
        ),
        since=2,
        description="median time the people now in the zone have been there",
    ),
    ZoneMetric(
        column="density_per_m2",
        unit="people/m²",
        sql_type="real",
        required=False,
        additive=False,
        aggregates=(
            Aggregate(Rollup.MAX, "density_max"),
            Aggregate(Rollup.MEAN, "density_mean", stored="density_sum", samples="density_samples"),
        ),
        since=2,
        description="people per square metre at the interval's end (needs a calibration)",
    ),
    ZoneMetric(
        column="peak_density_per_m2",
        unit="people/m²",
        sql_type="real",
        required=False,
        additive=False,
        aggregates=(Aggregate(Rollup.MAX, "peak_density_max", api="peak_density"),),
        since=8,
        description="most people per square metre during the interval (its peak count over "
        "the zone's area; needs a calibration)",
    ),
    ZoneMetric(
        column="vehicles",
        unit="vehicles",
        sql_type="integer",
        required=False,
        additive=True,
        aggregates=(Aggregate(Rollup.MAX, "vehicles_max", api="vehicles"),),
        since=12,
        description="motor vehicles (car, bus, truck, motorcycle) in the zone at the "
        "interval's end (cameras that count vehicles only)",
    ),
    ZoneMetric(
        column="mean_speed_kmh",
        unit="km/h",
        sql_type="real",
        required=False,
        additive=False,
        aggregates=(
            Aggregate(
                Rollup.MEAN,
                "speed_mean",
                stored="speed_sum",
                samples="speed_samples",
                api="speed_kmh",
            ),
        ),
        since=13,
        description="space-mean speed of the vehicles in the zone over the interval (needs "
        "a calibration and vehicles with a measured speed)",
    ),
    ZoneMetric(
        column="vehicle_density",
        unit="vehicles/km/lane",
        sql_type="real",
        required=False,
        additive=False,
        aggregates=(
            Aggregate(
                Rollup.MEAN,
                "veh_density_mean",
                stored="veh_density_sum",
                samples="veh_density_samples",
                api="veh_per_km_lane",
            ),
        ),
        since=14,
        description="vehicles per km per lane in the zone at the interval's end (road zones "
        "with lanes and a length, configured or from the calibration)",
    ),
    ZoneMetric(
        column="queue_length_m",
        unit="m",
        sql_type="real",
        required=False,
        additive=False,
        aggregates=(Aggregate(Rollup.MAX, "queue_max", api="queue_m"),),
        since=15,
        description="longest queue back from the stop line during the interval, metres "
        "(approach zones of a calibrated camera)",
    ),
)
"""Every zone metric, in rollup column order."""


HELD_COUNT_COLUMNS: tuple[str, ...] = ("count_flag", "flagged_count")
"""Why a zone's count was held back, stored beside the metrics (raw rows and ``zone_latest``,
migration 10), never rolled up: the ``ZoneCount`` fields of the same names.  ``count_flag``
is text (a reason, not a quantity); ``flagged_count`` is the reading the edge refused, which
must not be summed or averaged as if people had been counted
(:mod:`crowdwatch.edge.plausibility`)."""


def zone_metric_columns(metrics: tuple[ZoneMetric, ...] = ZONE_METRICS) -> tuple[str, ...]:
    """The raw columns of the metrics, in declaration order."""
    return tuple(m.column for m in metrics)


def aggregates(metrics: tuple[ZoneMetric, ...] = ZONE_METRICS) -> tuple[Aggregate, ...]:
    """Every rolled-up value, in column order."""
    return tuple(a for m in metrics for a in m.aggregates)
