"""Login rate limiting that concurrency cannot beat and a stranger cannot turn against a user.

Three sliding windows of failed logins, each a key with its own limit::

    attempt ──► trusted device for this name? ──yes──► device:{id}   5 per 5 min
                       │ no
                       ├──────────────────────────► addr:{ip}     5 per 5 min
                       └──────────────────────────► name:{user}  20 per hour (slower)

* **Counted before the password is checked.** :meth:`LoginLimiter.reserve` checks every key
  that applies and, under one lock, books the attempt in each as if it failed; only a right
  password gives the slot back (:meth:`LoginLimiter.succeeded`).  Forty guesses sent at once
  therefore meet a limit of five: the sixth finds five bookings, whatever the scrypt wait of
  the first five.  A refused attempt learns nothing, not even whether the guess was right, and
  costs no scrypt time.
* **A stranger cannot lock the real dispatcher out.**  A correct login hands the browser a
  *device cookie* (:meth:`~crowdwatch.dashboards.sessions.SessionSigner.issue_device`), signed
  and bound to the user name.  A login that presents a valid device cookie for the name it
  logs in as is judged only by that device's own window: failures of others, from any address,
  against the name or from a shared address (a reverse proxy) do not touch it.  So the real
  user keeps logging in from a known phone or desk on any network while the name is under
  attack; an attacker without that cookie meets the per-address limit and, across many
  addresses, the slower per-name limit (20 guesses an hour for the whole world).
* What a stranger *can* still do is hold the name's untrusted window full, so that the user on
  a browser that never logged in before (or cleared its cookies) waits for the window; that is
  the price of bounding distributed guessing, and the log names every throttled attempt.
* A correct login from an untrusted client clears the name's window (the password is known to
  that client), never the address's: one known password must not reset an address guessing
  others.

State is in memory, per web process, bounded to :data:`MAX_KEYS` keys.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from crowdwatch.dashboards.sessions import AuthError

logger = logging.getLogger(__name__)

MAX_FAILURES = 5
WINDOW_S = 300.0
NAME_FAILURES = 20
NAME_WINDOW_S = 3600.0
# Keys kept at most: an attacker inventing names must not grow memory without bound.
MAX_KEYS = 10_000


@dataclass(frozen=True, slots=True)
class Attempt:
    """One login attempt booked in its windows; hand it back with the verdict."""

    name: str
    keys: tuple[str, ...]
    at: float
    trusted: bool


class LoginLimiter:
    """Books login attempts per device, address and name in sliding windows.

    Args:
        max_failures: failures allowed per address (and per trusted device) in ``window_s``.
        window_s: that window's length in seconds.
        name_failures: failures allowed per user name from untrusted clients in
            ``name_window_s``.
        name_window_s: that window's length in seconds.
        clock: monotonic seconds (a test passes its own).
    """

    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window_s: float = WINDOW_S,
        name_failures: int = NAME_FAILURES,
        name_window_s: float = NAME_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = {
            "device": (max_failures, window_s),
            "addr": (max_failures, window_s),
            "name": (name_failures, name_window_s),
        }
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        # Logins are checked on the event loop but may be recorded from worker threads.
        self._lock = threading.Lock()

    @property
    def tracked_keys(self) -> int:
        """Devices, addresses and names with failures in memory (at most :data:`MAX_KEYS`)."""
        return len(self._failures)

    def reserve(self, name: str, address: str, device: str | None = None) -> Attempt:
        """Book an attempt before its password is checked, or refuse it.

        Args:
            name: the user name typed.
            address: the client's IP address.
            device: the id of a valid device cookie issued for ``name``, else None.

        Returns:
            The booked attempt: pass it to :meth:`succeeded` or :meth:`failed`.

        Raises:
            AuthError: status 429, ``retry_after_s`` set to the seconds until the next try.
        """
        if device is not None:
            keys: tuple[str, ...] = (f"device:{device}",)
        else:
            keys = (f"addr:{address}", f"name:{name}")
        with self._lock:
            now = self._clock()  # under the lock: each window stays in time order
            wait = max(self._wait(key, now) for key in keys)
            if wait <= 0:
                if len(self._failures) > MAX_KEYS - len(keys):
                    self._prune(now)
                for key in keys:
                    self._failures.setdefault(key, deque()).append(now)
        if wait > 0:
            logger.warning(
                "login throttled for name %r from %s%s (%.0f s)",
                name,
                address,
                " (known device)" if device else "",
                wait,
            )
            raise AuthError(
                429,
                "too many failed logins; try again later",
                retry_after_s=max(1, math.ceil(wait)),
            )
        return Attempt(name, keys, now, device is not None)

    def succeeded(self, attempt: Attempt) -> None:
        """The password was right: give the booking back; an untrusted one clears the name."""
        with self._lock:
            for key in attempt.keys:
                failures = self._failures.get(key)
                if failures is not None and attempt.at in failures:
                    failures.remove(attempt.at)
            if not attempt.trusted:
                self._failures.pop(f"name:{attempt.name}", None)

    def failed(self, attempt: Attempt) -> None:
        """The password was wrong: the booking stays as a failure."""
        logger.info("failed login for name %r (%s)", attempt.name, ", ".join(attempt.keys))

    def _wait(self, key: str, now: float) -> float:
        """Seconds until ``key`` may try again (0 when it may now); drops expired failures."""
        failures = self._failures.get(key)
        if failures is None:
            return 0.0
        limit, window_s = self._limits[key.partition(":")[0]]
        while failures and failures[0] <= now - window_s:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return 0.0
        if len(failures) < limit:
            return 0.0
        # Allowed again once enough failures have left the window to go below the limit.
        return failures[-limit] + window_s - now

    def _prune(self, now: float) -> None:
        """Drop expired windows, then the stalest tenth: amortised, not once per attempt."""
        for key in list(self._failures):
            self._wait(key, now)
        if len(self._failures) >= MAX_KEYS * 9 // 10:
            by_last = sorted(self._failures, key=lambda k: self._failures[k][-1])
            for key in by_last[: len(by_last) - MAX_KEYS * 8 // 10]:
                del self._failures[key]
