"""Schema migrations, daily partitions and the site registry, on the real PostgreSQL."""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from factories import config_dict, make_config, site_dict
from psycopg import sql
from psycopg.conninfo import make_conninfo

from crowdwatch.contracts.config import RetentionConfig, load_config
from crowdwatch.contracts.db_schema import TIME_SERIES_TABLES, migrations
from crowdwatch.contracts.errors import StorageError
from crowdwatch.devservices.postgres import PgServer, PostgresCluster, timescaledb_installed
from crowdwatch.storage.migrate import (
    recorded_mode,
    timescale_available,
    timescale_support,
    upgrade,
)
from crowdwatch.storage.partitions import (
    drop_partitions_before,
    ensure_daily_partitions,
    partition_name,
)
from crowdwatch.storage.rollups import refresh_rollups

EXAMPLE_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "district.example.yaml"
LATEST = max(m.version for m in migrations(timescale=False))


def _partitions(conn: psycopg.Connection, table: str) -> set[str]:
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = to_regclass(%s)",
        (table,),
    ).fetchall()
    return {str(r[0]) for r in rows}


def _insert_count(conn: psycopg.Connection, ts: datetime, message_id: str) -> None:
    conn.execute(
        "INSERT INTO zone_counts (ts, site_id, camera_id, zone_id, count, count_max,"
        " count_mean, interval_s, message_id) VALUES (%s, 's', 'c', 'z', 1, 1, 1, 5, %s)",
        (ts, message_id),
    )


def test_upgrade_applies_once_and_is_idempotent(db_url: str) -> None:
    assert upgrade(db_url) == LATEST
    assert upgrade(db_url) == LATEST
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT version, timescale FROM schema_migrations").fetchall()
        available = timescale_available(conn)
    assert rows == [(m.version, available) for m in migrations(available)]


def test_concurrent_upgrades_serialise_on_the_lock(db_url: str) -> None:
    results: list[int | Exception] = []

    def run() -> None:
        try:
            results.append(upgrade(db_url, timescale=False))
        except StorageError as exc:  # pragma: no cover - reported by the assert below
            results.append(exc)

    workers = [threading.Thread(target=run) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert results == [LATEST] * 3


def test_plain_upgrade_creates_partitions_from_yesterday_to_a_week_ahead(db_url: str) -> None:
    upgrade(db_url, timescale=False)
    today = datetime.now(UTC).date()
    with psycopg.connect(db_url) as conn:
        for table in TIME_SERIES_TABLES:
            names = _partitions(conn, table)
            expected = {partition_name(table, today + timedelta(days=d)) for d in range(-1, 8)}
            assert names == expected | {f"{table}_default"}


def test_a_migrated_database_keeps_its_mode(db_url: str) -> None:
    upgrade(db_url, timescale=False)
    # Asking for TimescaleDB later changes nothing: the recorded mode wins.
    assert upgrade(db_url, timescale=True) == LATEST
    with psycopg.connect(db_url) as conn:
        modes = conn.execute("SELECT DISTINCT timescale FROM schema_migrations").fetchall()
    assert modes == [(False,)]


def test_timescale_requested_on_a_server_without_it_fails_clearly(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        if timescale_available(conn):
            pytest.skip("this server offers TimescaleDB")
    with pytest.raises(StorageError, match="timescaledb extension"):
        upgrade(db_url, timescale=True)


def test_any_login_sees_what_the_server_offers_of_timescaledb(
    pg_server: PgServer, db_url: str
) -> None:
    """``shared_preload_libraries`` is for superusers' eyes only; the check must not need it."""
    name = f"cw_plain_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server.admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
        try:
            as_admin = timescale_support(admin)
            with psycopg.connect(make_conninfo(db_url, user=name), autocommit=True) as conn:
                as_login = timescale_support(conn)
        finally:
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))
    assert as_login == as_admin


def _timescaledb_bindir(pg_server: PgServer) -> Path:
    """The bin folder of our own test server when it has TimescaleDB installed, else skip."""
    cluster = pg_server.cluster
    if cluster is None or not timescaledb_installed(cluster.bindir):
        pytest.skip(
            "needs the test suite's own PostgreSQL with TimescaleDB installed "
            "(CROWDWATCH_PG_BINDIR)"
        )
    return cluster.bindir


def test_a_test_cluster_preloads_timescaledb_where_it_is_installed(pg_server: PgServer) -> None:
    _timescaledb_bindir(pg_server)
    with psycopg.connect(pg_server.admin_url) as conn:
        assert timescale_available(conn)


