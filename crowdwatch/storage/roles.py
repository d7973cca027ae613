"""Least-privilege PostgreSQL roles: ingest writes counts, web reads, alerts write alerts.

Three NOLOGIN group roles (``{prefix}`` is ``database.roles_prefix``, default ``crowdwatch``)
hold the privileges; each process logs in as its own user, a member of one group:

* ``{prefix}_ingest``: INSERT (and SELECT) the raw counts and camera status, upsert
  ``zone_latest`` and ``camera_latest_status``, INSERT dead letters and the rollup trigger's
  ``rollup_invalidations``, TEMPORARY tables (the batch writer's staging);
* ``{prefix}_web``: SELECT what the pages show; UPDATE only the acknowledgement and escalation
  columns of ``alerts`` and INSERT ``alert_events`` and ``dispatch_decisions`` (the
  dispatcher's buttons, :mod:`crowdwatch.analytics.actions` and
  :mod:`crowdwatch.analytics.dispatch_actions`); nothing on counts;
* ``{prefix}_alerts``: SELECT counts, rollups and sites; read and write the alert tables.

None of them owns a table, so none may create, alter, drop or truncate one: partitions,
rollup refreshes and retention run as the owner (``crowdwatch db maintain``,
:mod:`crowdwatch.storage.maintenance`).  Privileges are granted on the partitioned parents,
which is what PostgreSQL checks for rows read or written through the parent; every partition
also gets its parent's SELECT grants, now and when it is created later
(:func:`~crowdwatch.storage.partitions.grant_reads_like_parent`).

:func:`apply_grants` revokes and re-grants these groups' privileges on crowdwatch's tables in
one transaction, so it also takes away what a newer release no longer needs;
:func:`~crowdwatch.storage.migrate.upgrade` reruns it after every migration when the groups
exist.  Login users come from the process URLs (``CROWDWATCH_{PROCESS}_DATABASE_URL``, else
``database.{process}_url`` with the password as ``${ENV}``): :func:`setup_roles` creates or
updates them with the password hashed here (SCRAM-SHA-256 by libpq), so no clear password
reaches the server or its logs.

Statements are composed with :mod:`psycopg.sql`: names are quoted identifiers, the privilege
words come from the constants below, and the one value a utility statement cannot take as a
parameter (the password hash of ``ALTER ROLE``) is a quoted literal.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import get_args

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from crowdwatch.contracts.config import DatabaseConfig, DatabaseProcess
from crowdwatch.contracts.db_schema import ROLLUP_TABLES, TIME_SERIES_TABLES
from crowdwatch.contracts.errors import ConfigError, StorageError
from crowdwatch.storage.partitions import grant_reads_like_parent, partitions_of

logger = logging.getLogger(__name__)

PROCESSES: tuple[DatabaseProcess, ...] = get_args(DatabaseProcess)

LATEST_TABLES = ("zone_latest", "camera_latest_status")
REGISTRY_TABLES = ("sites", "zones", "schema_migrations")
ALERT_TABLES = (
    "alerts",
    "alert_events",
    "alert_pending",
    "notifications",
    "alert_silences",
    "alert_engine_lease",
    "dispatch_advice",
    "dispatch_decisions",
    # The report scheduler reaches the alert channels, as the engine does.
    "report_sends",
)
READ_MODEL = TIME_SERIES_TABLES + LATEST_TABLES + REGISTRY_TABLES + ROLLUP_TABLES
"""What the pages and the alert engine read."""

ACK_COLUMNS = (
    "acknowledged_at",
    "acknowledged_by",
    "ack_note",
    "escalation_level",
    "escalated_at",
    "updated_at",
)
"""The ``alerts`` columns the dispatcher's acknowledge and escalate write."""

MANAGED_TABLES = READ_MODEL + ALERT_TABLES + ("dead_letters", "rollup_invalidations")
"""Every table whose privileges :func:`apply_grants` owns for the groups."""

_PRIVILEGES = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE"})


