"""The Grafana dashboards: valid against Grafana's own schema, every panel's SQL runs on the
real PostgreSQL and returns the columns the panel reads, and the committed provisioning
files equal a fresh generation."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jsonschema
import psycopg
import pytest
import yaml
from raw_rows import LineRow, ZoneRow, insert_lines, insert_zones
from services import PgServer

from crowdwatch.cli import main
from crowdwatch.contracts.config import CrowdwatchConfig, load_config
from crowdwatch.dashboards.grafana import macros
from crowdwatch.dashboards.grafana.dashboards import all_dashboards
from crowdwatch.dashboards.grafana.model import Dashboard, Panel, SqlTarget
from crowdwatch.dashboards.grafana.provisioning import (
    DATASOURCE_UID,
    dashboard_models,
    render_provisioning,
)
from crowdwatch.storage.migrate import upgrade
from crowdwatch.storage.rollups import refresh_rollups

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_DIR = ROOT / "crowdwatch" / "dashboards" / "grafana" / "schema"
COMMITTED = ROOT / "configs" / "grafana"
CONFIG = load_config(ROOT / "configs" / "district.example.yaml")
TZ = ZoneInfo(CONFIG.district.timezone)
REF_DAY = (datetime.now(TZ) - timedelta(days=7)).date()
SPANS = [timedelta(hours=6), timedelta(days=3), timedelta(days=30)]
"""the dashboard time ranges every panel query is run over"""
SPAN_6H = timedelta(hours=6)


def _schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
    return loaded


# --- Schema -------------------------------------------------------------------------------


@pytest.mark.parametrize("model", dashboard_models(CONFIG), ids=lambda m: m["uid"])
def test_dashboard_json_is_valid_against_grafanas_schema(model: dict[str, Any]) -> None:
    validator = jsonschema.Draft7Validator(_schema("dashboard.schema.json"))
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(model)]
    assert errors == []


PANEL_SCHEMAS = {
    (kind, part): _schema(f"panels/{kind}.{part}.schema.json")
    for kind, part in [
        ("geomap", "options"),
        ("gauge", "options"),
        ("stat", "options"),
        ("table", "options"),
        ("timeseries", "options"),
        ("table", "fieldconfig"),
        ("timeseries", "fieldconfig"),
    ]
}


def _panels() -> list[tuple[str, dict[str, Any]]]:
    return [(f"{m['uid']}#{p['id']}", p) for m in dashboard_models(CONFIG) for p in m["panels"]]


@pytest.mark.parametrize(("name", "panel"), _panels(), ids=[n for n, _ in _panels()])
def test_panel_options_are_valid_for_their_panel_type(name: str, panel: dict[str, Any]) -> None:
    options_schema = PANEL_SCHEMAS[(panel["type"], "options")]
    errors = [
        f"options{list(e.absolute_path)}: {e.message}"
        for e in jsonschema.Draft7Validator(options_schema).iter_errors(panel["options"])
    ]
    custom = panel["fieldConfig"]["defaults"].get("custom")
    custom_schema = PANEL_SCHEMAS.get((panel["type"], "fieldconfig"))
    if custom_schema is not None and custom is not None:
        errors += [
            f"custom{list(e.absolute_path)}: {e.message}"
            for e in jsonschema.Draft7Validator(custom_schema).iter_errors(custom)
        ]
    assert errors == []


def test_schema_rejects_what_grafana_would_reject() -> None:
    """The committed schema is strict enough to catch a misspelt property."""
    model = dashboard_models(CONFIG)[0]
    broken = {**model, "refrsh": "10s"}
    broken_panel = {**model["panels"][0], "gridpos": model["panels"][0]["gridPos"]}
    validator = jsonschema.Draft7Validator(_schema("dashboard.schema.json"))
    assert not validator.is_valid(broken)
    assert not validator.is_valid({**model, "panels": [broken_panel]})


def test_every_dashboard_refreshes_every_10_s_and_titles_are_bilingual() -> None:
    for model in dashboard_models(CONFIG):
        assert model["refresh"] == "10s"
        for title in [model["title"], *(p["title"] for p in model["panels"])]:
            assert any("\u4e00" <= ch <= "\u9fff" for ch in title), title
            assert any("a" <= ch.lower() <= "z" for ch in title), title


def test_no_panel_reads_the_raw_tables() -> None:
    raw = ("zone_counts ", "zone_counts\n", "line_counts ", "line_counts\n", "camera_status ")
    for dashboard in all_dashboards(CONFIG):
        for panel, target in dashboard.targets():
            assert not any(t in target.sql + " " for t in raw), panel.title


# --- Provisioning files -------------------------------------------------------------------


def test_committed_provisioning_equals_a_fresh_generation() -> None:
    fresh = render_provisioning(CONFIG)
    committed = {
        str(p.relative_to(COMMITTED)): p.read_text(encoding="utf-8")
        for p in sorted(COMMITTED.rglob("*"))
        if p.is_file() and p.suffix in (".yaml", ".json")
    }
    assert committed.keys() == fresh.keys(), "run: crowdwatch dashboards generate"
    for path, text in fresh.items():
        assert committed[path] == text, f"{path} drifted; run: crowdwatch dashboards generate"


def test_datasource_password_comes_from_the_environment() -> None:
    text = render_provisioning(CONFIG)["provisioning/datasources/crowdwatch.yaml"]
    (datasource,) = yaml.safe_load(text)["datasources"]
    assert datasource["uid"] == DATASOURCE_UID
    assert datasource["secureJsonData"]["password"] == "${CROWDWATCH_GRAFANA_DB_PASSWORD}"
    assert datasource["type"] == "grafana-postgresql-datasource"


def test_generate_command_writes_the_files(tmp_path: Path) -> None:
    out = tmp_path / "grafana"
    stale = out / "provisioning" / "dashboards" / "crowdwatch-old.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}", encoding="utf-8")
    code = main(
        [
            "dashboards",
            "generate",
            "--out",
            str(out),
            "-c",
            str(ROOT / "configs/district.example.yaml"),
        ]
    )
    assert code == 0
    written = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert written == set(render_provisioning(CONFIG))


# --- Macros -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "variables", "expected", "error"),
    [
        (
            "WHERE ts >= $__timeFrom() AND ts < $__timeTo()",
            {},
            "WHERE ts >= '2026-10-01T00:00:00Z' AND ts < '2026-10-01T06:00:00Z'",
            None,
        ),
        (
            "WHERE $__timeFilter(ts)",
            {},
            "WHERE ts BETWEEN '2026-10-01T00:00:00Z' AND '2026-10-01T06:00:00Z'",
            None,
        ),
        (
            "WHERE site_id = ${site:sqlstring}",
            {"site": "o'hare"},
            "WHERE site_id = 'o''hare'",
            None,
        ),
        (
            "WHERE site_id = '$site' AND x = ${site}",
            {"site": "a"},
            "WHERE site_id = 'a' AND x = a",
            None,
        ),
        ("WHERE site_id = $site", {}, None, "no value for dashboard variable"),
        ("SELECT $__timeGroup(ts, '1m')", {}, None, "unsupported Grafana macro"),
        ("SELECT ${site:csv}", {"site": "a"}, None, "unsupported variable format"),
    ],
)
def test_macros_expand_like_grafana(
    sql: str, variables: dict[str, str], expected: str | None, error: str | None
) -> None:
    start = datetime(2026, 10, 1, 8, 0, 0, 250000, tzinfo=ZoneInfo("Asia/Shanghai"))
    end = start + timedelta(hours=6)
    if error:
        with pytest.raises(ValueError, match=error):
            macros.expand(sql, start, end, variables)
    else:
        assert macros.expand(sql, start, end, variables) == expected


# --- Every panel's SQL on the real database -----------------------------------------------


@dataclass(frozen=True)
class District:
    url: str
    config: CrowdwatchConfig
    stop: str
    stop_zone: str
    beach: str
    beach_zone: str
    line_site: str
    timescale: bool
    now: datetime
    """When the rows were written: the panels' time ranges end here."""