@pytest.fixture(scope="module")
def not_preloaded(pg_server: PgServer) -> Iterator[PgServer]:
    """A second server of the same PostgreSQL, with TimescaleDB installed but not preloaded."""
    cluster = PostgresCluster(_timescaledb_bindir(pg_server), preload_timescaledb=False)
    try:
        cluster.start()
        yield PgServer(cluster.url("postgres"), cluster)
    finally:
        cluster.stop()


def test_installed_but_not_preloaded_takes_the_plain_path_and_says_why(
    not_preloaded: PgServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = not_preloaded.create_database()
    with psycopg.connect(url, autocommit=True) as conn:
        offered = conn.execute(
            "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"
        ).fetchone()
    with caplog.at_level(logging.WARNING, logger="crowdwatch.storage.migrate"):
        assert upgrade(url, make_config()) == LATEST
    with psycopg.connect(url, autocommit=True) as conn:
        _insert_count(conn, datetime.now(UTC), "m-1")
        assert recorded_mode(conn) is False
    assert offered == (1,)
    assert "add it to shared_preload_libraries" in caplog.text
    with pytest.raises(StorageError, match="installed but not preloaded"):
        upgrade(not_preloaded.create_database(), timescale=True)


def test_unreachable_database_raises_storage_error() -> None:
    with pytest.raises(StorageError, match="cannot connect"):
        upgrade("postgresql://nobody@127.0.0.1:1/nowhere?connect_timeout=1")


def test_rows_in_default_move_into_a_new_partition(db_url: str) -> None:
    upgrade(db_url, timescale=False)
    far = date(2031, 3, 14)
    in_day = datetime(2031, 3, 14, 23, 59, tzinfo=UTC)
    next_day = datetime(2031, 3, 15, 0, 0, tzinfo=UTC)
    with psycopg.connect(db_url, autocommit=True) as conn:
        _insert_count(conn, in_day, "m-in-day")
        _insert_count(conn, next_day, "m-next-day")

        created = ensure_daily_partitions(conn, far, 1)

        assert created == [partition_name(t, far) for t in TIME_SERIES_TABLES]
        in_partition = conn.execute("SELECT message_id FROM zone_counts_20310314").fetchall()
        in_default = conn.execute("SELECT message_id FROM zone_counts_default").fetchall()
        assert in_partition == [("m-in-day",)]
        assert in_default == [("m-next-day",)]
        assert ensure_daily_partitions(conn, far, 1) == []


def test_drop_partitions_before_keeps_the_day_and_default(db_url: str) -> None:
    upgrade(db_url, timescale=False)
    today = datetime.now(UTC).date()
    with psycopg.connect(db_url, autocommit=True) as conn:
        _insert_count(conn, datetime.now(UTC) - timedelta(days=1), "m-yesterday")

        dropped = drop_partitions_before(conn, today)

        assert sorted(dropped) == sorted(
            partition_name(t, today - timedelta(days=1)) for t in TIME_SERIES_TABLES
        )
        assert partition_name("zone_counts", today) in _partitions(conn, "zone_counts")
        assert "zone_counts_default" in _partitions(conn, "zone_counts")
        assert conn.execute("SELECT count(*) FROM zone_counts").fetchone() == (0,)


def _registry(url: str) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    with psycopg.connect(url) as conn:
        sites = conn.execute("SELECT site_id, capacity FROM sites ORDER BY site_id").fetchall()
        zones = conn.execute(
            "SELECT site_id, camera_id, zone_id, capacity FROM zones ORDER BY site_id, zone_id"
        ).fetchall()
    return sites, zones


def test_sites_and_zones_follow_the_config(db_url: str) -> None:
    upgrade(db_url, make_config(config_dict(site_dict("stop-a"), site_dict("stop-b"))))
    assert _registry(db_url) == (
        [("stop-a", 50), ("stop-b", 50)],
        [("stop-a", "cam1", "platform", 50), ("stop-b", "cam1", "platform", 50)],
    )

    upgrade(db_url, make_config(config_dict(site_dict("stop-b", capacity=70))))

    assert _registry(db_url) == ([("stop-b", 70)], [("stop-b", "cam1", "platform", 70)])


def test_the_example_district_syncs(db_url: str) -> None:
    config = load_config(EXAMPLE_CONFIG)
    upgrade(db_url, config)
    sites, zones = _registry(db_url)
    assert [s[0] for s in sites] == sorted(s.id for s in config.sites)
    assert len(zones) == sum(len(cam.zones) for _, cam in config.cameras())


def _columns(conn: psycopg.Connection, table: str) -> set[str]:
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s", (table,)
    ).fetchall()
    return {str(r[0]) for r in rows}


