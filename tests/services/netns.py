"""Hosts made as Linux network namespaces on this machine, joined by one bridge.

Each :class:`NetnsHost` is a network namespace with its own loopback and one veth link to
a bridge in the root namespace (the "switch"); the bridge also has an address, so the test
process can reach every host (to read metrics, query the database, watch the broker).
Cutting a host's link sets the switch end of its veth down: like pulling the cable, the
host keeps its address and routes, and its packets vanish until the link comes back.

:func:`network` makes the namespaces and removes them (and kills whatever still runs in
them) on exit, also when the test fails. It needs root (``ip netns add``); where namespaces
cannot be made it raises :class:`ServiceUnavailable` with the reason, for the test to skip.

The servers of the test run inside hosts: :func:`start_postgres` (an ``initdb``-ed cluster
of the Debian PostgreSQL, like :mod:`crowdwatch.devservices.postgres`, but listening on the
host's address) and :func:`start_mosquitto` (persistence on, a session holds an outage).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from crowdwatch.devservices.host import (
    ServiceStartError,
    ServiceUnavailable,
    chown_tree,
    running_as_root,
    system_user,
    tail_file,
    wait_for_port,
)
from crowdwatch.devservices.mosquitto import find_binary
from crowdwatch.devservices.postgres import SUPERUSER, find_bindir

_IP_TIMEOUT_S = 20.0
_START_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 20.0


def _ip(*args: str) -> None:
    """Run ``ip ARGS``; a failure names the command and what ``ip`` said."""
    try:
        proc = subprocess.run(
            ["ip", *args], capture_output=True, text=True, timeout=_IP_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceUnavailable(f"`ip {' '.join(args)}` could not run: {exc}") from exc
    if proc.returncode != 0:
        raise ServiceUnavailable(f"`ip {' '.join(args)}` failed: {proc.stderr.strip()}")


def namespaces_problem() -> str:
    """Why network namespaces cannot be made here ("" when they can), found by trying."""
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if not running_as_root():
        return "making network namespaces (`ip netns add`) needs root"
    probe = f"cwprobe{secrets.token_hex(3)}"
    try:
        _ip("netns", "add", probe)
    except ServiceUnavailable as exc:
        return str(exc)
    with suppress(ServiceUnavailable):
        _ip("netns", "del", probe)
    return ""


@dataclass
class NetnsHost:
    """One host: a network namespace, its address on the bridge, the switch end of its link."""

    name: str
    namespace: str
    address: str
    switch_port: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this host (``ip netns exec NAMESPACE ...``)."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def popen(
        self, argv: Sequence[str], log_path: Path, cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside this host, its output appended to ``log_path``.

        The process is killed when the network is torn down if it still runs then.
        """
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                self.command(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
            )
        self.processes.append(proc)
        return proc

    def cut(self) -> None:
        """Pull the cable: the switch end of the link goes down, packets vanish."""
        _ip("link", "set", self.switch_port, "down")

    def restore(self, reach: tuple[str, int] | None = None) -> None:
        """Plug the cable back in; with ``reach`` (address, port), also wait until this host
        can open a TCP connection there.

        A link just set up is not at once a path: the host's neighbour entry for the peer
        failed while the cable was out, and until it is resolved again a connect gets "No
        route to host", as a server plugged back in would see for a moment.
        """
        _ip("link", "set", self.switch_port, "up")
        if reach is None:
            return
        address, port = reach
        deadline = time.monotonic() + _IP_TIMEOUT_S
        probe = self.command(["bash", "-c", f"exec 3<>/dev/tcp/{address}/{port}"])
        while subprocess.run(probe, capture_output=True, timeout=_IP_TIMEOUT_S).returncode != 0:
            if time.monotonic() > deadline:
                raise ServiceStartError(
                    f"host {self.name}: {address}:{port} unreachable "
                    f"{_IP_TIMEOUT_S:g} s after its link came back"
                )
            time.sleep(0.2)