@dataclass(frozen=True, slots=True)
class TableGrant:
    """``GRANT privileges [(columns)] ON tables``; absent tables are skipped (TimescaleDB has
    no ``rollup_invalidations``)."""

    privileges: tuple[str, ...]
    tables: tuple[str, ...]
    columns: tuple[str, ...] = ()


GROUP_GRANTS: dict[DatabaseProcess, tuple[TableGrant, ...]] = {
    "ingest": (
        # SELECT on the raw tables: the writer's staging tables are LIKE them.
        TableGrant(("SELECT", "INSERT"), TIME_SERIES_TABLES),
        # ON CONFLICT DO UPDATE ... WHERE ts < EXCLUDED.ts reads the row it replaces.
        TableGrant(("SELECT", "INSERT", "UPDATE"), LATEST_TABLES),
        TableGrant(("INSERT",), ("dead_letters",)),
        # The statement trigger on the raw tables runs as the inserting user.
        TableGrant(("INSERT",), ("rollup_invalidations",)),
        TableGrant(("SELECT",), ("schema_migrations",)),
    ),
    "web": (
        TableGrant(("SELECT",), READ_MODEL + ALERT_TABLES),
        TableGrant(("UPDATE",), ("alerts",), ACK_COLUMNS),
        TableGrant(("INSERT",), ("alert_events", "dispatch_decisions")),
    ),
    "alerts": (
        TableGrant(("SELECT",), READ_MODEL),
        TableGrant(("SELECT", "INSERT", "UPDATE", "DELETE"), ALERT_TABLES),
    ),
}
"""Table privileges of each group."""

SEQUENCE_TABLES: dict[DatabaseProcess, tuple[str, ...]] = {
    "ingest": ("dead_letters",),
    "web": ("alert_events", "dispatch_decisions"),
    "alerts": ("alerts", "alert_events", "notifications", "alert_silences"),
}
"""Tables whose ``id`` sequence the group draws from (USAGE on it)."""


def group_role(prefix: str, process: DatabaseProcess) -> str:
    """``crowdwatch`` and ``web`` -> ``crowdwatch_web``."""
    return f"{prefix}_{process}"


