"""What the services need from the machine: now in :mod:`crowdwatch.devservices.host`."""

from __future__ import annotations

from crowdwatch.devservices.host import (
    ServiceStartError,
    ServiceUnavailable,
    SystemUser,
    apt_install,
    chown_tree,
    free_port,
    port_accepts,
    running_as_root,
    system_user,
    tail_file,
    tail_text,
    wait_for_port,
)

__all__ = [
    "ServiceStartError",
    "ServiceUnavailable",
    "SystemUser",
    "apt_install",
    "chown_tree",
    "free_port",
    "port_accepts",
    "running_as_root",
    "system_user",
    "tail_file",
    "tail_text",
    "wait_for_port",
]
