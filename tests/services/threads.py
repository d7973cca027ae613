"""Finding threads a test left running (STYLE.md: fail on lingering threads)."""

from __future__ import annotations

import threading
import time

PAHO_THREAD_PREFIX = "paho-mqtt-client-"
"""paho's network thread is a daemon, but one left alive means an MqttClient was not closed."""


def lingering_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    """Threads alive now that were not in ``before`` and that the test should have stopped.

    Counts non-daemon threads (they keep the interpreter from exiting) and paho network threads.
    """
    return [
        t
        for t in threading.enumerate()
        if t not in before
        and t.is_alive()
        and (not t.daemon or t.name.startswith(PAHO_THREAD_PREFIX))
    ]


def wait_for_threads(before: set[threading.Thread], grace_s: float) -> list[threading.Thread]:
    """Give new threads ``grace_s`` seconds to end.

    Returns:
        The threads still alive after the grace period (empty when all ended).
    """
    deadline = time.monotonic() + grace_s
    left = lingering_threads(before)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = lingering_threads(before)
    return left
