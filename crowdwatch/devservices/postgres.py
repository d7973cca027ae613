"""A private PostgreSQL cluster (tests, benchmarks), and fresh databases on it.

``initdb`` + ``pg_ctl`` of the Debian packages (or of ``CROWDWATCH_PG_BINDIR``) in a
temporary folder: TCP on 127.0.0.1 and a free port, the unix socket inside the folder, trust
authentication, ``fsync=off`` (a test cluster is thrown away, so durability only costs time).
PostgreSQL refuses to run as root, so under root the cluster belongs to the ``postgres``
system user.

When that PostgreSQL has TimescaleDB installed, the cluster preloads it, so the suite and the
benchmarks run the TimescaleDB path as well as the plain one (a server with the package but
without the preload could only ever use the plain path).  Its background jobs are switched
off: crowdwatch refreshes and applies retention itself, and a job refreshing beside a test
would make the test's own refresh step aside.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from crowdwatch.devservices.host import (
    ServiceStartError,
    ServiceUnavailable,
    SystemUser,
    apt_install,
    chown_tree,
    free_port,
    running_as_root,
    system_user,
    tail_file,
    tail_text,
)

logger = logging.getLogger(__name__)

DEBIAN_ROOT = Path("/usr/lib/postgresql")
BINDIR_ENV = "CROWDWATCH_PG_BINDIR"
"""The bin folder of the PostgreSQL to run (default: the highest Debian one)."""
SUPERUSER = "postgres"
_START_ATTEMPTS = 3
"""Free ports are only free when we look; retry with another port if one was taken meanwhile."""

_SETTINGS = """
# crowdwatch test cluster: thrown away after the session, so no durability
listen_addresses = '127.0.0.1'
unix_socket_directories = '{socket_dir}'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
shared_buffers = 64MB
"""

_TIMESCALE_SETTINGS = """
shared_preload_libraries = 'timescaledb'
timescaledb.telemetry_level = off
timescaledb.max_background_workers = 0
"""


def find_bindir() -> Path:
    """The bin folder of the PostgreSQL to run: ``CROWDWATCH_PG_BINDIR``, else the highest
    installed Debian one, installing it if missing.

    Falls back to ``pg_ctl`` on PATH (a non-Debian machine).  ``/usr/local/bin`` may hold
    wrappers, so the Debian folder wins.

    Raises:
        ServiceUnavailable: no PostgreSQL and it cannot be installed, or
            ``CROWDWATCH_PG_BINDIR`` names a folder without ``initdb`` and ``pg_ctl``.
    """
    chosen = os.environ.get(BINDIR_ENV)
    if chosen:
        bindir = Path(chosen)
        if not ((bindir / "initdb").exists() and (bindir / "pg_ctl").exists()):
            raise ServiceUnavailable(
                f"{BINDIR_ENV}={chosen} has no initdb and pg_ctl: point it at a PostgreSQL "
                "bin folder or unset it"
            )
        return bindir
    found = _debian_bindir()
    if found is None:
        on_path = shutil.which("pg_ctl")
        if on_path and shutil.which("initdb"):
            return Path(on_path).resolve().parent
        apt_install("postgresql")
        found = _debian_bindir()
    if found is None:
        raise ServiceUnavailable(f"PostgreSQL is not installed (nothing in {DEBIAN_ROOT})")
    return found


def _debian_bindir() -> Path | None:
    if not DEBIAN_ROOT.is_dir():
        return None
    versions = [
        d for d in DEBIAN_ROOT.iterdir() if d.name.isdigit() and (d / "bin" / "pg_ctl").exists()
    ]
    if not versions:
        return None
    return max(versions, key=lambda d: int(d.name)) / "bin"


def timescaledb_installed(bindir: Path) -> bool:
    """Whether the PostgreSQL of ``bindir`` has the TimescaleDB library in its pkglibdir."""
    try:
        pkglibdir = subprocess.run(
            [str(bindir / "pg_config"), "--pkglibdir"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        # No pg_config beside it: Debian's layout keeps the libraries in ../lib.
        pkglibdir = str(bindir.parent / "lib")
    return (Path(pkglibdir) / "timescaledb.so").exists()


class PostgresCluster:
    """One ``initdb``-ed cluster in a temporary folder, started with ``pg_ctl``.

    Args:
        bindir: the PostgreSQL to run.
        preload_timescaledb: put TimescaleDB in ``shared_preload_libraries``; default: when
            that PostgreSQL has it installed.
    """

    def __init__(self, bindir: Path, *, preload_timescaledb: bool | None = None) -> None:
        self.bindir = bindir
        self.preload_timescaledb = (
            timescaledb_installed(bindir) if preload_timescaledb is None else preload_timescaledb
        )
        self.owner: SystemUser | None = system_user("postgres") if running_as_root() else None
        self.root = Path(tempfile.mkdtemp(prefix="crowdwatch-pg-"))
        self.data_dir = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.log_path = self.root / "postgres.log"
        self.port = 0
        self._started = False

    def start(self) -> None:
        """initdb and start the server.

        Raises:
            ServiceStartError: initdb or the server failed; the message has the log tail.
        """
        self.socket_dir.mkdir()
        if self.owner is not None:
            chown_tree(self.root, self.owner)
        self._run(
            "initdb",
            [
                *("-D", str(self.data_dir), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8"),
                *("--locale=C", "--no-sync", "--no-instructions"),
            ],
        )
        with (self.data_dir / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(_SETTINGS.format(socket_dir=self.socket_dir))
            if self.preload_timescaledb:
                conf.write(_TIMESCALE_SETTINGS)
        for attempt in range(1, _START_ATTEMPTS + 1):
            self.port = free_port()
            try:
                self._run(
                    "pg_ctl",
                    [
                        *("start", "-w", "-t", "60", "-D", str(self.data_dir)),
                        *("-l", str(self.log_path), "-o", f"-p {self.port}"),
                    ],
                )
            except ServiceStartError:
                in_use = "Address already in use" in tail_file(self.log_path)
                if in_use and attempt < _START_ATTEMPTS:
                    logger.warning("port %s was taken; retrying on another", self.port)
                    continue
                raise
            self._started = True
            return

    def stop_server(self) -> None:
        """Stop the server (fast mode: clients are disconnected), keeping its data.

        Raises:
            ServiceStartError: pg_ctl failed.
        """
        if self._started:
            self._run("pg_ctl", ["stop", "-m", "fast", "-w", "-t", "60", "-D", str(self.data_dir)])
            self._started = False

    def start_server(self) -> None:
        """Start a server stopped by :meth:`stop_server` again, on the same port.

        Raises:
            ServiceStartError: pg_ctl failed; the message has the log tail.
        """
        if self._started:
            return
        self._run(
            "pg_ctl",
            [
                *("start", "-w", "-t", "60", "-D", str(self.data_dir)),
                *("-l", str(self.log_path), "-o", f"-p {self.port}"),
            ],
        )
        self._started = True

    def stop(self) -> None:
        """Stop the server (fast mode: disconnect clients) and remove the folder."""
        try:
            # A start that timed out may still have left a postmaster behind.
            if self._started or (self.data_dir / "postmaster.pid").exists():
                mode = "fast" if self._started else "immediate"
                self._run(
                    "pg_ctl", ["stop", "-m", mode, "-w", "-t", "60", "-D", str(self.data_dir)]
                )
                self._started = False
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, dbname: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def _run(self, tool: str, args: list[str]) -> None:
        cmd = [str(self.bindir / tool), *args]
        owner = self.owner
        try:
            proc = subprocess.run(
                cmd,
                # The server's user may not enter the caller's working directory.
                cwd=self.root,
                user=owner.uid if owner else None,
                group=owner.gid if owner else None,
                extra_groups=[] if owner else None,
                env={**os.environ, "LC_ALL": "C"},
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ServiceStartError(f"{tool} failed to run: {exc}") from exc
        if proc.returncode != 0:
            raise ServiceStartError(
                f"{tool} {' '.join(args[:1])} failed (exit {proc.returncode}) in {self.root}:\n"
                f"{tail_text(proc.stdout + proc.stderr)}\n--- {self.log_path} ---\n"
                f"{tail_file(self.log_path)}"
            )


class PgServer:
    """A PostgreSQL server the tests create databases on.

    Args:
        admin_url: URL of the ``postgres`` database, as a superuser.
        cluster: the private cluster behind it; ``None`` for a server we did not start
            (``CROWDWATCH_TEST_DATABASE_URL``), whose leftover databases we drop at the end.
    """

    def __init__(self, admin_url: str, cluster: PostgresCluster | None = None) -> None:
        self.admin_url = admin_url
        self.cluster = cluster
        self._created: set[str] = set()
        self._lock = threading.Lock()

    def stop(self) -> None:
        """Stop our own server, keeping its databases (a fault test's outage).

        Raises:
            ServiceUnavailable: the server is not ours (``CROWDWATCH_TEST_DATABASE_URL``).
        """
        self._own_cluster().stop_server()

    def start(self) -> None:
        """Start our server again after :meth:`stop`, on the same port.

        Raises:
            ServiceUnavailable: the server is not ours.
        """
        self._own_cluster().start_server()

    def _own_cluster(self) -> PostgresCluster:
        if self.cluster is None:
            raise ServiceUnavailable(
                f"{_redact_admin(self.admin_url)} is an external server: it cannot be stopped"
            )
        return self.cluster

    @property
    def log_path(self) -> Path | None:
        """The server log when we started the server."""
        return self.cluster.log_path if self.cluster else None

    def create_database(self) -> str:
        """Create a uniquely named empty database.

        Returns:
            Its URL (same server and user as ``admin_url``).
        """
        name = f"cw_test_{uuid.uuid4().hex[:16]}"
        self._admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        with self._lock:
            self._created.add(name)
        return database_url(self.admin_url, name)

    def drop_database(self, url: str) -> None:
        """Drop a database made by :meth:`create_database`, disconnecting its clients."""
        name = database_name(url)
        self._admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        with self._lock:
            self._created.discard(name)

    def close(self) -> None:
        """Stop our own server, or drop what we created on someone else's."""
        if self.cluster is not None:
            self.cluster.stop()
            return
        with self._lock:
            leftovers = sorted(self._created)
        for name in leftovers:
            self.drop_database(database_url(self.admin_url, name))

    def _admin(self, statement: sql.Composed) -> None:
        # CREATE/DROP DATABASE cannot run inside a transaction block.
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(statement)


def _redact_admin(url: str) -> str:
    info = conninfo_to_dict(url)
    return f"PostgreSQL at {info.get('host', '?')}:{info.get('port', '5432')}"


def database_url(admin_url: str, dbname: str) -> str:
    """``admin_url`` pointing at ``dbname`` instead (URL or key=value conninfo)."""
    if re.match(r"^postgres(ql)?://", admin_url):
        parts = urlsplit(admin_url)
        return urlunsplit(parts._replace(path=f"/{dbname}"))
    return make_conninfo(admin_url, dbname=dbname)


def database_name(url: str) -> str:
    name = conninfo_to_dict(url).get("dbname")
    if not isinstance(name, str) or not name:
        raise ValueError(f"expected a database URL with a database name, got {url!r}")
    return name


def start_pg_server(external_url: str | None = None) -> PgServer:
    """Start a private server, or wrap ``external_url`` when one is given.

    Raises:
        ServiceUnavailable: PostgreSQL is not installed and cannot be installed.
        ServiceStartError: it is installed but did not start (message has the log tail).
    """
    if external_url:
        try:
            with psycopg.connect(external_url, autocommit=True, connect_timeout=10):
                pass
        except psycopg.Error as exc:
            raise ServiceStartError(
                f"CROWDWATCH_TEST_DATABASE_URL is set but the server refuses us: {exc}"
            ) from exc
        return PgServer(external_url)
    cluster = PostgresCluster(find_bindir())
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    logger.info("test PostgreSQL on port %s in %s", cluster.port, cluster.root)
    return PgServer(cluster.url("postgres"), cluster)