def _first(config: CrowdwatchConfig, kind: str) -> tuple[str, str]:
    site = next(s for s in config.sites if s.kind == kind)
    return site.id, site.cameras[0].zones[0].id


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "timescale"])
def district(
    request: pytest.FixtureRequest, pg_server: PgServer, timescale_problem: str
) -> Iterator[District]:
    """The example district migrated for each storage path in turn, with two hours of counts
    now and on the reference day, latest counts, camera status, line crossings and a firing
    alert."""
    timescale = bool(request.param)
    if timescale and timescale_problem:
        pytest.skip(timescale_problem)
    url = pg_server.create_database()
    try:
        upgrade(url, CONFIG, timescale=timescale)
        stop, stop_zone = _first(CONFIG, "bus_stop")
        beach, beach_zone = _first(CONFIG, "beach")
        line_site = next(s.id for s in CONFIG.sites for c in s.cameras if c.lines)
        line_id = next(
            ln.id for s in CONFIG.sites if s.id == line_site for c in s.cameras for ln in c.lines
        )
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        # Where each tested range ending now lands on the reference day: its start's local
        # time on REF_DAY (reference_series' rule), so possibly the next local days.
        ref_ends = [
            datetime.combine(REF_DAY, (now - span).astimezone(TZ).time(), tzinfo=TZ) + span
            for span in SPANS
        ]
        with psycopg.connect(url, autocommit=True) as conn:
            rows = []
            for base, count in ((now, 30), *((end, 60) for end in ref_ends)):
                for i in range(24):  # every 5 min over the last two hours
                    ts = base - timedelta(minutes=5 * i + 1)
                    rows += [
                        ZoneRow(ts, stop, stop_zone, count, longest_wait_s=120.0),
                        ZoneRow(ts, beach, beach_zone, count * 2),
                    ]
            # The reference day itself always holds data, whatever the hour the suite runs:
            # the windows above land on the days after it when the district's local time is
            # 02:00-08:00.  A road's zone, which no panel test below reads on that day.
            road, road_zone = _first(CONFIG, "road")
            noon = datetime.combine(REF_DAY, time(12, 0), tzinfo=TZ)
            rows.append(ZoneRow(noon, road, road_zone, 0))
            insert_zones(conn, rows)
            insert_lines(
                conn,
                [
                    LineRow(now - timedelta(minutes=m), line_site, line_id, 3, 1)
                    for m in range(1, 30)
                ],
            )
            refresh_rollups(conn)
            conn.execute(
                "INSERT INTO zone_latest (site_id, zone_id, camera_id, ts, count, count_max,"
                " count_mean, longest_wait_s) VALUES (%s, %s, 'cam1', now(), 40, 40, 40, 300),"
                " (%s, %s, 'cam1', now(), 90, 90, 90, NULL)",
                (stop, stop_zone, beach, beach_zone),
            )
            conn.execute(
                "INSERT INTO camera_latest_status VALUES (%s, 'cam1', now(), 'online', 10, 40, 0, ''),"
                " (%s, 'cam1', now() - interval '1 hour', 'offline', 0, 0, 0, 'no stream')",
                (stop, beach),
            )
            conn.execute(
                "INSERT INTO alerts (alert_key, site_id, zone_id, rule_id, severity, state, value,"
                " threshold, started_at, summary_zh, summary_en) VALUES"
                " (%s, %s, %s, 'stop-crowded', 'warning', 'firing', 0.9, 0.85, %s, '拥挤', 'crowded')",
                (f"{stop}/{stop_zone}/stop-crowded", stop, stop_zone, now - timedelta(minutes=10)),
            )
        yield District(url, CONFIG, stop, stop_zone, beach, beach_zone, line_site, timescale, now)
    finally:
        pg_server.drop_database(url)


