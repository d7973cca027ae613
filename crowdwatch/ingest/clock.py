"""How far each edge box's clock is off, as seen from the ingest: receive time minus ``ts``.

An edge worker dates every message with its own wall clock.  A box whose clock is minutes
off still counts correctly (its intervals run on the monotonic clock), but its counts are
dated wrongly:

- **ahead** by more than the validator's ``max_future`` (5 min): every message is refused and
  kept in ``dead_letters`` with a reason that says "clock skew";
- **ahead** by less: accepted, its raw rows dated in the future (the latest rows and the alert
  engine take each as of its arrival, so it cannot freeze a zone);
- **behind**: accepted, dated in the past; behind by more than ``alerts.stale_after_s`` the
  alert engine and the dashboards treat the camera's counts as stale ("no data").

So the ingest measures, per camera, the receive time minus the message's ``ts`` and keeps the
smallest value over the last ``window_s`` of receive time.  Transport delay only ever adds to
that difference, and a backlog (a spool replay, messages the broker queued while the ingest
was down) is followed by fresh messages, so the minimum over a window is the clock offset:
negative when the edge clock is ahead, positive when it is behind.  It is exported as the
gauge ``crowdwatch_ingest_clock_skew_seconds{site,camera}``, and a skew beyond ``warn_s`` is
logged as a warning naming the camera: at once when ahead (a message cannot arrive before it
was made), after ``window_s`` when behind (a backlog drains within seconds, a slow clock stays).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

logger = logging.getLogger(__name__)

WINDOW_S = 60.0
"""The skew is the smallest receive-time-minus-ts over this much receive time (seconds)."""

WARN_S = 30.0
"""A skew beyond this many seconds is logged as a warning."""

REMIND_S = 600.0
"""While a camera stays off by more than ``WARN_S``, the warning is repeated this often."""


@dataclass(slots=True)
class _Camera:
    samples: deque[tuple[datetime, float]] = field(default_factory=deque)
    """(receive time, receive time minus ts in seconds), oldest first; only the samples that
    can still be the window's minimum (each smaller than every older one kept), so the
    minimum is the first and a message costs O(1) however many arrive in a window"""
    skew_s: float = 0.0
    behind_since: datetime | None = None
    """receive time since when the skew has been above ``warn_s``"""
    warned: str | None = None
    """"ahead" or "behind" while a warning stands"""
    warned_at: datetime | None = None


class ClockSkew:
    """Per-camera clock skew of the edge boxes (thread-safe).

    Args:
        window_s: the window of the minimum, and how long a camera must stay behind before
            the warning.
        warn_s: the skew (either way) that is worth a warning.
        max_future_s: the validator's ``max_future``, named in the warning when exceeded.

    Example:
        >>> from datetime import UTC, datetime, timedelta
        >>> skew = ClockSkew()
        >>> now = datetime(2026, 10, 1, 2, 0, tzinfo=UTC)
        >>> skew.observe("stop-a", "cam1", now + timedelta(seconds=90), now)
        -90.0
        >>> skew.skews()
        {('stop-a', 'cam1'): -90.0}
    """

    def __init__(
        self, window_s: float = WINDOW_S, warn_s: float = WARN_S, max_future_s: float = 300.0
    ) -> None:
        self._window = timedelta(seconds=window_s)
        self._warn_s = warn_s
        self._max_future_s = max_future_s
        self._lock = threading.Lock()
        self._cameras: dict[tuple[str, str], _Camera] = {}

    def observe(self, site_id: str, camera_id: str, ts: datetime, received_at: datetime) -> float:
        """Take one message (fresh, not a retained replay) into the camera's figure.

        Args:
            site_id: the camera's site.
            camera_id: the camera.
            ts: the message's own time (the edge clock).
            received_at: when the ingest received it (the ingest's clock).

        Returns:
            The camera's skew in seconds after this message (negative: the edge is ahead).
        """
        late_s = (received_at - ts).total_seconds()
        with self._lock:
            cam = self._cameras.setdefault((site_id, camera_id), _Camera())
            samples = cam.samples
            # An older sample with a larger lag leaves the window before this one: never
            # the minimum again.
            while samples and samples[-1][1] >= late_s:
                samples.pop()
            samples.append((received_at, late_s))
            horizon = received_at - self._window
            while samples[0][0] < horizon:
                samples.popleft()
            cam.skew_s = samples[0][1]
            self._judge(site_id, camera_id, cam, received_at)
            return cam.skew_s

    def skews(self) -> dict[tuple[str, str], float]:
        """(site, camera) -> the latest skew in seconds, for every camera seen."""
        with self._lock:
            return {key: cam.skew_s for key, cam in self._cameras.items()}

    def _judge(self, site_id: str, camera_id: str, cam: _Camera, now: datetime) -> None:
        skew = cam.skew_s
        if skew > self._warn_s:
            cam.behind_since = cam.behind_since or now
        else:
            cam.behind_since = None
        if skew < -self._warn_s:
            state: str | None = "ahead"
        elif cam.behind_since is not None and (
            cam.warned == "behind" or now - cam.behind_since >= self._window
        ):
            state = "behind"
        else:
            state = None
        if state is None:
            if cam.warned is not None and abs(skew) <= self._warn_s:
                logger.info("camera %s/%s: clock skew back to %.1f s", site_id, camera_id, skew)
                cam.warned, cam.warned_at = None, None
            return
        remind = cam.warned_at is None or (now - cam.warned_at).total_seconds() >= REMIND_S
        if state == cam.warned and not remind:
            return
        cam.warned, cam.warned_at = state, now
        if state == "ahead":
            refused = (
                f"its messages go to dead_letters (more than {self._max_future_s:g} s ahead)"
                if -skew > self._max_future_s
                else f"its counts are dated in the future (refused beyond {self._max_future_s:g} s)"
            )
            logger.warning(
                "camera %s/%s: clock skew: its clock is %.0f s ahead of the ingest's; %s; "
                "fix the edge box's time sync (NTP)",
                site_id,
                camera_id,
                -skew,
                refused,
            )
        else:
            logger.warning(
                "camera %s/%s: clock skew: its messages arrive %.0f s after their ts: its clock "
                "is behind (or its messages are held up); counts older than the alert engine's "
                "stale_after_s read as no data; fix the edge box's time sync (NTP)",
                site_id,
                camera_id,
                skew,
            )
