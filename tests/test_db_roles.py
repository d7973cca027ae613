"""Least-privilege roles on the real PostgreSQL: ingest writes, web reads, alerts write alerts.

Every test gets a fresh database and its own role prefix (roles are per server), with login
users made by ``setup_roles`` from the per-process URLs, as ``crowdwatch db roles`` does.  A
refused statement must fail with PostgreSQL's InsufficientPrivilege and leave the data as it
was.  The test server trusts local logins, so passwords are checked through their stored
SCRAM verifiers rather than by logging in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml
from factories import config_dict, count_message, make_config, site_dict
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from services import PgServer
from services.components import ingest_running
from services.waiting import wait_until

from crowdwatch.analytics.actions import acknowledge, alert_history, escalate
from crowdwatch.analytics.dispatch_actions import (
    Decision,
    decide,
    dispatch_records,
    store_advice,
)
from crowdwatch.analytics.engine import AlertEngine
from crowdwatch.analytics.silences import add_silence
from crowdwatch.cli import main
from crowdwatch.contracts.config import CrowdwatchConfig, DatabaseConfig, MqttConfig, parse_config
from crowdwatch.contracts.db_schema import TIME_SERIES_TABLES
from crowdwatch.contracts.errors import ConfigError, StorageError
from crowdwatch.contracts.messages import (
    CameraState,
    CountMessage,
    CountMethod,
    StatusMessage,
    TopicKind,
    camera_topic,
    encode,
)
from crowdwatch.contracts.notification import DispatchAdvice
from crowdwatch.dashboards.snapshot import read_snapshot
from crowdwatch.dashboards.web import run_web
from crowdwatch.ingest import run_ingest
from crowdwatch.ingest.validate import Accepted, Envelope, Rejected
from crowdwatch.ingest.writer import BatchWriter
from crowdwatch.mqtt.client import MqttClient
from crowdwatch.storage.maintenance import Maintenance
from crowdwatch.storage.migrate import LATEST_VERSION, require_schema, upgrade
from crowdwatch.storage.partitions import partition_name
from crowdwatch.storage.queries import latest_zone_counts, site_series, zone_series
from crowdwatch.storage.roles import PROCESSES, group_role, setup_roles
from crowdwatch.storage.rollups import refresh_rollups

TIMEOUT_S = 15.0
# Quotes, a backslash and SQL in the passwords: they must reach the server as data only.
PASSWORDS = {
    "ingest": "in'gest\\pw; DROP TABLE zone_counts; --",
    "web": 'web "pw" $$ 1',
    "alerts": "alerts-pw-ü",
}
ENV_NAMES = [f"CROWDWATCH_{p.upper()}_DATABASE_URL" for p in PROCESSES] + [
    "CROWDWATCH_DATABASE_URL"
]


@dataclass(frozen=True)
class Roles:
    owner: str
    ingest: str
    web: str
    alerts: str
    prefix: str
    config: CrowdwatchConfig
    timescale: bool

    def login(self, process: str) -> str:
        return f"{self.prefix}_{process}_login"


def _role_url(db_url: str, user: str, password: str) -> str:
    return make_conninfo(db_url, user=user, password=password)


def _config(db_url: str, prefix: str, mqtt: MqttConfig | None = None) -> CrowdwatchConfig:
    database: dict[str, Any] = {"url": db_url, "roles_prefix": prefix}
    for process in PROCESSES:
        user = f"{prefix}_{process}_login"
        database[f"{process}_url"] = _role_url(db_url, user, PASSWORDS[process])
    overrides: dict[str, Any] = {"database": database}
    if mqtt is not None:
        overrides["mqtt"] = mqtt.model_dump()
    return make_config(config_dict(site_dict("stop-a")), **overrides)


def _drop_roles(db_url: str, prefix: str) -> None:
    """Remove this test's roles: their sessions, their privileges here, then the roles."""
    names = [f"{prefix}_{p}_login" for p in PROCESSES] + [group_role(prefix, p) for p in PROCESSES]
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = ANY(%s)",
            (names,),
        )
        present = [
            str(r[0])
            for r in conn.execute(
                "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (names,)
            ).fetchall()
        ]
        if present:
            idents = sql.SQL(", ").join(sql.Identifier(n) for n in present)
            conn.execute(sql.SQL("DROP OWNED BY {}").format(idents))
            conn.execute(sql.SQL("DROP ROLE {}").format(idents))