def _run(
    district: District, target: SqlTarget, span: timedelta, site: str
) -> tuple[list[str], list[tuple[Any, ...]]]:
    sql = macros.expand(
        target.sql,
        district.now - span,
        district.now + timedelta(minutes=1),
        {"site": site, "ref_day": REF_DAY.isoformat()},
    )
    with psycopg.connect(district.url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(sql)
        assert cur.description is not None
        return [c.name for c in cur.description], cur.fetchall()


def _all_targets() -> list[tuple[str, Dashboard, Panel, SqlTarget]]:
    return [
        (f"{d.uid}:{p.title}:{t.ref_id}", d, p, t)
        for d in all_dashboards(CONFIG)
        for p, t in d.targets()
    ]


@pytest.mark.parametrize("span", SPANS, ids=["6h", "3d", "30d"])
@pytest.mark.parametrize(
    ("name", "dashboard", "panel", "target"), _all_targets(), ids=[a[0] for a in _all_targets()]
)
def test_every_panel_query_returns_the_columns_it_needs(
    district: District,
    span: timedelta,
    name: str,
    dashboard: Dashboard,
    panel: Panel,
    target: SqlTarget,
) -> None:
    columns, rows = _run(district, target, span, district.stop)
    assert set(target.columns) <= set(columns), f"{name}: got {columns}"
    if target.format == "time_series":
        assert columns[0] == "time"
    assert rows, f"{name} returned no rows over {span}"


def test_variables_list_sites_and_reference_days(district: District) -> None:
    for dashboard in all_dashboards(CONFIG):
        for variable in dashboard.variables:
            sql = macros.expand(variable.sql, district.now - timedelta(hours=1), district.now, {})
            with psycopg.connect(district.url, autocommit=True) as conn:
                rows = conn.execute(sql).fetchall()
            values = [r[0] for r in rows]
            if variable.name == "site":
                assert sorted(values) == sorted(s.id for s in CONFIG.sites)
            else:
                with psycopg.connect(district.url, autocommit=True) as conn:
                    expected = conn.execute(
                        "SELECT DISTINCT to_char((ts AT TIME ZONE %s)::date, 'YYYY-MM-DD')"
                        " FROM zone_counts WHERE (ts AT TIME ZONE %s)::date"
                        " < (now() AT TIME ZONE %s)::date ORDER BY 1 DESC",
                        (CONFIG.district.timezone,) * 3,
                    ).fetchall()
                assert values == [r[0] for r in expected] and REF_DAY.isoformat() in values


def _target(dashboard_uid: str, title_part: str, ref_id: str = "A") -> SqlTarget:
    for d in all_dashboards(CONFIG):
        for p, t in d.targets():
            if d.uid == dashboard_uid and title_part in p.title and t.ref_id == ref_id:
                return t
    raise AssertionError(f"no panel {title_part!r} in {dashboard_uid}")


def test_a_line_by_class_has_its_flow_but_is_not_summed_into_the_sites_crossings(
    district: District,
) -> None:
    # The example tunnel exit counts buses on a line of their own beside the all-vehicle line.
    site, every, buses = "road-tunnel-exit", "exit-line", "exit-line-bus"
    with psycopg.connect(district.url, autocommit=True) as conn:
        insert_lines(
            conn,
            [
                LineRow(district.now - timedelta(minutes=m), site, line, n, 0)
                for m in range(1, 4)
                for line, n in ((every, 10), (buses, 1))
            ],
        )
        refresh_rollups(conn)
    columns, rows = _run(district, _target("crowdwatch-site", "Line crossings"), SPAN_6H, site)
    assert sum(r[columns.index("crossings_in")] for r in rows) == 30  # the buses not twice
    columns, rows = _run(district, _target("crowdwatch-site", "Flow per lane"), SPAN_6H, site)
    flows = {r[columns.index("metric")]: r[columns.index("value")] for r in rows}
    # One minute's crossings over 3 lanes: 10 and 1 vehicles a minute, per hour per lane.
    assert flows == {every: pytest.approx(200.0), buses: pytest.approx(20.0)}


def test_map_and_queues_show_the_latest_counts(district: District) -> None:
    columns, rows = _run(
        district, _target("crowdwatch-wall", "District map"), timedelta(hours=6), ""
    )
    by_site = {r[columns.index("site_id")]: dict(zip(columns, r, strict=True)) for r in rows}
    stop_capacity = next(s.capacity for s in CONFIG.sites if s.id == district.stop)
    assert by_site[district.stop]["people"] == 40
    assert by_site[district.stop]["occupancy"] == pytest.approx(40 / stop_capacity)
    assert by_site[district.beach]["people"] == 90
    quiet = [s for s in by_site.values() if s["site_id"] not in (district.stop, district.beach)]
    assert all(s["people"] is None and s["occupancy"] is None for s in quiet)

    columns, rows = _run(
        district, _target("crowdwatch-wall", "Bus-stop queues"), timedelta(hours=6), ""
    )
    stop = next(dict(zip(columns, r, strict=True)) for r in rows if r[0] == district.stop)
    # Live 40 against 30 a few minutes ago: up.
    assert (stop["waiting"], stop["longest_wait_s"], stop["trend"]) == (40, 300.0, "↑")


def test_reference_series_overlays_the_reference_day_on_todays_axis(district: District) -> None:
    target_now = _target("crowdwatch-site", "now vs", "A")
    target_ref = _target("crowdwatch-site", "now vs", "B")
    _, now_rows = _run(district, target_now, SPAN_6H, district.stop)
    _, ref_rows = _run(district, target_ref, SPAN_6H, district.stop)
    assert {r[1] for r in now_rows} == {30.0}
    assert {r[1] for r in ref_rows} == {60.0}
    # Same minutes of the day: the reference points land on today's buckets.
    assert [r[0] for r in ref_rows] == [r[0] for r in now_rows]


@pytest.mark.parametrize(
    ("span", "step"),
    [(timedelta(hours=6), timedelta(minutes=1)), (timedelta(days=30), timedelta(hours=1))],
)
def test_the_rollup_follows_the_time_range(
    district: District, span: timedelta, step: timedelta
) -> None:
    _, rows = _run(district, _target("crowdwatch-wall", "People in the district"), span, "")
    times = [r[0] for r in rows]
    assert times and all(t.timestamp() % step.total_seconds() == 0 for t in times)
    if step == timedelta(minutes=1):
        assert len(times) == 24  # one bucket per 5-minute row, none from the other rollups


@pytest.mark.parametrize(
    ("span", "read"),
    [(timedelta(hours=6), "1m"), (timedelta(days=3), "15m"), (timedelta(days=30), "1h")],
)
def test_only_the_rollup_of_the_range_is_read(
    district: District, span: timedelta, read: str
) -> None:
    """The range conditions are constants once Grafana has expanded the macros: PostgreSQL
    prunes the other two branches at plan time, so a wall refresh reads one rollup."""
    target = _target("crowdwatch-wall", "People in the district", "B")
    sql = macros.expand(
        target.sql, district.now - span, district.now, {"ref_day": REF_DAY.isoformat()}
    )
    with psycopg.connect(district.url, autocommit=True) as conn:
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN (COSTS OFF) " + sql))
        # On TimescaleDB the site rollups are views over continuous aggregates: the plan
        # names their materialised hypertables, so read those back to rollup names.
        stored = {f"site_counts_{s}": [rf"\bsite_counts_{s}\b"] for s in ("1m", "15m", "1h")}
        if district.timescale:
            for view, table in conn.execute(
                "SELECT view_name, materialization_hypertable_name"
                " FROM timescaledb_information.continuous_aggregates"
                " WHERE view_name LIKE 'zone_counts_%'"
            ).fetchall():
                stored[f"site_counts_{view.removeprefix('zone_counts_')}"] = [rf"\b{table}\b"]
    read_tables = {
        name.removeprefix("site_counts_")
        for name, patterns in stored.items()
        if any(re.search(p, plan) for p in patterns)
    }
    assert read_tables == {read}, plan