def test_a_version_1_database_upgrades_in_place(db_url: str) -> None:
    first = migrations(timescale=False)[0]
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now(), timescale boolean NOT NULL)"
        )
        conn.execute(first.common_sql)
        conn.execute(first.plain_sql)
        conn.execute(
            "INSERT INTO schema_migrations (version, name, timescale) VALUES (1, %s, false)",
            (first.name,),
        )
        _insert_count(conn, datetime(2026, 10, 1, 8, tzinfo=UTC), "m-before-v2")

    assert upgrade(db_url) == LATEST

    wait_columns = {"longest_wait_s", "median_wait_s", "density_per_m2"}
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert wait_columns <= _columns(conn, "zone_counts")
        assert wait_columns <= _columns(conn, "zone_latest")
        assert conn.execute("SELECT message_id, median_wait_s FROM zone_counts").fetchall() == [
            ("m-before-v2", None)
        ]
        for suffix in ("1m", "15m", "1h"):
            for relation in ("zone_counts", "line_counts", "site_counts"):
                name = f"{relation}_{suffix}"
                assert conn.execute("SELECT to_regclass(%s)", (name,)).fetchone() == (name,)
        # New raw rows are logged for the rollup refresher.
        _insert_count(conn, datetime(2026, 10, 1, 8, 0, 30, tzinfo=UTC), "m-after-v3")
        logged = conn.execute("SELECT source, bucket FROM rollup_invalidations").fetchall()
    assert logged == [("zone_counts", datetime(2026, 10, 1, 8, 0, tzinfo=UTC))]


def test_timescale_migrations_use_the_same_relations_as_plain() -> None:
    # Without TimescaleDB on the test server this is all that is checked of its SQL: its
    # relation names must match the plain path's, since the queries read both alike.
    plain = "\n".join(m.plain_sql for m in migrations(timescale=False))
    timescale = "\n".join(m.timescale_sql for m in migrations(timescale=True))
    for suffix in ("1m", "15m", "1h"):
        for relation in ("zone_counts", "line_counts"):
            assert f"CREATE TABLE {relation}_{suffix} " in plain
            assert f"CREATE MATERIALIZED VIEW {relation}_{suffix}\n" in timescale
        # Sites: a table refreshed with the zones (plain), a view over the aggregates.
        assert f"CREATE TABLE site_counts_{suffix} (" in plain
        assert f"CREATE VIEW site_counts_{suffix} AS" in timescale


def _apply_up_to(conn: psycopg.Connection, version: int, *, timescale: bool = False) -> None:
    """Migrate a fresh database by hand to ``version``, as an older release did."""
    conn.execute(
        "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now(), timescale boolean NOT NULL)"
    )
    for migration in migrations(timescale=timescale)[:version]:
        for statement in (
            migration.common_sql,
            migration.timescale_sql if timescale else migration.plain_sql,
        ):
            if statement.strip():
                conn.execute(statement)
        conn.execute(
            "INSERT INTO schema_migrations (version, name, timescale) VALUES (%s, %s, %s)",
            (migration.version, migration.name, timescale),
        )


def _method_checks(conn: psycopg.Connection) -> dict[str, str]:
    """CHECK constraints that name ``method``, by the table (or partition) they are on."""
    rows = conn.execute(
        "SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE contype = 'c' AND pg_get_constraintdef(oid) LIKE '%method%'"
    ).fetchall()
    return {str(table): str(definition) for table, definition in rows}


def test_a_version_4_database_gets_the_method_and_old_rows_keep_null(db_url: str) -> None:
    at = datetime(2026, 10, 1, 8, tzinfo=UTC)
    with psycopg.connect(db_url, autocommit=True) as conn:
        _apply_up_to(conn, 4)
        assert "method" not in _columns(conn, "zone_counts")
        _insert_count(conn, at, "m-before-v5")
        conn.execute(
            "INSERT INTO zone_latest (site_id, zone_id, camera_id, ts, count, count_max,"
            " count_mean) VALUES ('s', 'z', 'c', %s, 1, 1, 1)",
            (at,),
        )

    assert upgrade(db_url) == LATEST

    with psycopg.connect(db_url, autocommit=True) as conn:
        # Counted before the method was recorded: NULL, not a guess.
        assert conn.execute("SELECT message_id, method FROM zone_counts").fetchall() == [
            ("m-before-v5", None)
        ]
        assert conn.execute("SELECT zone_id, method FROM zone_latest").fetchall() == [("z", None)]
        # The parent's column and CHECK reached the partition the old row is in.
        assert "method" in _columns(conn, "zone_counts_default")
        checks = _method_checks(conn)
        assert "zone_counts_default" in checks
        assert {"zone_counts", "zone_latest"} <= set(checks)
        conn.execute(
            "INSERT INTO zone_counts (ts, site_id, camera_id, zone_id, count, count_max,"
            " count_mean, interval_s, message_id, method)"
            " VALUES (%s, 's', 'c', 'z', 1, 1, 1, 5, 'm-after-v5', 'dense')",
            (at + timedelta(seconds=5),),
        )
        assert conn.execute(
            "SELECT message_id, method FROM zone_counts ORDER BY ts"
        ).fetchall() == [("m-before-v5", None), ("m-after-v5", "dense")]


