"""The SQL behind every Grafana panel and variable, in Grafana's dialect.

Sources: the ``*_latest`` tables for "now", the rollups (``zone_counts_*``, ``site_counts_*``,
``line_counts_*``) for every series, never the raw tables.  Series reuse the constant
statements of :mod:`crowdwatch.storage.queries` (:data:`~crowdwatch.storage.queries.SITE_SERIES_SQL`,
:data:`~crowdwatch.storage.queries.ZONE_SERIES_SQL`): their psycopg parameters become
Grafana expressions (:func:`grafana_form`), and the rollup is picked from the dashboard's time
range inside the statement (:func:`by_range`) with the same thresholds as
:func:`~crowdwatch.storage.queries.choose_resolution`.

Grafana replaces ``$__timeFrom()`` / ``$__timeTo()`` with quoted UTC instants and the
variables (``${site:sqlstring}``: a quoted, escaped literal) before PostgreSQL sees the text,
so a range condition such as ``$__timeTo()::timestamptz - $__timeFrom()::timestamptz <
INTERVAL '1 day'`` is a constant the planner folds: only the one matching rollup is read.

The district's time zone and the stale limit are written into the statements as literals
(from the config at generation), so the dashboards need no server-side settings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from zoneinfo import ZoneInfo

from crowdwatch.contracts.congestion import JAM_DENSITY_PER_KM_LANE, SpeedThresholds
from crowdwatch.contracts.db_schema import ROLLUP_ORIGIN
from crowdwatch.contracts.site_kinds import (
    DENSITY_SOURCE_TEXT,
    SITE_KINDS,
    SPILLBACK_SHARE,
    KindView,
)
from crowdwatch.dashboards.trends import (
    MIN_CHANGE_PEOPLE,
    MIN_CHANGE_SHARE,
    WINDOW_END,
    WINDOW_START,
)
from crowdwatch.storage.queries import (
    MINUTE_UNDER,
    QUARTER_HOUR_UNDER,
    SERIES_COLUMNS,
    SITE_SERIES_SQL,
    ZONE_SERIES_SQL,
    Resolution,
)

TIME_FROM = "$__timeFrom()::timestamptz"
TIME_TO = "$__timeTo()::timestamptz"
SPAN = f"({TIME_TO} - {TIME_FROM})"
SITE_VAR = "${site:sqlstring}"
REF_DAY_VAR = "${ref_day:sqlstring}"

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
_SERIES_COLUMNS = SERIES_COLUMNS


def grafana_form(sql: str, values: Mapping[str, str]) -> str:
    """A psycopg statement with its ``%(name)s`` parameters replaced by Grafana expressions.

    Args:
        sql: a constant statement of :mod:`crowdwatch.storage.queries`.
        values: parameter name -> SQL expression (a macro, a variable, an expression).

    Returns:
        The statement for a Grafana panel.

    Raises:
        ValueError: the statement has a parameter ``values`` does not cover.
    """

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise ValueError(f"no Grafana expression for parameter {name!r} of: {sql.strip()}")
        return f"({values[name]})"

    # psycopg doubles a literal percent sign; Grafana sends the text as it is.
    return _PLACEHOLDER.sub(replace, sql).replace("%%", "%")


def _interval(span: timedelta) -> str:
    return f"INTERVAL '{int(span.total_seconds())} seconds'"


def by_range(statements: Mapping[Resolution, str]) -> str:
    """One statement that reads the 1 min, 15 min or 1 h rollup by the dashboard's range.

    The thresholds are :func:`~crowdwatch.storage.queries.choose_resolution`'s, with raw rows
    replaced by 1-minute buckets (a wall never reads raw rows).

    Args:
        statements: a statement per rollup resolution (1m, 15m, 1h), same columns each.

    Returns:
        A ``UNION ALL`` of the three, each behind a constant condition on the range.
    """
    minute, quarter = _interval(MINUTE_UNDER), _interval(QUARTER_HOUR_UNDER)
    conditions = {
        Resolution.MINUTE: f"{SPAN} < {minute}",
        Resolution.QUARTER_HOUR: f"{SPAN} >= {minute} AND {SPAN} < {quarter}",
        Resolution.HOUR: f"{SPAN} >= {quarter}",
    }
    parts = [
        f"SELECT * FROM ({statements[res].strip()}) AS r WHERE {cond}"
        for res, cond in conditions.items()
    ]
    return "\nUNION ALL\n".join(parts)


def quote_literal(text: str) -> str:
    """A SQL string literal (single quotes doubled)."""
    return "'" + text.replace("'", "''") + "'"


class PanelSql:
    """Every panel's statement for one district (its time zone and stale limit).

    Args:
        timezone: the district's IANA zone (``district.timezone``).
        stale_after_s: a zone's latest count older than this is not "now" (``alerts.
            stale_after_s``): the wall shows no figure rather than an old one.
    """

    def __init__(self, timezone: str, stale_after_s: float) -> None:
        ZoneInfo(timezone)  # fails early on a zone PostgreSQL would not know either
        self.tz = quote_literal(timezone)
        self.stale = f"INTERVAL '{int(stale_after_s)} seconds'"
        self.origin = f"TIMESTAMPTZ '{ROLLUP_ORIGIN}'"

    # --- now: *_latest tables ---------------------------------------------------------

    def sites_now(self, *, kind: str | None = None) -> str:
        """One row per site: people now (fresh zones only), capacity, occupancy, position.

        Columns: site_id, name, kind, lat, lon, people, capacity, occupancy, updated,
        age_s.  ``people`` and ``occupancy`` are NULL for a site without a fresh count.
        """
        where = f"WHERE s.kind = {quote_literal(kind)}" if kind else ""
        return f"""