@pytest.fixture
def prefix(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    name = f"cwt{uuid.uuid4().hex[:10]}"
    try:
        yield name
    finally:
        _drop_roles(db_url, name)


def _setup(db_url: str, prefix: str, timescale: bool) -> Roles:
    config = _config(db_url, prefix)
    upgrade(db_url, config, timescale=timescale)
    with psycopg.connect(db_url, autocommit=True) as conn:
        setup_roles(conn, config.database)
    return Roles(
        owner=db_url,
        ingest=config.database.url_for("ingest"),
        web=config.database.url_for("web"),
        alerts=config.database.url_for("alerts"),
        prefix=prefix,
        config=config,
        timescale=timescale,
    )


@pytest.fixture
def roles(db_url: str, prefix: str, timescale: bool) -> Roles:
    """The roles set up on a database of each storage path in turn."""
    return _setup(db_url, prefix, timescale)


@pytest.fixture
def plain_roles(db_url: str, prefix: str) -> Roles:
    """Plain PostgreSQL only: for tests that name its day partitions or its rollup log."""
    return _setup(db_url, prefix, timescale=False)


def _refusal(url: str, statement: str, params: tuple[Any, ...] | None = None) -> str:
    """The error class of ``statement`` run as ``url``'s user ("ok" when it ran)."""
    with psycopg.connect(url, autocommit=True) as conn:
        try:
            conn.execute(statement, params)
        except psycopg.Error as exc:
            return type(exc).__name__
    return "ok"


def _assert_refused(url: str, statements: list[tuple[str, tuple[Any, ...] | None]]) -> None:
    outcomes = {s: _refusal(url, s, p) for s, p in statements}
    assert outcomes == {s: "InsufficientPrivilege" for s, _ in statements}


def _rows(url: str, query: str, params: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


def _accepted(message: CountMessage | StatusMessage) -> Accepted:
    kind = TopicKind.COUNTS if isinstance(message, CountMessage) else TopicKind.STATUS
    topic = camera_topic("t", message.site_id, message.camera_id, kind)
    return Accepted(Envelope(topic, encode(message), datetime.now(UTC)), message)


def _ingest(url: str, *items: Accepted | Rejected) -> tuple[int, int]:
    writer = BatchWriter(url)
    try:
        result = writer.write(list(items))
    finally:
        writer.close()
    return result.rows_written, result.dead_letters


def _status(ts: datetime) -> StatusMessage:
    return StatusMessage(
        site_id="stop-a",
        camera_id="cam1",
        ts=ts,
        state=CameraState.ONLINE,
        fps=9.5,
        inference_ms=40.0,
        dropped_frames=0,
    )


def _verifies(stored: str, password: str) -> bool:
    """Whether a SCRAM-SHA-256 verifier (``pg_authid.rolpassword``) is for ``password``."""
    method, rest = stored.split("$", 1)
    iterations_salt, keys = rest.split("$")
    iterations, salt = iterations_salt.split(":")
    stored_key = keys.split(":")[0]
    salted = hashlib.pbkdf2_hmac(
        "sha256", password.encode(), base64.b64decode(salt), int(iterations)
    )
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    expected = base64.b64encode(hashlib.sha256(client_key).digest()).decode()
    return method == "SCRAM-SHA-256" and hmac.compare_digest(expected, stored_key)


# --- the roles themselves -----------------------------------------------------------------


def test_groups_cannot_log_in_and_each_login_is_in_its_group_only(roles: Roles) -> None:
    groups = [group_role(roles.prefix, p) for p in PROCESSES]
    with psycopg.connect(roles.owner, autocommit=True) as conn:
        can_login: dict[str, bool] = dict(
            conn.execute(
                "SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname = ANY(%s)", (groups,)
            ).fetchall()
        )
        membership = {
            (process, group): conn.execute(
                "SELECT pg_has_role(%s, %s, 'MEMBER')", (roles.login(process), group)
            ).fetchone()
            for process in PROCESSES
            for group in groups
        }
        stored: dict[str, str] = dict(
            conn.execute(
                "SELECT rolname, rolpassword FROM pg_authid WHERE rolname = ANY(%s)",
                ([roles.login(p) for p in PROCESSES],),
            ).fetchall()
        )
    assert can_login == dict.fromkeys(groups, False)
    assert membership == {
        (p, g): (g == group_role(roles.prefix, p),) for p in PROCESSES for g in groups
    }
    # Hashed by libpq before it left the client: the verifier is for the password of the URL.
    for process in PROCESSES:
        verifier = stored[roles.login(process)]
        assert PASSWORDS[process] not in verifier
        assert _verifies(verifier, PASSWORDS[process])
        assert not _verifies(verifier, PASSWORDS[process] + "x")


def _grants(url: str, prefix: str) -> list[tuple[Any, ...]]:
    return _rows(
        url,
        "SELECT grantee, table_name, privilege_type FROM information_schema.role_table_grants"
        " WHERE grantee LIKE %s ORDER BY 1, 2, 3",
        (f"{prefix}\\_%",),
    )


def test_every_process_user_passes_the_schema_check(roles: Roles) -> None:
    """What ingest, web and alerts check at start, as their own users (no superuser)."""
    assert [require_schema(url) for url in (roles.ingest, roles.web, roles.alerts)] == [
        LATEST_VERSION
    ] * 3


def test_setting_up_again_changes_nothing_and_restores_a_revoked_grant(roles: Roles) -> None:
    before = _grants(roles.owner, roles.prefix)
    web = group_role(roles.prefix, "web")
    with psycopg.connect(roles.owner, autocommit=True) as conn:
        conn.execute(sql.SQL("REVOKE SELECT ON zone_latest FROM {}").format(sql.Identifier(web)))
        conn.execute(sql.SQL("GRANT DELETE ON zone_counts TO {}").format(sql.Identifier(web)))
        report = setup_roles(conn, roles.config.database)

    assert report.groups_created == []
    assert report.logins == [(roles.login(p), group_role(roles.prefix, p)) for p in PROCESSES]
    assert _grants(roles.owner, roles.prefix) == before
    assert (web, "zone_latest", "SELECT") in before


def test_a_process_url_naming_the_owner_or_no_password_is_refused(db_url: str, prefix: str) -> None:
    upgrade(db_url, timescale=False)
    owner = conninfo_to_dict(db_url)["user"]
    as_owner = DatabaseConfig(url=db_url, roles_prefix=prefix, web_url=db_url)
    new_user = f"{prefix}_web_login"
    no_password = DatabaseConfig(
        url=db_url, roles_prefix=prefix, web_url=make_conninfo(db_url, user=new_user)
    )
    with psycopg.connect(db_url, autocommit=True) as conn:
        with pytest.raises(ConfigError, match=f"database.web_url: user {owner} is the owner"):
            setup_roles(conn, as_owner)
        with pytest.raises(ConfigError, match="does not exist and the URL has no password"):
            setup_roles(conn, no_password)
        # Refused before anything was created: the groups were rolled back too.
        assert conn.execute(
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE %s", (f"{prefix}\\_%",)
        ).fetchone() == (0,)


# --- web reads, and writes only the dispatcher's acknowledgement ------------------------------


def _stored_rollup(roles: Roles, rollup: str) -> str:
    """Where a rollup's rows are kept: its table, or its continuous aggregate's hypertable
    (TimescaleDB refuses any write to the aggregate itself, whoever asks)."""
    if not roles.timescale:
        return rollup
    [(schema, table)] = _rows(
        roles.owner,
        "SELECT materialization_hypertable_schema, materialization_hypertable_name"
        " FROM timescaledb_information.continuous_aggregates WHERE view_name = %s",
        (rollup,),
    )
    return f"{schema}.{table}"


def _seed_counts(roles: Roles, at: datetime) -> None:
    """Counts as ingest writes them (as the ingest user), rollups as the owner refreshes them."""
    messages = [
        count_message(count=n, ts=at - timedelta(minutes=2 - i)) for i, n in enumerate((5, 12, 45))
    ]
    assert _ingest(roles.ingest, *map(_accepted, messages)) == (3, 0)
    with psycopg.connect(roles.owner, autocommit=True) as conn:
        # TimescaleDB leaves the minute of ``at`` (the current one) to real-time aggregation.
        assert refresh_rollups(conn, now=at).minutes == (2 if roles.timescale else 3)
        assert conn.execute("SELECT count(*) FROM zone_counts_1m").fetchone() == (3,)


def test_web_role_cannot_write_counts(plain_roles: Roles) -> None:
    roles = plain_roles
    now = datetime.now(UTC)
    _seed_counts(roles, now)
    before = _rows(roles.owner, "SELECT ts, zone_id, count FROM zone_counts ORDER BY ts")
    today = partition_name("zone_counts", now.date())
    insert = (
        "INSERT INTO {} (ts, site_id, camera_id, zone_id, count, count_max, count_mean,"
        " interval_s, message_id) VALUES (%s, 'stop-a', 'cam1', 'platform', 1, 1, 1, 5, %s)"
    )

    _assert_refused(
        roles.web,
        [
            (insert.format("zone_counts"), (now, "m-web")),
            (insert.format(today), (now, "m-web-partition")),
            ("UPDATE zone_counts SET count = %s", (99,)),
            ("DELETE FROM zone_counts WHERE ts <= %s", (now,)),
            ("TRUNCATE zone_counts", None),
            (f"DELETE FROM {today} WHERE ts <= %s", (now,)),
            ("UPDATE line_counts SET in_count = %s", (99,)),
            ("UPDATE camera_status SET fps = %s", (0.0,)),
            ("UPDATE zone_latest SET count = %s", (99,)),
            ("DELETE FROM zone_counts_1m WHERE bucket <= %s", (now,)),
            ("UPDATE site_counts_1h SET count_last = %s", (99,)),
            ("DELETE FROM rollup_invalidations WHERE bucket <= %s", (now,)),
            ("UPDATE sites SET capacity = %s", (1,)),
            ("DROP TABLE zone_counts", None),
            ("SELECT payload FROM dead_letters WHERE id > %s", (0,)),
        ],
    )
    assert _rows(roles.owner, "SELECT ts, zone_id, count FROM zone_counts ORDER BY ts") == before


def test_web_role_runs_the_wall_queries(roles: Roles) -> None:
    now = datetime.now(UTC)
    _seed_counts(roles, now)
    start, end = now - timedelta(minutes=10), now + timedelta(minutes=1)

    def wall(url: str) -> tuple[Any, ...]:
        with psycopg.connect(url, autocommit=True) as conn:
            snapshot = read_snapshot(conn, roles.config, now)
            return (
                latest_zone_counts(conn),
                [s.count for s in snapshot.sites],
                zone_series(conn, "stop-a", "platform", start, end),
                site_series(conn, "stop-a", start, end),
            )

    as_web = wall(roles.web)

    assert as_web == wall(roles.owner)
    latest, counts, zone, site = as_web
    assert [row.count for row in latest] == [45] == counts
    assert [p.count_max for p in zone.points] == [5, 12, 45]
    assert [p.count_max for p in site.points] == [5, 12, 45]


def test_the_web_process_serves_the_wall_as_its_own_user(roles: Roles) -> None:
    now = datetime.now(UTC)
    _seed_counts(roles, now)
    # No owner URL at all: the web process must get by with web_url alone.
    config = roles.config.model_copy(
        update={"database": roles.config.database.model_copy(update={"url": None})}
    )
    stop = threading.Event()
    urls: queue.Queue[str] = queue.Queue()
    thread = threading.Thread(
        target=run_web, args=(config, "127.0.0.1", 0, stop), kwargs={"on_ready": urls.put}
    )
    thread.start()
    try:
        with httpx.Client(base_url=urls.get(timeout=TIMEOUT_S), timeout=10) as http:
            health = http.get("/healthz")
            sites = http.get("/api/sites").json()
    finally:
        stop.set()
        thread.join(timeout=20)
    assert health.status_code == 200
    assert [(s["id"], s["count"]) for s in sites] == [("stop-a", 45)]


def test_web_role_acknowledges_and_escalates_but_writes_nothing_else(roles: Roles) -> None:
    now = datetime.now(UTC)
    _seed_counts(roles, now)
    sent: list[tuple[str, bytes]] = []
    engine = AlertEngine(
        roles.config, roles.alerts, lambda topic, payload: sent.append((topic, payload))
    )
    try:
        fired = [t.key for t in engine.tick(now)]
    finally:
        engine.close()
    [(alert_id,)] = _rows(roles.owner, "SELECT id FROM alerts WHERE state = 'firing'")

    with psycopg.connect(roles.web, autocommit=True) as conn:
        acked = acknowledge(conn, alert_id, "Li Wei", "bus 3 sent")
        escalated = escalate(conn, alert_id, "Li Wei", "need a second bus")
        history = [(e.kind, e.who) for e in alert_history(conn, alert_id)]

    assert fired == ["stop-a/platform/crowded"]
    assert (acked.acknowledged_by, escalated.escalation_level) == ("Li Wei", 1)
    assert history[-2:] == [("acknowledged", "Li Wei"), ("escalated", "Li Wei")]
    _assert_refused(
        roles.web,
        [
            ("UPDATE alerts SET state = %s WHERE id = %s", ("resolved", alert_id)),
            ("UPDATE alerts SET value = %s WHERE id = %s", (0.0, alert_id)),
            ("DELETE FROM alerts WHERE id = %s", (alert_id,)),
            ("DELETE FROM alert_events WHERE alert_id = %s", (alert_id,)),
            ("UPDATE alert_events SET who = %s", ("someone else",)),
            (
                "INSERT INTO alert_pending (alert_key, site_id, rule_id, pending_since)"
                " VALUES (%s, 'stop-a', 'crowded', now())",
                ("k",),
            ),
            ("UPDATE alert_engine_lease SET holder = %s", ("web",)),
            ("UPDATE notifications SET state = %s", ("sent",)),
        ],
    )
    assert _rows(roles.owner, "SELECT state FROM alerts WHERE id = %s", (alert_id,)) == [
        ("firing",)
    ]


def test_web_role_records_dispatch_decisions_and_only_the_engine_writes_advice(
    roles: Roles,
) -> None:
    now = datetime.now(UTC)
    _seed_counts(roles, now)
    engine = AlertEngine(roles.config, roles.alerts, lambda topic, payload: None)
    try:
        engine.tick(now)
    finally:
        engine.close()
    [(alert_id,)] = _rows(roles.owner, "SELECT id FROM alerts WHERE state = 'firing'")
    advice = DispatchAdvice.model_validate(
        {
            "as_of": now,
            "waiting": 45,
            "arrival_rate_per_min": None,
            "target_min": 15,
            "routes": [
                {
                    "route": "K1",
                    "kind": "extra",
                    "buses": 2,
                    "arrive_by": now,
                    "clear_min_without": None,
                    "clear_min_with": 10,
                    "stranded_avoided": 45,
                }
            ],
            "text_zh": "调度建议",
            "text_en": "Dispatch now",
        }
    )
    with psycopg.connect(roles.alerts, autocommit=True) as conn:
        store_advice(conn, [(alert_id, advice)], now)
    with psycopg.connect(roles.web, autocommit=True) as conn:
        decided = decide(
            conn, alert_id, "Li Wei", Decision.DISPATCHED, routes=["K1"], route="K1", buses=2
        )
        [record] = dispatch_records(conn, [alert_id]).values()
    assert decided.recommended == advice
    assert record.advice == advice and record.decisions == (decided,)
    _assert_refused(
        roles.web,
        [
            ("UPDATE dispatch_advice SET updated_at = %s", (now,)),
            ("DELETE FROM dispatch_advice WHERE alert_id = %s", (alert_id,)),
            ("UPDATE dispatch_decisions SET buses = %s", (9,)),
            ("DELETE FROM dispatch_decisions WHERE alert_id = %s", (alert_id,)),
        ],
    )


# --- ingest writes counts, nothing else ----------------------------------------------------


def test_ingest_role_writes_counts_through_the_real_writer(plain_roles: Roles) -> None:
    roles = plain_roles
    now = datetime.now(UTC)
    bad = Rejected(Envelope("t/v1/stop-a/cam1/counts", b"{nope", now), "not UTF-8 JSON")
    counts = count_message(count=9, ts=now)
    # The method column (migration 5) is covered by the table grants: no column list to extend.
    dense = counts.model_copy(
        update={"zones": [counts.zones[0].model_copy(update={"method": CountMethod.DENSE})]}
    )

    written = _ingest(roles.ingest, _accepted(dense), _accepted(_status(now)), bad)

    assert written == (2, 1)
    assert _rows(roles.owner, "SELECT count, method FROM zone_counts") == [(9, "dense")]
    assert _rows(roles.owner, "SELECT count, method FROM zone_latest") == [(9, "dense")]
    assert _rows(roles.owner, "SELECT state FROM camera_latest_status") == [("online",)]
    assert _rows(roles.owner, "SELECT reason FROM dead_letters") == [("not UTF-8 JSON",)]
    # The rollup trigger ran as the ingest user and logged the minute for the owner's refresh.
    assert _rows(roles.owner, "SELECT DISTINCT source FROM rollup_invalidations") == [
        ("zone_counts",)
    ]


def test_ingest_role_cannot_change_the_schema_or_touch_alerts(plain_roles: Roles) -> None:
    roles = plain_roles
    now = datetime.now(UTC)
    _ingest(roles.ingest, _accepted(count_message(count=9, ts=now)))
    far = datetime(2031, 3, 14, tzinfo=UTC)
    today = partition_name("zone_counts", now.date())

    _assert_refused(
        roles.ingest,
        [
            ("DROP TABLE zone_counts", None),
            ("DROP TABLE zone_counts_default", None),
            (f"DROP TABLE {today}", None),
            (f"ALTER TABLE zone_counts DETACH PARTITION {today}", None),
            (
                "CREATE TABLE zone_counts_20310314 PARTITION OF zone_counts"
                f" FOR VALUES FROM ('{far.isoformat()}') TO ('{(far + timedelta(days=1)).isoformat()}')",
                None,
            ),
            ("TRUNCATE zone_counts", None),
            ("DELETE FROM zone_counts WHERE ts <= %s", (now,)),
            ("UPDATE zone_counts SET count = %s", (0,)),
            ("ALTER TABLE zone_counts ADD COLUMN evil integer", None),
            (
                "INSERT INTO alerts (alert_key, site_id, rule_id, severity, state, value,"
                " threshold, started_at, summary_zh, summary_en)"
                " VALUES (%s, 'stop-a', 'crowded', 'warning', 'firing', 1, 1, now(), '', '')",
                ("k",),
            ),
            ("SELECT id FROM alerts WHERE id > %s", (0,)),
            ("SELECT payload FROM dead_letters WHERE id > %s", (0,)),
            ("DELETE FROM rollup_invalidations WHERE bucket <= %s", (now,)),
            ("DELETE FROM zone_counts_1m WHERE bucket <= %s", (now,)),
            ("UPDATE sites SET capacity = %s", (1,)),
        ],
    )
    assert _rows(roles.owner, "SELECT count FROM zone_counts") == [(9,)]


# --- alerts write alerts, not counts --------------------------------------------------------


def test_alerts_role_writes_alerts_but_not_counts(roles: Roles) -> None:
    now = datetime.now(UTC)
    _seed_counts(roles, now)
    engine = AlertEngine(roles.config, roles.alerts, lambda topic, payload: None)
    try:
        fired = engine.tick(now)
        resolved_count = count_message(count=3, ts=now + timedelta(seconds=5))
        _ingest(roles.ingest, _accepted(resolved_count))
        resolved = engine.tick(now + timedelta(seconds=6))
    finally:
        engine.close()
    with psycopg.connect(roles.alerts, autocommit=True) as conn:
        silence = add_silence(conn, "Li Wei", now + timedelta(hours=1), site_id="stop-a")

    assert [(t.key, t.state) for t in fired] == [("stop-a/platform/crowded", "firing")]
    assert [(t.key, t.state) for t in resolved] == [("stop-a/platform/crowded", "resolved")]
    assert _rows(roles.owner, "SELECT state FROM alerts") == [("resolved",)]
    assert _rows(roles.owner, "SELECT id FROM alert_silences") == [(silence.id,)]
    _assert_refused(
        roles.alerts,
        [
            (
                "INSERT INTO zone_counts (ts, site_id, camera_id, zone_id, count, count_max,"
                " count_mean, interval_s, message_id)"
                " VALUES (%s, 'stop-a', 'cam1', 'platform', 1, 1, 1, 5, %s)",
                (now, "m-alerts"),
            ),
            ("UPDATE zone_counts SET count = %s", (99,)),
            ("DELETE FROM zone_counts WHERE ts <= %s", (now,)),
            ("UPDATE zone_latest SET count = %s", (99,)),
            (f"DELETE FROM {_stored_rollup(roles, 'zone_counts_1m')} WHERE bucket <= %s", (now,)),
            (
                "INSERT INTO dead_letters (topic, payload, reason) VALUES (%s, %s, %s)",
                ("t", b"x", "r"),
            ),
            ("DROP TABLE alerts", None),
            ("TRUNCATE alerts", None),
        ],
    )


# --- the owner's maintenance while ingest runs as its own user -------------------------------


def test_maintenance_as_owner_while_ingest_runs_as_the_ingest_role(
    db_url: str, prefix: str, mqtt_config: MqttConfig
) -> None:
    config = _config(db_url, prefix, mqtt_config)
    upgrade(db_url, config, timescale=False)
    with psycopg.connect(db_url, autocommit=True) as conn:
        setup_roles(conn, config.database)
        # The last day of the window is missing, as after a week without maintenance.
        last_day = datetime.now(UTC).date() + timedelta(days=7)
        missing = [partition_name(t, last_day) for t in TIME_SERIES_TABLES]
        for table, name in zip(TIME_SERIES_TABLES, missing, strict=True):
            conn.execute(
                sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(
                    sql.Identifier(table), sql.Identifier(name)
                )
            )
            conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))

    upkeep = Maintenance(db_url, interval_s=0.1, retention_every_s=None)
    with ingest_running(config, "test-ingest-role") as errors:
        publisher = MqttClient(mqtt_config, f"test-pub-{uuid.uuid4().hex[:8]}")
        try:
            publisher.connect()
            # The same message until ingest has subscribed: stored once.
            message = encode(count_message(count=7, ts=datetime.now(UTC)))
            topic = camera_topic(mqtt_config.topic_prefix, "stop-a", "cam1", TopicKind.COUNTS)

            def stored() -> bool:
                publisher.publish(topic, message)
                return bool(errors) or bool(_rows(db_url, "SELECT 1 FROM zone_counts"))

            assert wait_until(stored, TIMEOUT_S)
            # Ingest (its own user) does no upkeep: the minute is logged, not rolled up.
            time.sleep(0.5)
            assert _rows(db_url, "SELECT count(*) FROM zone_counts_1m") == [(0,)]
            assert _rows(db_url, "SELECT count(*) > 0 FROM rollup_invalidations") == [(True,)]

            upkeep.start()
            assert wait_until(
                lambda: (
                    _rows(db_url, "SELECT count_last FROM zone_counts_1h") == [(7,)]
                    and set(missing) <= set(upkeep.partitions_created)
                ),
                TIMEOUT_S,
            )
        finally:
            upkeep.stop()
            publisher.close()
    assert errors == []
    assert _rows(db_url, "SELECT count(*) FROM rollup_invalidations") == [(0,)]
    # The new partitions read like their parents, and only writes through the parent work.
    privileges = _rows(
        db_url,
        "SELECT has_table_privilege(%s, %s, 'SELECT'), has_table_privilege(%s, %s, 'INSERT'),"
        " has_table_privilege(%s, %s, 'INSERT')",
        (
            group_role(prefix, "web"),
            missing[0],
            group_role(prefix, "web"),
            missing[0],
            group_role(prefix, "ingest"),
            missing[0],
        ),
    )
    assert privileges == [(True, False, False)]
    assert _refusal(config.database.url_for("web"), f"SELECT count(*) FROM {missing[0]}") == "ok"