_METHOD_INSERTS = {
    "zone_counts": "INSERT INTO zone_counts (ts, site_id, camera_id, zone_id, count, count_max,"
    " count_mean, interval_s, message_id, method)"
    " VALUES (%(ts)s, 's', 'c', %(zone)s, 1, 1, 1, 5, %(zone)s, %(method)s)",
    "zone_latest": "INSERT INTO zone_latest (ts, site_id, camera_id, zone_id, count, count_max,"
    " count_mean, method) VALUES (%(ts)s, 's', 'c', %(zone)s, 1, 1, 1, %(method)s)",
}


@pytest.mark.parametrize("table", sorted(_METHOD_INSERTS))
def test_a_fresh_database_takes_detect_dense_or_null_as_the_method(db_url: str, table: str) -> None:
    upgrade(db_url, timescale=False)
    at = datetime(2026, 10, 1, 8, tzinfo=UTC)
    with psycopg.connect(db_url, autocommit=True) as conn:
        for zone, method in (("a", "detect"), ("b", "dense"), ("c", None)):
            conn.execute(_METHOD_INSERTS[table], {"ts": at, "zone": zone, "method": method})
        with pytest.raises(psycopg.errors.CheckViolation, match=f"{table}_method_check"):
            conn.execute(_METHOD_INSERTS[table], {"ts": at, "zone": "d", "method": "guess"})
        stored = conn.execute(f"SELECT zone_id, method FROM {table} ORDER BY zone_id").fetchall()
    assert stored == [("a", "detect"), ("b", "dense"), ("c", None)]


def test_timescale_adds_the_method_as_a_bare_nullable_column() -> None:
    # Also on a server without TimescaleDB.  A compressed hypertable takes a nullable column without a
    # default; TimescaleDB before timescale/timescaledb#7864 refuses any constraint there,
    # and common_sql (run on both paths) must leave the hypertable alone.
    v5 = next(m for m in migrations(timescale=True) if m.version == 5)
    assert "ADD COLUMN method text;" in v5.timescale_sql
    for word in ("CHECK", "CONSTRAINT", "DEFAULT", "NOT NULL"):
        assert word not in v5.timescale_sql
    assert "zone_counts" not in v5.common_sql


# Found by name: a migration merged beside it may take its number.
HELD_COUNTS = next(m.version for m in migrations(timescale=False) if "held back" in m.name)


def test_a_database_before_held_counts_gets_the_flag_columns_and_old_rows_keep_null(
    db_url: str,
) -> None:
    at = datetime(2026, 10, 1, 8, tzinfo=UTC)
    with psycopg.connect(db_url, autocommit=True) as conn:
        _apply_up_to(conn, HELD_COUNTS - 1)
        assert "count_flag" not in _columns(conn, "zone_counts")
        _insert_count(conn, at, "m-before-flags")
        conn.execute(
            "INSERT INTO zone_latest (site_id, zone_id, camera_id, ts, count, count_max,"
            " count_mean) VALUES ('s', 'z', 'c', %s, 1, 1, 1)",
            (at,),
        )

    assert upgrade(db_url) == LATEST

    flags = "SELECT zone_id, count, count_flag, flagged_count FROM {} ORDER BY ts"
    with psycopg.connect(db_url, autocommit=True) as conn:
        # Counted before flags were stored: nothing flagged, not a guess.
        assert conn.execute(flags.format("zone_counts")).fetchall() == [("z", 1, None, None)]
        assert conn.execute(flags.format("zone_latest")).fetchall() == [("z", 1, None, None)]
        assert {"count_flag", "flagged_count"} <= _columns(conn, "zone_counts_default")
        conn.execute(
            "INSERT INTO zone_counts (ts, site_id, camera_id, zone_id, count, count_max,"
            " count_mean, interval_s, message_id, count_flag, flagged_count)"
            " VALUES (%s, 's', 'c', 'z', 1, 1, 1, 5, 'm-after-flags', 'implausible: x', 900)",
            (at + timedelta(seconds=5),),
        )
        assert conn.execute(flags.format("zone_counts")).fetchall() == [
            ("z", 1, None, None),
            ("z", 1, "implausible: x", 900),
        ]


