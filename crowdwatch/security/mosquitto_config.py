"""Per-device MQTT accounts and ACLs for mosquitto 2, generated from the site config.

Accounts (least privilege; ``P`` is ``mqtt.topic_prefix``):

=====================  ==================================  ======================================
account                may publish                         may subscribe / receive
=====================  ==================================  ======================================
edge-{site}-{camera}   ``P/v1/{site}/{camera}/#``          nothing
crowdwatch-ingest      ``P/v1/_ingest/+/stats``            ``P/v1/+/+/#`` (shared groups too)
crowdwatch-alerts      ``P/v1/alerts/#``                   ``P/v1/+/+/counts``
crowdwatch-simulator   each simulated camera's topics      nothing
=====================  ==================================  ======================================

mosquitto checks a ``$share/GROUP/FILTER`` subscription against ``FILTER``, so the ingest
account's read rule also covers its shared subscription.  Passwords are random, hashed in
mosquitto 2's PBKDF2-SHA512 format (``$7$``), and written in clear only to a 0600
credentials file for the installer, who puts each one in its box's
``CROWDWATCH_MQTT_PASSWORD``.  An edge box's config then reads (TLS listener on 8883)::

    mqtt:
      host: broker.example
      port: 8883
      tls: true
      ca_file: /etc/crowdwatch/ca.crt
      username: edge-stop-a-cam1
      password: ${CROWDWATCH_MQTT_PASSWORD}   # or leave it out: the same variable is read
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from crowdwatch.contracts.config import CrowdwatchConfig
from crowdwatch.contracts.errors import ConfigError
from crowdwatch.contracts.messages import MAX_PACKET_BYTES, TOPIC_VERSION

logger = logging.getLogger(__name__)

INGEST_USER = "crowdwatch-ingest"
ALERTS_USER = "crowdwatch-alerts"
SIMULATOR_USER = "crowdwatch-simulator"

# mosquitto_passwd's defaults (2.0): 12-byte salt, SHA-512; more rounds cost every CONNECT.
_PBKDF2_ITERATIONS = 1000
_SALT_BYTES = 12
_PASSWORD_BYTES = 24


@dataclass(frozen=True, slots=True)
class MqttAccount:
    """One broker account and the topic filters it may write (publish) and read (subscribe)."""

    username: str
    role: str
    write: tuple[str, ...]
    read: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files of the broker's TLS listener (paths as the broker host sees them)."""

    cafile: Path
    certfile: Path
    keyfile: Path


@dataclass(frozen=True, slots=True)
class MosquittoFiles:
    """What :func:`write_mosquitto_files` wrote."""

    config: Path
    password_file: Path
    acl_file: Path
    credentials: Path
    accounts: tuple[MqttAccount, ...]


def edge_username(site_id: str, camera_id: str) -> str:
    """The broker account of one edge camera: ``edge-{site}-{camera}``."""
    return f"edge-{site_id}-{camera_id}"


def mqtt_accounts(config: CrowdwatchConfig) -> list[MqttAccount]:
    """Every account the district needs, with its ACL.

    Args:
        config: the site config (its cameras and ``mqtt.topic_prefix``).

    Returns:
        One account per camera with a real source, then ingest, alerts and the simulator.

    Raises:
        ConfigError: two cameras would get the same username (``a-b``/``c`` and ``a``/``b-c``).
    """
    base = f"{config.mqtt.topic_prefix}/{TOPIC_VERSION}"
    accounts: list[MqttAccount] = []
    simulated: list[str] = []
    owner: dict[str, str] = {}
    for site, camera in config.cameras():
        if camera.simulated:
            simulated.append(f"{base}/{site.id}/{camera.id}/#")
            continue
        username = edge_username(site.id, camera.id)
        if username in owner:
            raise ConfigError(
                f"cameras {owner[username]} and {site.id}/{camera.id} would share the MQTT "
                f"username {username}; rename one of them"
            )
        owner[username] = f"{site.id}/{camera.id}"
        accounts.append(MqttAccount(username, "edge", (f"{base}/{site.id}/{camera.id}/#",), ()))
    accounts.append(
        MqttAccount(INGEST_USER, "ingest", (f"{base}/_ingest/+/stats",), (f"{base}/+/+/#",))
    )
    accounts.append(
        MqttAccount(ALERTS_USER, "alerts", (f"{base}/alerts/#",), (f"{base}/+/+/counts",))
    )
    accounts.append(MqttAccount(SIMULATOR_USER, "simulator", tuple(simulated), ()))
    return accounts


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """A password in mosquitto 2's password-file format (PBKDF2-SHA512, ``$7$``).

    Args:
        password: the clear password.
        salt: 12 random bytes by default (fixed only for reproducible tests).

    Returns:
        ``$7$ITERATIONS$SALT$HASH`` (base64), the part after ``username:``.
    """
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _PBKDF2_ITERATIONS)
    return (
        f"$7${_PBKDF2_ITERATIONS}${base64.b64encode(salt).decode()}"
        f"${base64.b64encode(digest).decode()}"
    )


