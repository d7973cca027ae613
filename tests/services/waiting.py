"""Polling for a condition that a service, a thread or a process makes true in its own time."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(check: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    """Call ``check`` every 50 ms until it holds or ``timeout_s`` passed.

    Returns:
        Its last answer (one more call after the time-out, so a late truth still counts).
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()