@dataclass
class Network:
    """The bridge, its subnet and the hosts on it."""

    tag: str
    bridge: str
    subnet: str
    gateway: str
    hosts: dict[str, NetnsHost] = field(default_factory=dict)

    def add_host(self, name: str, last_octet: int) -> NetnsHost:
        """A new namespace ``name`` at ``SUBNET.last_octet``, linked to the bridge."""
        index = len(self.hosts)
        namespace = f"cw{self.tag}-{name}"
        switch_port = f"v{self.tag}{index}"
        host_end = f"{switch_port}h"
        address = f"{self.subnet}.{last_octet}"
        _ip("netns", "add", namespace)
        host = NetnsHost(name, namespace, address, switch_port)
        self.hosts[name] = host
        _ip("link", "add", switch_port, "type", "veth", "peer", "name", host_end)
        _ip("link", "set", host_end, "netns", namespace)
        _ip("link", "set", switch_port, "master", self.bridge)
        _ip("link", "set", switch_port, "up")
        inside = ("netns", "exec", namespace, "ip")
        _ip(*inside, "link", "set", "lo", "up")
        _ip(*inside, "link", "set", host_end, "name", "eth0")
        _ip(*inside, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip(*inside, "link", "set", "eth0", "up")
        return host

    def close(self) -> None:
        """Kill what still runs in the hosts, delete the namespaces and the bridge."""
        for host in self.hosts.values():
            for proc in host.processes:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            # Whatever a started process left behind in the namespace (a forked child).
            pids = subprocess.run(
                ["ip", "netns", "pids", host.namespace],
                capture_output=True,
                text=True,
                timeout=_IP_TIMEOUT_S,
                check=False,
            ).stdout.split()
            for pid in pids:
                with suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        errors = []
        for host in self.hosts.values():
            try:
                # Deleting the namespace deletes its veth end and so the switch end too.
                _ip("netns", "del", host.namespace)
            except ServiceUnavailable as exc:
                errors.append(str(exc))
        try:
            _ip("link", "del", self.bridge)
        except ServiceUnavailable as exc:
            errors.append(str(exc))
        if errors:
            raise ServiceStartError("network namespaces not cleaned up: " + "; ".join(errors))


@contextmanager
def network() -> Iterator[Network]:
    """A bridge on a /24 of 10.0.0.0/8 chosen at random, torn down on exit.

    Raises:
        ServiceUnavailable: namespaces cannot be made here (the reason says why).
    """
    problem = namespaces_problem()
    if problem:
        raise ServiceUnavailable(problem)
    tag = secrets.token_hex(2)
    # A random /24 well away from the usual private ranges; two test runs at once get two.
    raw = int(tag, 16)
    subnet = f"10.{200 + raw % 50}.{raw // 50 % 256}"
    net = Network(tag, f"br{tag}", subnet, f"{subnet}.254")
    try:
        _ip("link", "add", net.bridge, "type", "bridge")
        _ip("addr", "add", f"{net.gateway}/24", "dev", net.bridge)
        _ip("link", "set", net.bridge, "up")
        yield net
    finally:
        net.close()


# --- servers inside hosts ---------------------------------------------------------------------


_PG_SETTINGS = """
# crowdwatch multi-host test: the database host's cluster, thrown away after the test
listen_addresses = '{address}'
port = 5432
unix_socket_directories = '{socket_dir}'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 100
shared_buffers = 64MB
"""


@dataclass
class HostedPostgres:
    """PostgreSQL running inside a host; ``url(dbname)`` reaches it over the bridge."""

    host: NetnsHost
    root: Path
    proc: subprocess.Popen[bytes]

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{self.host.address}:5432/{dbname}"

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then remove the folder."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)
                try:
                    self.proc.wait(_STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start_postgres(host: NetnsHost, subnet: str) -> HostedPostgres:
    """``initdb`` a cluster and run ``postgres`` inside ``host`` on its address, port 5432.

    Trust authentication for the bridge's /24 (a throw-away test cluster). As root the
    cluster belongs to the ``postgres`` system user, like the suite's own cluster.

    Raises:
        ServiceUnavailable: PostgreSQL is not installed and cannot be.
        ServiceStartError: initdb or the server failed (the message has the log tail).
    """
    bindir = find_bindir()
    owner = system_user(SUPERUSER)
    root = Path(tempfile.mkdtemp(prefix="crowdwatch-netns-pg-"))
    data, socket_dir, log_path = root / "data", root / "socket", root / "postgres.log"
    socket_dir.mkdir()
    chown_tree(root, owner)
    try:
        initdb = subprocess.run(
            [
                *(str(bindir / "initdb"), "-D", str(data), "-U", SUPERUSER, "-A", "trust"),
                *("-E", "UTF8", "--locale=C", "--no-sync"),
            ],
            cwd=root,
            user=owner.uid,
            group=owner.gid,
            extra_groups=[],
            env={**os.environ, "LC_ALL": "C"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if initdb.returncode != 0:
            raise ServiceStartError(
                f"initdb failed: {initdb.stdout[-2000:]}{initdb.stderr[-2000:]}"
            )
        with (data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(_PG_SETTINGS.format(address=host.address, socket_dir=socket_dir))
        with (data / "pg_hba.conf").open("a", encoding="utf-8") as hba:
            hba.write(f"host all all {subnet}.0/24 trust\n")
        # setpriv execs postgres in place: the Popen is the postmaster itself.
        proc = host.popen(
            [
                *("setpriv", "--reuid", str(owner.uid), "--regid", str(owner.gid)),
                *("--clear-groups", str(bindir / "postgres"), "-D", str(data)),
            ],
            log_path,
            cwd=root,
        )
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    server = HostedPostgres(host, root, proc)
    deadline = time.monotonic() + _START_TIMEOUT_S
    while True:
        try:
            with psycopg.connect(server.url(), connect_timeout=5):
                return server
        except psycopg.OperationalError as exc:
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = tail_file(log_path)
                server.stop()
                raise ServiceStartError(
                    f"PostgreSQL in {host.namespace} did not accept connections: {exc}\n{tail}"
                ) from exc
            time.sleep(0.2)


_MOSQUITTO_CONFIG = """\
listener 1883 {address}
allow_anonymous true
persistence true
persistence_location {folder}/
persistence_file mosquitto.db
log_dest file {folder}/mosquitto.log
log_type error
log_type warning
log_type notice
log_type information
# A persistent session must hold an ingest outage's worth of messages (default 1000 drops more).
max_queued_messages 1000000
user root
"""


@dataclass
class HostedMosquitto:
    """mosquitto running inside a host, port 1883 on its address."""

    host: NetnsHost
    folder: Path
    proc: subprocess.Popen[bytes]

    @property
    def log_path(self) -> Path:
        return self.folder / "mosquitto.log"

    def stop(self) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(_STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def start_mosquitto(host: NetnsHost) -> HostedMosquitto:
    """The Debian mosquitto inside ``host``, listening on its address, port 1883.

    Raises:
        ServiceUnavailable: mosquitto is not installed and cannot be.
        ServiceStartError: it did not listen in time (the message has the log tail).
    """
    binary = find_binary()
    folder = Path(tempfile.mkdtemp(prefix="crowdwatch-netns-mqtt-"))
    config = folder / "mosquitto.conf"
    config.write_text(_MOSQUITTO_CONFIG.format(address=host.address, folder=folder))
    proc = host.popen([str(binary), "-c", str(config)], folder / "stdout.log", cwd=folder)
    broker = HostedMosquitto(host, folder, proc)
    if not wait_for_port(host.address, 1883, _START_TIMEOUT_S, lambda: proc.poll() is None):
        tail = tail_file(broker.log_path) + tail_file(folder / "stdout.log")
        broker.stop()
        raise ServiceStartError(f"mosquitto in {host.namespace} did not listen:\n{tail}")
    return broker