def render_acl(accounts: Sequence[MqttAccount]) -> str:
    """The mosquitto ACL file: rules apply per user; anything not granted is denied."""
    lines = ["# Generated by `crowdwatch security mosquitto-config`; do not edit by hand.", ""]
    for account in accounts:
        lines.append(f"# {account.role}")
        lines.append(f"user {account.username}")
        lines += [f"topic write {topic}" for topic in account.write]
        lines += [f"topic read {topic}" for topic in account.read]
        lines.append("")
    return "\n".join(lines)


def render_config(
    *,
    password_file: Path,
    acl_file: Path,
    port: int,
    bind: str,
    persistence_dir: Path | None,
    tls: TlsFiles | None,
    tls_port: int,
) -> str:
    """The mosquitto.conf text (see :func:`write_mosquitto_files` for the arguments)."""
    lines = [
        "# Generated by `crowdwatch security mosquitto-config`; do not edit by hand.",
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {password_file}",
        f"acl_file {acl_file}",
        # A persistent ingest session must hold an outage's worth of messages (default 1000).
        "max_queued_messages 1000000",
        # No valid message comes near this: a bigger one is refused at the door (the sender
        # is disconnected) and never costs a consumer its memory.
        f"max_packet_size {MAX_PACKET_BYTES}",
    ]
    if persistence_dir is not None:
        lines += ["persistence true", f"persistence_location {persistence_dir}/"]
    lines += ["", f"listener {port} {bind}".rstrip()]
    if tls is not None:
        lines += [
            "",
            f"listener {tls_port}",
            f"cafile {tls.cafile}",
            f"certfile {tls.certfile}",
            f"keyfile {tls.keyfile}",
            "tls_version tlsv1.2",
        ]
    return "\n".join(lines) + "\n"


def write_mosquitto_files(
    config: CrowdwatchConfig,
    out_dir: Path,
    *,
    port: int = 1883,
    bind: str = "",
    tls: TlsFiles | None = None,
    tls_port: int = 8883,
    persistence_dir: Path | None = None,
) -> MosquittoFiles:
    """Write ``mosquitto.conf``, ``passwd``, ``acl`` and ``credentials.tsv`` into ``out_dir``.

    Every run makes new random passwords for every account: rerunning it rotates them all.

    Args:
        config: the site config.
        out_dir: created if missing; the files in it are replaced.
        port: the plain listener's port.
        bind: its address ("" = every interface; give 127.0.0.1 when only TLS is public).
        tls: certificate files for a TLS listener on ``tls_port``; None writes none.
        tls_port: the TLS listener's port.
        persistence_dir: where the broker keeps sessions; None leaves persistence off.

    Returns:
        The paths written and the accounts.

    Raises:
        ConfigError: two cameras would share a username.
    """
    accounts = mqtt_accounts(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    passwords = {a.username: secrets.token_urlsafe(_PASSWORD_BYTES) for a in accounts}
    files = MosquittoFiles(
        config=out_dir / "mosquitto.conf",
        password_file=out_dir / "passwd",
        acl_file=out_dir / "acl",
        credentials=out_dir / "credentials.tsv",
        accounts=tuple(accounts),
    )
    _write_private(
        files.credentials,
        "# username\trole\tpassword (give each box its own as CROWDWATCH_MQTT_PASSWORD)\n"
        + "".join(f"{a.username}\t{a.role}\t{passwords[a.username]}\n" for a in accounts),
    )
    # mosquitto reads these after dropping to its own user: hashes only, still not for everyone.
    _write_private(
        files.password_file,
        "".join(f"{a.username}:{hash_password(passwords[a.username])}\n" for a in accounts),
        mode=0o640,
    )
    files.acl_file.write_text(render_acl(accounts), encoding="utf-8")
    files.config.write_text(
        render_config(
            password_file=files.password_file.resolve(),
            acl_file=files.acl_file.resolve(),
            port=port,
            bind=bind,
            persistence_dir=persistence_dir,
            tls=tls,
            tls_port=tls_port,
        ),
        encoding="utf-8",
    )
    logger.info("wrote mosquitto files for %s accounts to %s", len(accounts), out_dir)
    return files


def read_credentials(path: Path) -> dict[str, str]:
    """username -> password from a ``credentials.tsv`` written by :func:`write_mosquitto_files`."""
    found: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            username, _role, password = line.split("\t")
            found[username] = password
    return found


def _write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Create the file with ``mode`` from the start, so the secret is never world-readable."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
