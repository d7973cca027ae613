"""Login rate limiting: a sliding window of failed logins per user name and per client address.

After ``max_failures`` failures within ``window_s`` for a name (someone guessing one
dispatcher's password from many addresses) or for an address (one client trying many names),
further logins for that key are refused with 429 and ``Retry-After`` until the oldest failure
leaves the window.  The check runs before the password is verified, so a throttled client
learns nothing, not even whether a guess was right, and costs no scrypt time.  A successful
login clears its name's failures (not its address's: one known password must not reset an
address that is guessing others).  State is in memory, per web process; behind a reverse proxy
every client has the proxy's address, so the per-address limit then acts district-wide (the
per-name limit still holds).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable

from crowdwatch.dashboards.sessions import AuthError

logger = logging.getLogger(__name__)

MAX_FAILURES = 5
WINDOW_S = 300.0
# Keys kept at most: an attacker inventing names must not grow memory without bound.
MAX_KEYS = 10_000


class LoginLimiter:
    """Counts failed logins per name and per address in a sliding window.

    Args:
        max_failures: failures allowed within the window; the next attempt is refused.
        window_s: the window's length in seconds.
        clock: monotonic seconds (a test passes its own).
    """

    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        # Logins are checked on the event loop but may be recorded from worker threads.
        self._lock = threading.Lock()

    def check(self, name: str, address: str) -> None:
        """Refuse the attempt when the name or the address has too many recent failures.

        Args:
            name: the user name typed.
            address: the client's IP address.

        Raises:
            AuthError: status 429, ``retry_after_s`` set to the seconds until the next try.
        """
        now = self._clock()
        with self._lock:
            waits = [self._wait(key, now) for key in _keys(name, address)]
        wait = max(waits)
        if wait > 0:
            logger.warning("login throttled for name %r from %s (%.0f s)", name, address, wait)
            raise AuthError(
                429,
                "too many failed logins; try again later",
                retry_after_s=max(1, math.ceil(wait)),
            )

    def record_failure(self, name: str, address: str) -> None:
        """Count one failed login against the name and the address."""
        now = self._clock()
        with self._lock:
            if len(self._failures) >= MAX_KEYS:
                self._prune(now)
            for key in _keys(name, address):
                self._failures.setdefault(key, deque()).append(now)

    def record_success(self, name: str) -> None:
        """Forget the name's failures after a correct password."""
        with self._lock:
            self._failures.pop(f"name:{name}", None)

    def _wait(self, key: str, now: float) -> float:
        """Seconds until ``key`` may try again (0 when it may now); drops expired failures."""
        failures = self._failures.get(key)
        if failures is None:
            return 0.0
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return 0.0
        if len(failures) < self.max_failures:
            return 0.0
        # Allowed again once enough failures have left the window to go below the limit.
        return failures[-self.max_failures] + self.window_s - now

    def _prune(self, now: float) -> None:
        for key in list(self._failures):
            self._wait(key, now)
        while len(self._failures) >= MAX_KEYS:
            oldest = min(self._failures, key=lambda k: self._failures[k][-1])
            del self._failures[oldest]


def _keys(name: str, address: str) -> tuple[str, str]:
    return (f"name:{name}", f"addr:{address}")
