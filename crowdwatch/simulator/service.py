"""The district simulator process: every simulated camera publishes like a real edge.

Same topics, messages and QoS as :mod:`crowdwatch.edge`: a retained ``available`` of
``online`` at start, one count message and one retained status per camera per
``edge.interval_s``, and ``offline`` on a clean stop so the wall does not keep showing a
stopped simulator's figures as live.

Time: the curves follow a *simulated* clock, ``start + speed * elapsed``, so ``speed=720``
plays a holiday in two minutes; the messages' ``ts`` stays the real UTC time because to the
rest of the system they are live data.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from crowdwatch.contracts.config import CrowdwatchConfig
from crowdwatch.contracts.errors import BrokerError, ConfigError
from crowdwatch.contracts.messages import (
    AVAILABLE_OFFLINE,
    AVAILABLE_ONLINE,
    CameraState,
    StatusMessage,
    TopicKind,
    camera_topic,
    encode,
)
from crowdwatch.mqtt.client import MqttClient
from crowdwatch.simulator.crowd import SIMULATED_FPS, SimulatedCamera

logger = logging.getLogger(__name__)


class SimulatedClock:
    """``start + speed * (real seconds since creation)``.

    Args:
        start: the simulated instant at creation (UTC-aware).
        speed: simulated seconds per real second (1 = real time).
    """

    def __init__(self, start: datetime, speed: float) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed:g}")
        self._start = start
        self._speed = speed
        self._origin = time.monotonic()

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self._speed * (time.monotonic() - self._origin))


def start_today(local_time: str, timezone: str) -> datetime:
    """Today's instant at a local time of the district (``--start``), in UTC.

    Args:
        local_time: ``HH:MM``, 24-hour.
        timezone: the district's time zone.

    Raises:
        ConfigError: not an ``HH:MM`` time (the message shows the form).

    Example:
        >>> start_today("08:00", "Asia/Shanghai").astimezone(ZoneInfo("Asia/Shanghai")).hour
        8
    """
    try:
        clock = datetime.strptime(local_time, "%H:%M").time()
    except ValueError:
        raise ConfigError(
            f"--start: expected a local time HH:MM such as 08:00, got {local_time!r}"
        ) from None
    tz = ZoneInfo(timezone)
    today = datetime.now(tz).date()
    return datetime.combine(today, clock, tzinfo=tz).astimezone(UTC)


def local_hour(instant: datetime, tz: ZoneInfo) -> float:
    """Hours since local midnight of ``instant`` in ``tz``.

    Args:
        instant: a UTC-aware time.
        tz: the district's time zone.

    Returns:
        The local time of day in hours, e.g. 13.5 for 13:30.
    """
    local = instant.astimezone(tz)
    return local.hour + local.minute / 60 + (local.second + local.microsecond / 1e6) / 3600


def simulated_cameras(config: CrowdwatchConfig, seed: int) -> list[SimulatedCamera]:
    """The cameras the simulator drives.

    Args:
        config: the site config.
        seed: seeds each site's character and noise.

    Returns:
        A :class:`SimulatedCamera` for every camera whose source is ``simulated``.
    """
    return [
        SimulatedCamera(site, camera, seed) for site, camera in config.cameras() if camera.simulated
    ]


class _Publisher:
    """The simulator's side of the broker: topics and payloads for each camera."""

    def __init__(self, client: MqttClient, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    @property
    def connected(self) -> bool:
        return self._client.connected

    def available(self, cam: SimulatedCamera, state: str) -> None:
        topic = camera_topic(self._prefix, cam.site.id, cam.camera.id, TopicKind.AVAILABLE)
        self._client.publish(topic, state.encode(), qos=1, retain=True)

    def status(self, cam: SimulatedCamera, state: CameraState, detail: str) -> None:
        message = StatusMessage(
            site_id=cam.site.id,
            camera_id=cam.camera.id,
            ts=datetime.now(UTC),
            state=state,
            fps=SIMULATED_FPS if state is CameraState.ONLINE else 0.0,
            detail=detail,
        )
        topic = camera_topic(self._prefix, cam.site.id, cam.camera.id, TopicKind.STATUS)
        self._client.publish(topic, encode(message), qos=1, retain=True)

    def counts(
        self, cam: SimulatedCamera, hour: float, interval_s: float, simulated_s: float
    ) -> None:
        message = cam.counts(datetime.now(UTC), hour, interval_s, simulated_s)
        topic = camera_topic(self._prefix, cam.site.id, cam.camera.id, TopicKind.COUNTS)
        self._client.publish(topic, encode(message), qos=1)


def run_simulator(
    config: CrowdwatchConfig,
    stop: threading.Event,
    *,
    speed: float = 1.0,
    start: datetime | None = None,
    seed: int = 0,
) -> None:
    """Publish counts for every simulated camera until ``stop`` is set.

    Args:
        config: the site config; cameras with ``source: simulated`` are driven.
        stop: set it to stop after the current interval (cameras then go ``offline``).
        speed: simulated seconds per real second (``720`` plays a day in two minutes).
        start: the simulated start instant (UTC-aware); now when omitted.
        seed: seeds each site's character and the noise.

    Raises:
        BrokerError: the MQTT broker is unreachable at start.
        ValueError: ``speed`` is not positive.
    """
    cameras = simulated_cameras(config, seed)
    clock = SimulatedClock(start or datetime.now(UTC), speed)
    tz = ZoneInfo(config.district.timezone)
    interval = config.edge.interval_s
    if not cameras:
        logger.warning("no camera has source 'simulated'; the simulator has nothing to do")
    client = MqttClient(config.mqtt, client_id=f"crowdwatch-sim-{uuid.uuid4().hex[:12]}")
    client.connect()
    publisher = _Publisher(client, config.mqtt.topic_prefix)
    logger.info(
        "simulating %d camera(s) every %g s at %gx speed from %s local",
        len(cameras),
        interval,
        speed,
        clock.now().astimezone(tz).strftime("%Y-%m-%d %H:%M"),
    )
    try:
        _loop(publisher, cameras, clock, tz, interval, stop)
    finally:
        _go_offline(publisher, cameras)
        client.close()
        logger.info("simulator stopped")


def _loop(
    publisher: _Publisher,
    cameras: Sequence[SimulatedCamera],
    clock: SimulatedClock,
    tz: ZoneInfo,
    interval: float,
    stop: threading.Event,
) -> None:
    announced = False
    deadline = time.monotonic()
    previous = clock.now()
    while True:
        try:
            if not announced:
                for cam in cameras:
                    publisher.available(cam, AVAILABLE_ONLINE)
                announced = True
            now = clock.now()
            # Simulated seconds since the last counts decide how many people left meanwhile.
            simulated_s = max((now - previous).total_seconds(), 1e-3)
            previous = now
            hour = local_hour(now, tz)
            for cam in cameras:
                publisher.counts(cam, hour, interval, simulated_s)
                # Like a real edge: a status every interval, so one lost or stale status
                # (a queued "offline" from an earlier run) is corrected within an interval.
                publisher.status(cam, CameraState.ONLINE, "simulated")
        except BrokerError as exc:
            # paho reconnects on its own; the next interval publishes again.
            logger.warning("simulator could not publish: %s", exc)
        # Pace by deadline, not by sleep, so publishing time does not stretch the interval.
        deadline = max(deadline + interval, time.monotonic())
        if stop.wait(deadline - time.monotonic()):
            return


def _go_offline(publisher: _Publisher, cameras: Sequence[SimulatedCamera]) -> None:
    if not publisher.connected:
        logger.warning("broker away: simulated cameras not marked offline (their data goes stale)")
        return
    try:
        for cam in cameras:
            publisher.status(cam, CameraState.OFFLINE, "simulator stopped")
            publisher.available(cam, AVAILABLE_OFFLINE)
    except BrokerError as exc:
        logger.warning("could not mark simulated cameras offline: %s", exc)
