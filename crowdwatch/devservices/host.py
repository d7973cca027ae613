"""What the development services need from the machine: Debian packages, system users, free ports.

The services run as root in CI containers, where PostgreSQL refuses to start; the helpers
here run a command as an unprivileged system user instead and install a missing Debian
package with apt when we are allowed to.
"""

from __future__ import annotations

import fcntl
import logging
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


class ServiceUnavailable(Exception):  # noqa: N818 - reads as a state, like pytest's Skipped
    """A service cannot be provided on this machine; the fixture skips with this message."""


class ServiceStartError(RuntimeError):
    """A service was there but failed to start; the message carries the tail of its log."""


@dataclass(frozen=True, slots=True)
class SystemUser:
    """An unprivileged account a server runs as when the tests run as root."""

    name: str
    uid: int
    gid: int


def running_as_root() -> bool:
    return os.geteuid() == 0


def system_user(name: str) -> SystemUser:
    """Look up ``name``, creating it as a system user when it is missing.

    Raises:
        ServiceUnavailable: the user is missing and cannot be created.
    """
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        useradd = shutil.which("useradd")
        if useradd is None:
            raise ServiceUnavailable(
                f"system user {name!r} is missing and useradd is not found"
            ) from None
        command = [useradd, "--system", "--user-group", "--no-create-home"]
        command += ["--shell", "/bin/false", name]
        # Parallel test processes (pytest -n) may add the same user at once: the one that
        # loses finds it made ("already exists") or /etc/passwd locked, and tries again.
        for attempt in range(5):
            proc = subprocess.run(command, capture_output=True, text=True, check=False)
            try:
                entry = pwd.getpwnam(name)
                break
            except KeyError:
                if attempt == 4:
                    raise ServiceUnavailable(
                        f"cannot create system user {name!r}: {proc.stderr.strip()}"
                    ) from None
                time.sleep(0.5)
    return SystemUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


def chown_tree(path: Path, user: SystemUser) -> None:
    """Give ``path`` and everything below it to ``user``."""
    os.chown(path, user.uid, user.gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(Path(root) / name, user.uid, user.gid)


APT_LOCK = Path(tempfile.gettempdir()) / "crowdwatch-apt-install.lock"
"""Held while :func:`apt_install` runs apt-get (an exclusive ``flock``)."""


def apt_install(package: str) -> None:
    """Install a Debian package non-interactively.

    Raises:
        ServiceUnavailable: not root, no apt-get, or the installation failed.
    """
    apt = shutil.which("apt-get")
    if apt is None or not running_as_root():
        raise ServiceUnavailable(
            f"Debian package {package!r} is not installed and cannot be installed here "
            "(needs root and apt-get)"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    logger.warning("installing Debian package %s for the test services", package)
    # One installation at a time: parallel test processes (pytest -n) that each find a
    # package missing would otherwise fail on apt's own lock.  The second one waits, then
    # finds the package installed (apt-get install of an installed package does nothing).
    with APT_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for cmd in ([apt, "update"], [apt, "install", "-y", "--no-install-recommends", package]):
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            if proc.returncode != 0:
                raise ServiceUnavailable(
                    f"'{' '.join(cmd)}' failed while installing {package!r}: "
                    f"{tail_text(proc.stdout + proc.stderr)}"
                )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for_port(
    host: str, port: int, timeout_s: float, alive: Callable[[], bool] | None = None
) -> bool:
    """Poll until ``host:port`` accepts a connection.

    Args:
        alive: returns False once the server process has died, to stop waiting early.

    Returns:
        True when the port accepted a connection within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if port_accepts(host, port):
            return True
        if alive is not None and not alive():
            return False
        time.sleep(0.05)
    return False


def tail_text(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def tail_file(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file, or a note that it does not exist."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"<no log at {path}: {exc.strerror}>"
    return tail_text(text, lines) or f"<{path} is empty>"