SELECT s.site_id,
       s.name_zh || ' ' || s.name_en AS name,
       s.kind,
       s.lat,
       s.lon,
       sum(l.count)::bigint AS people,
       s.capacity,
       sum(l.count)::double precision / s.capacity AS occupancy,
       max(l.ts) AS updated,
       extract(epoch FROM now() - max(l.ts))::integer AS age_s
FROM sites s
LEFT JOIN zone_latest l ON l.site_id = s.site_id AND l.ts > now() - {self.stale}
{where}
GROUP BY s.site_id
ORDER BY occupancy DESC NULLS LAST, s.site_id
"""

    def district_now(self) -> str:
        """One row: people now, sites at 85 % or more, firing alerts, cameras offline."""
        return f"""
SELECT (SELECT coalesce(sum(count), 0) FROM zone_latest
         WHERE ts > now() - {self.stale})::bigint AS people,
       (SELECT count(*) FROM (
           SELECT s.site_id FROM sites s JOIN zone_latest l ON l.site_id = s.site_id
           WHERE l.ts > now() - {self.stale}
           GROUP BY s.site_id, s.capacity
           HAVING sum(l.count) >= 0.85 * s.capacity) AS full_sites)::bigint AS sites_full,
       (SELECT count(*) FROM alerts WHERE state = 'firing')::bigint AS alerts_firing,
       (SELECT count(*) FROM camera_latest_status
         WHERE state <> 'online' OR ts < now() - {self.stale})::bigint AS cameras_offline