def test_timescale_adds_the_flag_as_bare_nullable_columns_one_per_statement() -> None:
    # The same statements on both paths: a compressed hypertable takes a nullable column without
    # a default or constraint (see the method above).
    held = next(m for m in migrations(timescale=True) if m.version == HELD_COUNTS)
    assert held.timescale_sql == held.plain_sql == ""
    for word in ("CHECK", "CONSTRAINT", "DEFAULT", "NOT NULL"):
        assert word not in held.common_sql
    statements = [s.strip() for s in held.common_sql.split(";") if s.strip()]
    assert statements == [
        f"ALTER TABLE {table} ADD COLUMN {column}"
        for table in ("zone_counts", "zone_latest")
        for column in ("count_flag text", "flagged_count integer")
    ]


def test_a_version_5_database_cuts_its_dead_letters_to_a_prefix_with_size_and_digest(
    db_url: str,
) -> None:
    big, small = bytes(range(256)) * 100, b"{nope"
    with psycopg.connect(db_url, autocommit=True) as conn:
        _apply_up_to(conn, 5)
        for payload in (big, small):
            conn.execute(
                "INSERT INTO dead_letters (topic, payload, reason) VALUES ('t', %s, 'r')",
                (payload,),
            )

    assert upgrade(db_url) == LATEST

    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT payload, payload_bytes, payload_sha256 FROM dead_letters ORDER BY id"
        ).fetchall()
        assert [(bytes(p), n, h) for p, n, h in rows] == [
            (big[:8192], len(big), hashlib.sha256(big).hexdigest()),
            (small, len(small), hashlib.sha256(small).hexdigest()),
        ]
        # The bound holds for every writer, not only the ingest.
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                "INSERT INTO dead_letters (topic, payload, payload_bytes, payload_sha256, reason)"
                " VALUES ('t', %s, 9000, 'x', 'r')",
                (b"x" * 9000,),
            )


def test_a_version_5_timescale_database_keeps_its_rollups_and_breaks_ties_after_7(
    db_url: str, timescale_problem: str
) -> None:
    """Migration 7 rebuilds the zone aggregates: buckets whose raw rows are gone are carried
    over as they were; the others are recomputed with the message-id tie-break."""
    if timescale_problem:
        pytest.skip(timescale_problem)
    old_day = datetime(2026, 9, 1, 8, tzinfo=UTC)
    tie = datetime(2026, 10, 1, 8, 0, 5, tzinfo=UTC)
    with psycopg.connect(db_url, autocommit=True) as conn:
        _apply_up_to(conn, 5, timescale=True)
        _insert_count(conn, old_day, "m-old")
        # Same ts: the plain path keeps the larger message id's count; written first here.
        conn.execute(
            "INSERT INTO zone_counts (ts, site_id, camera_id, zone_id, count, count_max,"
            " count_mean, interval_s, message_id) VALUES"
            " (%s, 's', 'c', 'z', 2, 2, 2, 5, 'm-a'), (%s, 's', 'c', 'z', 1, 1, 1, 5, 'm-b')",
            (tie, tie),
        )
        for suffix in ("1m", "15m", "1h"):
            conn.execute(
                f"CALL refresh_continuous_aggregate('zone_counts_{suffix}', NULL, '2026-10-02')"
            )
        # Raw retention (30 days on 2 October) dropped the old row's day; its buckets stay.
        conn.execute("SELECT drop_chunks('zone_counts', older_than => TIMESTAMPTZ '2026-09-02Z')")
        before = {
            suffix: conn.execute(
                f"SELECT bucket, count_last FROM zone_counts_{suffix} ORDER BY bucket"
            ).fetchall()
            for suffix in ("1m", "15m", "1h")
        }

        assert upgrade(db_url) == LATEST
        refresh_rollups(
            conn, retention=RetentionConfig(raw_days=30), now=datetime(2026, 10, 2, tzinfo=UTC)
        )
        after = {
            suffix: conn.execute(
                f"SELECT bucket, count_last FROM zone_counts_{suffix} ORDER BY bucket"
            ).fetchall()
            for suffix in ("1m", "15m", "1h")
        }
        sites = conn.execute("SELECT count(*) FROM site_counts_1h").fetchone()
    assert [row[0] for row in before["1h"]] == [old_day, tie.replace(second=0)]
    for suffix, rows in after.items():
        assert rows[0] == before[suffix][0], suffix  # carried over, raw rows long gone
        assert rows[1][1] == 1, suffix  # m-b's count: the larger message id
    assert sites == (2,)