def test_ingest_with_its_own_url_refuses_an_unmigrated_database(
    pg_server: PgServer, roles: Roles
) -> None:
    empty = pg_server.create_database()
    try:
        ingest_url = make_conninfo(empty, user=roles.login("ingest"))
        config = roles.config.model_copy(
            update={
                "database": DatabaseConfig(
                    url=None, ingest_url=ingest_url, roles_prefix=roles.prefix
                )
            }
        )
        with pytest.raises(StorageError, match="run `crowdwatch db upgrade`"):
            run_ingest(config, threading.Event())
        assert _rows(empty, "SELECT to_regclass('zone_counts')") == [(None,)]
    finally:
        pg_server.drop_database(empty)


# --- config and command line --------------------------------------------------------------


def test_one_url_serves_every_process_and_the_environment_overrides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CWT_WEB_PW", "from-the-environment")
    raw = config_dict(site_dict("stop-a"))
    raw["database"] = {
        "url": "postgresql://owner@db/crowd",
        "web_url": "postgresql://web_app:${CWT_WEB_PW}@db/crowd",
        "alerts_url": "${CWT_UNSET_ALERTS_URL:-}",
    }
    database = parse_config(raw).database

    assert database.url_for("ingest") == "postgresql://owner@db/crowd"
    assert database.url_for("web") == "postgresql://web_app:from-the-environment@db/crowd"
    assert database.own_url("alerts") is None
    assert database.url_for("alerts") == "postgresql://owner@db/crowd"
    monkeypatch.setenv("CROWDWATCH_INGEST_DATABASE_URL", "postgresql://ingest_app@db/crowd")
    assert database.url_for("ingest") == "postgresql://ingest_app@db/crowd"
    with pytest.raises(ConfigError, match="roles_prefix"):
        parse_config({**raw, "database": {"roles_prefix": "Bad-Prefix"}})