def _role_exists(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone() is not None


def existing_groups(conn: psycopg.Connection, prefix: str) -> list[DatabaseProcess]:
    """The processes whose group role exists (roles are per server, not per database)."""
    return [p for p in PROCESSES if _role_exists(conn, group_role(prefix, p))]


def _present(conn: psycopg.Connection, tables: tuple[str, ...]) -> list[str]:
    return [t for t in tables if conn.execute("SELECT to_regclass(%s)", (t,)).fetchone() != (None,)]


def _idents(names: list[str] | tuple[str, ...]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def _privileges(words: tuple[str, ...], columns: tuple[str, ...]) -> sql.Composable:
    unknown = set(words) - _PRIVILEGES
    if unknown:
        raise ValueError(f"unknown table privileges {sorted(unknown)}")
    if not columns:
        return sql.SQL(", ").join(sql.SQL(w) for w in words)
    return sql.SQL(", ").join(
        sql.SQL("{} ({})").format(sql.SQL(w), _idents(columns)) for w in words
    )


def _sequences(conn: psycopg.Connection, tables: tuple[str, ...]) -> list[str]:
    # The sequences owned by a column of these tables (bigserial: dependency type 'a').
    rows = conn.execute(
        """
        SELECT DISTINCT s.relname
        FROM pg_depend d
        JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
        WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
          AND d.deptype IN ('a', 'i')
          AND d.refobjid IN (SELECT to_regclass(name) FROM unnest(%s::text[]) AS t (name))
        ORDER BY 1
        """,
        (list(tables),),
    ).fetchall()
    return [str(r[0]) for r in rows]


def apply_grants(conn: psycopg.Connection, prefix: str) -> list[DatabaseProcess]:
    """Make the existing groups' privileges on this database exactly :data:`GROUP_GRANTS`.

    One transaction: revoke everything the groups hold on crowdwatch's tables, partitions and
    sequences, then grant CONNECT, schema USAGE, the table privileges, sequence USAGE, and the
    parents' SELECT on every partition.  Needs the table owner (or a superuser).

    Args:
        conn: a connection in autocommit mode (or idle), as the owner of a migrated database.
        prefix: ``database.roles_prefix``.

    Returns:
        The processes whose group was granted (those whose role exists).

    Raises:
        StorageError: the database refused a statement (not the owner?).
    """
    try:
        with conn.transaction():
            groups = existing_groups(conn, prefix)
            if not groups:
                return []
            roles = {p: sql.Identifier(group_role(prefix, p)) for p in groups}
            everyone = sql.SQL(", ").join(roles.values())
            tables = _present(conn, MANAGED_TABLES)
            partitions = sorted(
                {c for t in _present(conn, TIME_SERIES_TABLES) for c in partitions_of(conn, t)}
            )
            sequences = _sequences(conn, (*ALERT_TABLES, "dead_letters"))
            conn.execute(
                sql.SQL("REVOKE ALL ON TABLE {} FROM {}").format(
                    _idents(tables + partitions), everyone
                )
            )
            if sequences:
                conn.execute(
                    sql.SQL("REVOKE ALL ON SEQUENCE {} FROM {}").format(
                        _idents(sequences), everyone
                    )
                )
            database = conn.execute("SELECT current_database(), current_schema()").fetchone()
            assert database is not None
            db_name, schema = str(database[0]), str(database[1])
            conn.execute(
                sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                    sql.Identifier(db_name), everyone
                )
            )
            conn.execute(
                sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), everyone)
            )
            for process in groups:
                _grant_group(conn, roles[process], process, db_name)
            for table in _present(conn, TIME_SERIES_TABLES):
                for partition in sorted(partitions_of(conn, table)):
                    grant_reads_like_parent(conn, table, partition)
            creators = [
                group_role(prefix, p)
                for p in groups
                if conn.execute(
                    "SELECT has_schema_privilege(%s, %s, 'CREATE')",
                    (group_role(prefix, p), schema),
                ).fetchone()
                == (True,)
            ]
    except psycopg.Error as exc:
        raise StorageError(
            f"cannot grant the {prefix}_* roles their privileges (run as the table owner): {exc}"
        ) from exc
    logger.info("granted privileges to %s", ", ".join(group_role(prefix, p) for p in groups))
    if creators:
        # Not revoked here: it is the database's policy, not ours (PostgreSQL 15 and later
        # no longer grant CREATE on public to PUBLIC).
        logger.warning(
            "%s may create tables in schema %s (granted to PUBLIC?): run REVOKE CREATE ON "
            "SCHEMA %s FROM PUBLIC",
            ", ".join(creators),
            schema,
            schema,
        )
    return groups


def _grant_group(
    conn: psycopg.Connection, role: sql.Identifier, process: DatabaseProcess, db_name: str
) -> None:
    for grant in GROUP_GRANTS[process]:
        tables = _present(conn, grant.tables)
        if tables:
            conn.execute(
                sql.SQL("GRANT {} ON TABLE {} TO {}").format(
                    _privileges(grant.privileges, grant.columns), _idents(tables), role
                )
            )
    sequences = _sequences(conn, SEQUENCE_TABLES[process])
    if sequences:
        conn.execute(sql.SQL("GRANT USAGE ON SEQUENCE {} TO {}").format(_idents(sequences), role))
    if process == "ingest":
        # The batch writer's staging tables are session temp tables.
        conn.execute(
            sql.SQL("GRANT TEMPORARY ON DATABASE {} TO {}").format(sql.Identifier(db_name), role)
        )


@dataclass(frozen=True, slots=True)
class Login:
    """A process's login user, from its database URL."""

    process: DatabaseProcess
    user: str
    password: str | None = field(repr=False)


def logins(database: DatabaseConfig) -> list[Login]:
    """The login users named by ``database.{ingest,web,alerts}_url`` (or their environment).

    Raises:
        ConfigError: a URL is not a libpq URL or names no user.
    """
    found = []
    for process in PROCESSES:
        url = database.own_url(process)
        if url is None:
            continue
        try:
            info = conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            raise ConfigError(f"database.{process}_url: not a libpq URL: {exc}") from None
        user = info.get("user")
        if not user:
            raise ConfigError(f"database.{process}_url: names no user (postgresql://USER:...@)")
        password = info.get("password")
        found.append(Login(process, str(user), str(password) if password else None))
    return found