"""

    def bus_queues(self) -> str:
        """Bus stops: waiting now, longest wait, trend against a few minutes ago.

        The trend follows :mod:`crowdwatch.dashboards.trends` (the phone page's arrows): the
        live count against the mean of the 1-minute buckets that started 10 to 4 minutes ago,
        "steady" under max(2 people, 5 % of capacity).  Columns: site_id, stop, waiting,
        capacity, occupancy, longest_wait_s, trend_delta, trend, updated.
        """
        start, end = _interval(WINDOW_START), _interval(WINDOW_END)
        return f"""
WITH now_counts AS (
    SELECT site_id, sum(count) AS waiting, max(longest_wait_s) AS longest_wait_s,
           max(ts) AS updated
    FROM zone_latest
    WHERE ts > now() - {self.stale}
    GROUP BY site_id
), earlier AS (
    SELECT site_id, sum(zone_mean) AS mean
    FROM (SELECT site_id, zone_id, sum(count_mean_sum) / nullif(sum(samples), 0) AS zone_mean
          FROM zone_counts_1m
          WHERE bucket >= now() - {start} AND bucket < now() - {end}
          GROUP BY site_id, zone_id) AS z
    GROUP BY site_id
)
SELECT s.site_id,
       s.name_zh || ' ' || s.name_en AS stop,
       n.waiting::bigint AS waiting,
       s.capacity,
       n.waiting::double precision / s.capacity AS occupancy,
       n.longest_wait_s::double precision AS longest_wait_s,
       n.waiting - e.mean AS trend_delta,
       CASE
           WHEN n.waiting IS NULL OR e.mean IS NULL THEN ''
           WHEN abs(n.waiting - e.mean) < greatest({MIN_CHANGE_PEOPLE}, {MIN_CHANGE_SHARE} * s.capacity)
               THEN '→'
           WHEN n.waiting > e.mean THEN '↑'
           ELSE '↓'
       END AS trend,
       n.updated
FROM sites s
LEFT JOIN now_counts n ON n.site_id = s.site_id
LEFT JOIN earlier e ON e.site_id = s.site_id
WHERE s.kind IN ({_kinds_viewed(KindView.QUEUE)})
ORDER BY occupancy DESC NULLS LAST, s.site_id
"""

    def road_traffic(
        self,
        roads: Sequence[tuple[str, SpeedThresholds]],
        approaches: Sequence[tuple[str, str, float]] = (),
    ) -> str:
        """Every road now: its congestion level, slowest zone's mean speed, vehicles, queue.

        The level is GB/T 33171-2016's from each road's own thresholds (written in as
        literals from the config), by the rule of the wall and the alert engine
        (:func:`~crowdwatch.contracts.site_kinds.road_level`): the slowest zone's speed, an
        empty road smooth; without a speed, its densest zone's vehicles per km per lane by
        Greenshields' rule (``free_flow * (1 - density / 150)``); vehicles with neither no
        level. ``basis`` says so where the level came from density (as the wall's note does):
        a model's estimate, not a measured speed. ``queue`` is its fullest approach's queue
        (the largest share of its length), "溢出 spill-back" once it fills it
        (:data:`~crowdwatch.contracts.site_kinds.SPILLBACK_SHARE`), as the wall shows it.

        Args:
            roads: ``(site_id, thresholds)`` of every road (at least one).
            approaches: ``(site_id, zone_id, length_m)`` of every approach zone with a length.

        Columns: site_id, road, level, basis, speed_kmh, vehicles, queue, updated.
        """
        if not roads:
            raise ValueError("road_traffic: expected at least one road's thresholds")
        values = ",\n       ".join(
            f"({quote_literal(site_id)}, {a:g}, {b:g}, {c:g}, {d:g}, {t.free_flow_kmh:g})"
            for site_id, t in roads
            for a, b, c, d in (t.bounds,)
        )
        lengths = (
            "VALUES "
            + ", ".join(
                f"({quote_literal(site_id)}, {quote_literal(zone_id)}, {length:.3f})"
                for site_id, zone_id, length in approaches
            )
            if approaches
            else "SELECT NULL::text, NULL::text, NULL::numeric WHERE false"
        )
        return f"""
WITH bounds (site_id, a, b, c, d, free_flow) AS (
VALUES {values}
), approaches (site_id, zone_id, length_m) AS (
{lengths}
), fullest AS (
    SELECT DISTINCT ON (l.site_id) l.site_id, l.queue_length_m AS queue_m,
           l.queue_length_m / a.length_m AS share
    FROM zone_latest l JOIN approaches a USING (site_id, zone_id)
    WHERE l.ts > now() - {self.stale} AND l.queue_length_m IS NOT NULL
    ORDER BY l.site_id, l.queue_length_m / a.length_m DESC
), now_roads AS (
    SELECT site_id, min(mean_speed_kmh) AS speed_kmh, sum(vehicles) AS vehicles,
           max(vehicle_density) AS density, max(ts) AS updated
    FROM zone_latest
    WHERE ts > now() - {self.stale}
    GROUP BY site_id
), graded AS (
    -- least() skips NULLs: a road without a density must not read as a standstill.
    SELECT n.*, coalesce(
               n.speed_kmh,
               CASE WHEN n.density IS NOT NULL
                    THEN t.free_flow * (1 - least(n.density / {JAM_DENSITY_PER_KM_LANE:g}, 1))
               END
           ) AS grade_kmh
    FROM now_roads n JOIN bounds t USING (site_id)
)
SELECT s.site_id,
       s.name_zh || ' ' || s.name_en AS road,
       CASE
           WHEN n.grade_kmh > t.a THEN 1
           WHEN n.grade_kmh > t.b THEN 2
           WHEN n.grade_kmh > t.c THEN 3
           WHEN n.grade_kmh > t.d THEN 4
           WHEN n.grade_kmh IS NOT NULL THEN 5
           WHEN n.vehicles = 0 THEN 1
       END AS level,
       CASE WHEN n.speed_kmh IS NULL AND n.grade_kmh IS NOT NULL
            THEN '{DENSITY_SOURCE_TEXT.zh} · {DENSITY_SOURCE_TEXT.en}'
       END AS basis,
       n.speed_kmh::double precision AS speed_kmh,
       n.vehicles::bigint AS vehicles,
       round(q.queue_m)::bigint || ' m'
           || CASE WHEN q.share >= {SPILLBACK_SHARE:g} THEN ' · 溢出 spill-back' ELSE '' END
           AS queue,
       n.updated
FROM sites s
JOIN bounds t ON t.site_id = s.site_id
LEFT JOIN graded n ON n.site_id = s.site_id
LEFT JOIN fullest q ON q.site_id = s.site_id
ORDER BY level DESC NULLS LAST, s.site_id
"""

    def beach_sections(self) -> str:
        """Every section (zone) of every beach: people now, capacity, share.

        Columns: site_id, beach, section, people, capacity, occupancy, updated.
        """
        return f"""
SELECT s.site_id,
       s.name_zh || ' ' || s.name_en AS beach,
       z.name_zh || ' ' || z.name_en AS section,
       l.count::bigint AS people,
       z.capacity,
       l.count::double precision / z.capacity AS occupancy,
       l.ts AS updated
FROM zones z
JOIN sites s ON s.site_id = z.site_id
LEFT JOIN zone_latest l
       ON l.site_id = z.site_id AND l.zone_id = z.zone_id AND l.ts > now() - {self.stale}
WHERE s.kind IN ({_kinds_viewed(KindView.SECTIONS)})
ORDER BY s.site_id, z.zone_id
"""

    def site_zones_now(self) -> str:
        """The ``$site``'s zones now: people, capacity, share, waiting time, density.

        Columns: zone, people, capacity, occupancy, longest_wait_s, density_per_m2, updated.
        """
        return f"""
SELECT z.name_zh || ' ' || z.name_en AS zone,
       l.count::bigint AS people,
       z.capacity,
       l.count::double precision / z.capacity AS occupancy,
       l.longest_wait_s::double precision AS longest_wait_s,
       l.density_per_m2::double precision AS density_per_m2,
       l.ts AS updated
FROM zones z
LEFT JOIN zone_latest l
       ON l.site_id = z.site_id AND l.zone_id = z.zone_id AND l.ts > now() - {self.stale}
WHERE z.site_id = {SITE_VAR}
ORDER BY z.zone_id
"""

    def site_now(self) -> str:
        """The ``$site`` now: people and occupancy (NULL without a fresh count)."""
        return f"""
SELECT sum(l.count)::bigint AS people,
       sum(l.count)::double precision / s.capacity AS occupancy
FROM sites s
LEFT JOIN zone_latest l ON l.site_id = s.site_id AND l.ts > now() - {self.stale}
WHERE s.site_id = {SITE_VAR}
GROUP BY s.site_id, s.capacity
"""

    def cameras(self, *, one_site: bool) -> str:
        """Camera health: state, age of the last report, fps, inference time.

        Columns: site_id, camera_id, state, age_s, fps, inference_ms, dropped_frames, ts.
        """
        where = f"WHERE site_id = {SITE_VAR}" if one_site else ""
        return f"""
SELECT site_id, camera_id,
       CASE WHEN ts < now() - {self.stale} THEN 'stale' ELSE state END AS state,
       extract(epoch FROM now() - ts)::integer AS age_s,
       fps, inference_ms, dropped_frames, ts
FROM camera_latest_status
{where}
ORDER BY (state = 'online' AND ts >= now() - {self.stale}), site_id, camera_id
"""

    def alerts(self, *, firing_only: bool, one_site: bool) -> str:
        """Alerts with the site and zone names, newest first.

        Columns: started, state, severity, site, zone, summary_zh, summary_en, value,
        threshold, site_id.  History (``firing_only=False``) is limited to the range.
        """
        conditions = ["a.state = 'firing'"] if firing_only else [f"a.started_at < {TIME_TO}"]
        if not firing_only:
            conditions.append(f"(a.resolved_at IS NULL OR a.resolved_at >= {TIME_FROM})")
        if one_site:
            conditions.append(f"a.site_id = {SITE_VAR}")
        return f"""
SELECT a.started_at AS started,
       a.state,
       a.severity,
       coalesce(s.name_zh || ' ' || s.name_en, a.site_id) AS site,
       coalesce(z.name_zh || ' ' || z.name_en, a.zone_id, '') AS zone,
       a.summary_zh,
       a.summary_en,
       a.value,
       a.threshold,
       a.site_id
FROM alerts a
LEFT JOIN sites s ON s.site_id = a.site_id
LEFT JOIN zones z ON z.site_id = a.site_id AND z.zone_id = a.zone_id
WHERE {" AND ".join(conditions)}
ORDER BY a.started_at DESC, a.id DESC
LIMIT 200
"""

    # --- series: rollups --------------------------------------------------------------

    def _shift(self) -> str:
        # The reference day at the same local time as the range's start, minus that start:
        # storage.queries.reference_series' shift, computed by PostgreSQL.
        return (
            f"(((({REF_DAY_VAR})::date + ({TIME_FROM} AT TIME ZONE {self.tz})::time)"
            f" AT TIME ZONE {self.tz}) - {TIME_FROM})"
        )

    def site_series(self, *, reference: bool) -> str:
        """The ``$site``'s people per bucket (mean over the bucket; max beside it).

        With ``reference`` the same local times on ``$ref_day``, moved onto the dashboard's
        range.  Columns: time, people, peak (reference: time, reference).
        """
        shift = self._shift() if reference else "INTERVAL '0'"
        values = {
            "site_id": SITE_VAR,
            "start": f"{TIME_FROM} + {shift}",
            "end": f"{TIME_TO} + {shift}",
        }
        inner = by_range(
            {
                res: grafana_form(SITE_SERIES_SQL[res], values)
                for res in (Resolution.MINUTE, Resolution.QUARTER_HOUR, Resolution.HOUR)
            }
        )
        columns = (
            "count_mean AS reference" if reference else "count_mean AS people, count_max AS peak"
        )
        return f"""
SELECT bucket - ({shift}) AS time, {columns}
FROM ({inner}) AS s({_SERIES_COLUMNS})
ORDER BY 1
"""

    def site_traffic_series(self) -> str:
        """The ``$site``'s vehicles (most per bucket, over its zones) and their mean speed
        per bucket: a road's flow of the day; empty values on sites that count no vehicles.

        Columns: time, speed_kmh, vehicles.
        """
        values = {"site_id": SITE_VAR, "start": TIME_FROM, "end": TIME_TO}
        inner = by_range(
            {
                res: grafana_form(SITE_SERIES_SQL[res], values)
                for res in (Resolution.MINUTE, Resolution.QUARTER_HOUR, Resolution.HOUR)
            }
        )
        return f"""
SELECT bucket AS time, speed_mean AS speed_kmh, vehicles_max AS vehicles
FROM ({inner}) AS s({_SERIES_COLUMNS})
ORDER BY 1
"""

    def zone_series(self) -> str:
        """Every zone of ``$site``: people per bucket, one series per zone.

        Columns: time, metric (the zone's name), value.
        """
        values = {"site_id": SITE_VAR, "zone_id": "z.zone_id", "start": TIME_FROM, "end": TIME_TO}
        inner = by_range(
            {
                res: grafana_form(ZONE_SERIES_SQL[res], values)
                for res in (Resolution.MINUTE, Resolution.QUARTER_HOUR, Resolution.HOUR)
            }
        )
        return f"""
SELECT r.bucket AS time, z.name_zh || ' ' || z.name_en AS metric, r.count_mean AS value
FROM zones z
CROSS JOIN LATERAL ({inner}) AS r({_SERIES_COLUMNS})
WHERE z.site_id = {SITE_VAR}
ORDER BY 1, 2
"""

    def district_series(self, *, reference: bool) -> str:
        """People in the whole district per bucket (sum of the sites' means).

        With ``reference`` the same local times on ``$ref_day``.  Columns: time, people
        (reference: time, reference).
        """
        shift = self._shift() if reference else "INTERVAL '0'"
        start, end = f"({TIME_FROM} + {shift})", f"({TIME_TO} + {shift})"
        statements = {
            res: f"""
SELECT bucket, sum(count_mean) AS people
FROM site_counts_{res.value}
WHERE bucket >= date_bin(INTERVAL '{width}', {start}, {self.origin}) AND bucket < {end}
GROUP BY bucket
"""
            for res, width in (
                (Resolution.MINUTE, "1 minute"),
                (Resolution.QUARTER_HOUR, "15 minutes"),
                (Resolution.HOUR, "1 hour"),
            )
        }
        name = "reference" if reference else "people"
        return f"""
SELECT bucket - ({shift}) AS time, people AS {name}
FROM ({by_range(statements)}) AS s(bucket, people)
ORDER BY 1
"""

    def kind_series(self) -> str:
        """People per kind of site (bus stops, beaches, roads, scenic spots) per bucket.

        Columns: time, metric (the kind), value.
        """
        statements = {
            res: f"""
SELECT c.bucket, s.kind, sum(c.count_mean) AS people
FROM site_counts_{res.value} c JOIN sites s ON s.site_id = c.site_id
WHERE c.bucket >= date_bin(INTERVAL '{width}', {TIME_FROM}, {self.origin})
  AND c.bucket < {TIME_TO}
GROUP BY c.bucket, s.kind
"""
            for res, width in (
                (Resolution.MINUTE, "1 minute"),
                (Resolution.QUARTER_HOUR, "15 minutes"),
                (Resolution.HOUR, "1 hour"),
            )
        }
        labels = " ".join(
            f"WHEN {quote_literal(k)} THEN {quote_literal(v)}" for k, v in KIND_LABELS.items()
        )
        return f"""
SELECT bucket AS time, CASE kind {labels} ELSE kind END AS metric, people AS value
FROM ({by_range(statements)}) AS s(bucket, kind, people)
ORDER BY 1, 2
"""

    def line_series(self, left_out: Sequence[tuple[str, str]] = ()) -> str:
        """The ``$site``'s line crossings per bucket, in and out (all its lines summed).

        Args:
            left_out: ``(site_id, line_id)`` of lines not summed: lines by class, a part of
                another line's crossings (``Site.lines_by_class``).

        Columns: time, crossings_in, crossings_out.
        """
        skip = ""
        if left_out:
            pairs = ", ".join(
                f"({quote_literal(site_id)}, {quote_literal(line_id)})"
                for site_id, line_id in left_out
            )
            skip = f"\n  AND (site_id, line_id) NOT IN (VALUES {pairs})"
        statements = {
            res: f"""
SELECT bucket, sum(in_sum) AS crossings_in, sum(out_sum) AS crossings_out
FROM line_counts_{res.value}
WHERE site_id = {SITE_VAR}
  AND bucket >= date_bin(INTERVAL '{width}', {TIME_FROM}, {self.origin})
  AND bucket < {TIME_TO}{skip}
GROUP BY bucket
"""
            for res, width in (
                (Resolution.MINUTE, "1 minute"),
                (Resolution.QUARTER_HOUR, "15 minutes"),
                (Resolution.HOUR, "1 hour"),
            )
        }
        return f"""
SELECT bucket AS time, crossings_in::bigint AS crossings_in, crossings_out::bigint AS crossings_out
FROM ({by_range(statements)}) AS s(bucket, crossings_in, crossings_out)
ORDER BY 1
"""

    def line_flow_per_lane(self, lanes: Sequence[tuple[str, str, int]]) -> str:
        """The ``$site``'s flow per lane of each line with ``lanes``: crossings both ways per
        hour per lane (vehicles on a road camera's lines), from the same line rollups as
        :meth:`line_series`.

        Args:
            lanes: ``(site_id, line_id, lanes)`` of every line with lanes (at least one).

        Columns: time, metric (the line), value (vehicles per hour per lane; empty for a
        line without lanes, as the road series are on sites that count no vehicles).
        """
        if not lanes:
            raise ValueError("line_flow_per_lane: expected at least one line with lanes")
        values = ",\n       ".join(
            f"({quote_literal(site_id)}, {quote_literal(line_id)}, {n:d})"
            for site_id, line_id, n in lanes
        )
        statements = {
            res: f"""
SELECT bucket, site_id, line_id, in_sum + out_sum AS crossings, {seconds} AS width_s
FROM line_counts_{res.value}
WHERE site_id = {SITE_VAR}
  AND bucket >= date_bin(INTERVAL '{width}', {TIME_FROM}, {self.origin})
  AND bucket < {TIME_TO}
"""
            for res, width, seconds in (
                (Resolution.MINUTE, "1 minute", 60),
                (Resolution.QUARTER_HOUR, "15 minutes", 900),
                (Resolution.HOUR, "1 hour", 3600),
            )
        }
        return f"""
WITH lanes (site_id, line_id, lanes) AS (
VALUES {values}
)
SELECT s.bucket AS time, s.line_id AS metric,
       (s.crossings * 3600.0 / s.width_s / l.lanes)::double precision AS value
FROM ({by_range(statements)}) AS s(bucket, site_id, line_id, crossings, width_s)
LEFT JOIN lanes l ON l.site_id = s.site_id AND l.line_id = s.line_id
ORDER BY 1, 2
"""

    # --- variables --------------------------------------------------------------------

    def site_choices(self) -> str:
        """Variable ``site``: every site, grouped by kind (``__value``, ``__text``)."""
        return """
SELECT site_id AS __value, name_zh || ' ' || name_en || ' (' || site_id || ')' AS __text
FROM sites
ORDER BY kind, site_id
"""

    def reference_days(self) -> str:
        """Variable ``ref_day``: the past local days (400 back) that have data, newest first.

        One index probe on the hourly rollup per day, so the list stays cheap over two years
        of data.  Columns: ``__value`` (YYYY-MM-DD), ``__text``.
        """
        return f"""
SELECT to_char(g.d, 'YYYY-MM-DD') AS __value, to_char(g.d, 'YYYY-MM-DD Dy') AS __text
FROM generate_series((now() AT TIME ZONE {self.tz})::date - 1,
                     (now() AT TIME ZONE {self.tz})::date - 400,
                     INTERVAL '-1 day') AS g(d)
WHERE EXISTS (
    SELECT 1 FROM zone_counts_1h h
    WHERE h.bucket >= (g.d::date::timestamp AT TIME ZONE {self.tz})
      AND h.bucket < ((g.d::date + 1)::timestamp AT TIME ZONE {self.tz}))
ORDER BY g.d DESC
"""


KIND_LABELS = {k.value: f"{s.plural.zh} {s.plural.en}" for k, s in SITE_KINDS.items()}
"""The legend of each kind (crowdwatch.contracts.site_kinds)."""


def _kinds_viewed(view: KindView) -> str:
    """The kinds whose sites a view lists, as SQL literals (the queue and section tables)."""
    return ", ".join(quote_literal(k.value) for k, s in SITE_KINDS.items() if s.view is view)