def test_db_roles_and_maintain_commands(
    db_url: str, prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    info = conninfo_to_dict(db_url)
    raw = config_dict(site_dict("stop-a"))
    raw["database"] = {"roles_prefix": prefix}
    # In a URL a password with spaces must be percent-encoded; this one needs nothing.
    passwords = {p: f"cli'{p}-{uuid.uuid4().hex[:8]}" for p in PROCESSES}
    for process in PROCESSES:
        env = f"CWT_{process.upper()}_PW"
        monkeypatch.setenv(env, passwords[process])
        raw["database"][f"{process}_url"] = (
            f"postgresql://{prefix}_{process}_login:${{{env}}}"
            f"@{info['host']}:{info['port']}/{info['dbname']}"
        )
    path = tmp_path / "district.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert passwords["ingest"] not in path.read_text(encoding="utf-8")
    monkeypatch.setenv("CROWDWATCH_DATABASE_URL", db_url)

    assert main(["db", "roles", "--config", str(path)]) == 0
    roles_out = capsys.readouterr().out
    _ingest(
        make_conninfo(db_url, user=f"{prefix}_ingest_login"),
        # A complete minute: on TimescaleDB the current one is left to real-time aggregation.
        _accepted(count_message(count=4, ts=datetime.now(UTC) - timedelta(minutes=2))),
    )
    assert main(["db", "maintain", "--once", "--config", str(path)]) == 0
    maintain_out = capsys.readouterr().out

    assert f"login {prefix}_web_login -> {prefix}_web" in roles_out
    [(verifier,)] = _rows(
        db_url, "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (f"{prefix}_web_login",)
    )
    assert _verifies(verifier, passwords["web"])
    assert "privileges granted to ingest, web, alerts groups" in roles_out
    assert "1 rollup minutes recomputed" in maintain_out
    assert _rows(db_url, "SELECT count_last FROM zone_counts_1m") == [(4,)]