@dataclass(frozen=True, slots=True)
class RolesReport:
    """What :func:`setup_roles` did."""

    groups_created: list[str]
    logins: list[tuple[str, str]]
    """(login user, group) pairs, one per configured process URL."""
    granted: list[DatabaseProcess]


def _ensure_group(conn: psycopg.Connection, name: str) -> bool:
    if _role_exists(conn, name):
        conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(name)))
        return False
    conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(name)))
    return True


def _ensure_login(conn: psycopg.Connection, login: Login, prefix: str) -> str:
    group = group_role(prefix, login.process)
    where = f"database.{login.process}_url"
    me = conn.execute("SELECT current_user").fetchone()
    if me is not None and login.user == me[0]:
        raise ConfigError(
            f"{where}: user {login.user} is the owner this command runs as; give the "
            f"{login.process} process a user of its own"
        )
    if login.user in {group_role(prefix, p) for p in PROCESSES}:
        raise ConfigError(f"{where}: {login.user} is a group role; name a login user")
    row = conn.execute(
        "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = %s", (login.user,)
    ).fetchone()
    if row is not None and row[0]:
        raise ConfigError(
            f"{where}: {login.user} is a superuser (or bypasses row security): it would "
            "ignore every grant; give the process an ordinary user"
        )
    user = sql.Identifier(login.user)
    if login.password is not None:
        # libpq hashes it (PQencryptPasswordConn): the server only ever sees the verifier.
        hashed = conn.pgconn.encrypt_password(
            login.password.encode(), login.user.encode(), b"scram-sha-256"
        ).decode()
        password: sql.Composable = sql.SQL(" PASSWORD {}").format(sql.Literal(hashed))
    elif row is None:
        raise ConfigError(
            f"{where}: user {login.user} does not exist and the URL has no password; write it "
            f"as postgresql://{login.user}:${{ENV_VAR}}@host/db"
        )
    else:
        password = sql.SQL("")
    verb = "CREATE" if row is None else "ALTER"
    conn.execute(
        sql.SQL("{} ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE{}").format(
            sql.SQL(verb), user, password
        )
    )
    # One process, one group: a user moved to another process loses the old privileges.
    for other in PROCESSES:
        name = group_role(prefix, other)
        member = conn.execute("SELECT pg_has_role(%s, %s, 'MEMBER')", (login.user, name)).fetchone()
        if other != login.process and member is not None and member[0]:
            conn.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(name), user))
    conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), user))
    return group


def setup_roles(conn: psycopg.Connection, database: DatabaseConfig) -> RolesReport:
    """Create or update the group roles, their login users and their privileges.

    Idempotent: run it after ``crowdwatch db upgrade`` and whenever a password or a process
    URL changes.  Needs a user that owns the tables and may create roles (CREATEROLE).

    Args:
        conn: a connection in autocommit mode, as the owner of a migrated database.
        database: the ``database`` section: ``roles_prefix`` and the process URLs whose
            user and password become the login users.

    Returns:
        The groups created, the login users and their groups, the groups granted.

    Raises:
        ConfigError: a process URL names no user, the owner, a superuser, or a new user
            without a password.
        StorageError: the database refused (no CREATEROLE? not the owner?).
    """
    prefix = database.roles_prefix
    wanted = logins(database)
    try:
        with conn.transaction():
            created = [
                group_role(prefix, p)
                for p in PROCESSES
                if _ensure_group(conn, group_role(prefix, p))
            ]
            pairs = [(login.user, _ensure_login(conn, login, prefix)) for login in wanted]
    except psycopg.Error as exc:
        raise StorageError(
            f"cannot create the {prefix}_* roles (the database.url user needs CREATEROLE): {exc}"
        ) from exc
    granted = apply_grants(conn, prefix)
    return RolesReport(groups_created=created, logins=pairs, granted=granted)
