"""The district simulator: curve shapes (pure), camera messages, and a short run on the broker."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from factories import config_dict, make_config, site_dict

from crowdwatch.contracts.config import (
    CrowdwatchConfig,
    EdgeConfig,
    MqttConfig,
    SiteKind,
    load_config,
)
from crowdwatch.contracts.messages import (
    AVAILABLE_OFFLINE,
    AVAILABLE_ONLINE,
    CameraState,
    CountMessage,
    StatusMessage,
    TopicKind,
    camera_topic_filter,
    decode_counts,
    decode_status,
    parse_camera_topic,
)
from crowdwatch.mqtt.client import MqttClient
from crowdwatch.simulator import expected_occupancy, run_simulator
from crowdwatch.simulator.crowd import SimulatedCamera, poisson
from crowdwatch.simulator.curves import MAX_OCCUPANCY
from crowdwatch.simulator.service import local_hour, simulated_cameras

EXAMPLE = Path(__file__).resolve().parents[1] / "configs" / "district.example.yaml"


@pytest.fixture(scope="module")
def district() -> CrowdwatchConfig:
    return load_config(EXAMPLE)


@pytest.mark.parametrize(
    ("kind", "busier_hour", "quieter_hour"),
    [
        (SiteKind.BEACH, 13.0, 6.0),
        (SiteKind.BEACH, 12.0, 19.5),
        (SiteKind.BUS_STOP, 17.5, 14.0),
        (SiteKind.BUS_STOP, 10.0, 7.0),
        (SiteKind.BUS_STOP, 17.5, 10.0),  # the evening queue home beats the morning arrivals
        (SiteKind.ROAD, 9.5, 13.0),
        (SiteKind.ROAD, 17.5, 13.0),
        (SiteKind.ROAD, 13.0, 3.0),
        (SiteKind.SCENIC_SPOT, 15.5, 10.0),
        (SiteKind.SCENIC_SPOT, 15.5, 21.0),
    ],
)
def test_curve_shape(kind: SiteKind, busier_hour: float, quieter_hour: float) -> None:
    assert expected_occupancy(kind, busier_hour) > expected_occupancy(kind, quieter_hour)


@pytest.mark.parametrize(
    ("kind", "hour", "low", "high"),
    [
        (SiteKind.BEACH, 5.5, 0.0, 0.1),
        (SiteKind.BEACH, 11.0, 0.75, 0.95),
        (SiteKind.BEACH, 13.5, 0.8, 0.95),
        (SiteKind.BEACH, 16.0, 0.75, 0.95),
        (SiteKind.BUS_STOP, 10.0, 0.25, 0.6),
        (SiteKind.BUS_STOP, 17.5, 0.8, 1.0),
    ],
)
def test_curve_levels(kind: SiteKind, hour: float, low: float, high: float) -> None:
    assert low <= expected_occupancy(kind, hour) <= high


@pytest.mark.parametrize("kind", list(SiteKind))
def test_curves_stay_in_bounds_and_wrap_at_midnight(kind: SiteKind) -> None:
    values = [expected_occupancy(kind, q / 4) for q in range(96)]
    assert all(0 <= v <= MAX_OCCUPANCY for v in values)
    assert expected_occupancy(kind, 25.0) == expected_occupancy(kind, 1.0)


@pytest.mark.parametrize(
    ("instant", "hour"),
    [
        (datetime(2026, 10, 1, 5, 0, tzinfo=UTC), 13.0),
        (datetime(2026, 10, 1, 17, 30, tzinfo=UTC), 1.5),
    ],
)
def test_local_hour_uses_the_district_time_zone(instant: datetime, hour: float) -> None:
    assert local_hour(instant, ZoneInfo("Asia/Shanghai")) == hour


@pytest.mark.parametrize("mean", [0.0, 3.0, 40.0, 800.0])
def test_poisson_draws_average_near_the_mean(mean: float) -> None:
    import random

    rng = random.Random(1)
    draws = [poisson(rng, mean) for _ in range(400)]
    assert all(d >= 0 for d in draws)
    assert abs(sum(draws) / len(draws) - mean) <= 0.1 * mean + 0.5


def test_a_simulated_camera_splits_its_site_over_its_zones(district: CrowdwatchConfig) -> None:
    site = district.site("beach-silver-sand")
    camera = SimulatedCamera(site, site.cameras[0], seed=7)
    ts = datetime(2026, 10, 1, 5, 0, tzinfo=UTC)

    message = camera.counts(ts, 13.0, 5.0)

    assert isinstance(message, CountMessage)
    assert (message.site_id, message.camera_id, message.ts) == ("beach-silver-sand", "cam-wide", ts)
    assert [z.zone_id for z in message.zones] == ["north", "middle", "south"]
    for zone in message.zones:
        # Each 1000-person section near its midday level, with the site's character and noise.
        assert 500 <= zone.count <= 1200
        assert zone.count <= zone.count_max and zone.count_mean <= zone.count_max
    assert message.frames == 50


def test_the_same_seed_gives_the_same_day(district: CrowdwatchConfig) -> None:
    site = district.site("stop-silver-sand")
    ts = datetime(2026, 10, 1, 9, 30, tzinfo=UTC)

    def day(seed: int) -> list[int]:
        camera = SimulatedCamera(site, site.cameras[0], seed)
        return [camera.counts(ts, h / 2, 5.0, 1800.0).zones[0].count for h in range(48)]

    assert day(3) == day(3)
    assert day(3) != day(4)


def test_counts_persist_and_the_entrance_line_sees_who_came_and_went() -> None:
    raw = site_dict("stop-a", capacity=80)
    raw["cameras"][0]["lines"] = [
        {
            "id": "entrance",
            "name": {"zh": "入口", "en": "Entrance"},
            "start": [300, 100],
            "end": [300, 576],
            "in_direction": [1, 0],
        }
    ]
    site = make_config(config_dict(raw)).site("stop-a")
    camera = SimulatedCamera(site, site.cameras[0], seed=5)
    ts = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)

    # Ten minutes of 5-second counts through the evening queue (17:00 -> 17:10).
    messages = [camera.counts(ts, 17.0 + i * 5 / 3600, 5.0) for i in range(120)]

    counts = [m.zones[0].count for m in messages]
    crossings_in = sum(m.lines[0].in_count for m in messages[1:])
    crossings_out = sum(m.lines[0].out_count for m in messages[1:])
    assert counts[-1] - counts[0] == crossings_in - crossings_out
    # A crowd, not white noise: a 5-second step moves only a few people.
    assert max(abs(b - a) for a, b in pairwise(counts)) <= 8
    assert 30 <= sum(counts) / len(counts) <= 90


def test_only_simulated_cameras_are_driven(district: CrowdwatchConfig) -> None:
    driven = {(c.site.id, c.camera.id) for c in simulated_cameras(district, seed=0)}
    assert ("stop-xiwan-terminus", "cam-platform") not in driven  # the real PETS video camera
    assert len(driven) == sum(1 for _, cam in district.cameras() if cam.simulated) == 12


class Recorder:
    """A real MQTT subscriber to counts, status and available of every camera."""

    def __init__(self, mqtt: MqttConfig, expected: set[tuple[str, str]]) -> None:
        self.counts: dict[tuple[str, str], CountMessage] = {}
        self.status: dict[tuple[str, str], StatusMessage] = {}
        self.available: dict[tuple[str, str], list[str]] = {}
        self._prefix = mqtt.topic_prefix
        self._expected = expected
        self._changed = threading.Condition()
        self._client = MqttClient(mqtt, client_id=f"test-sim-{uuid.uuid4().hex[:8]}")
        for kind in TopicKind:
            self._client.subscribe(camera_topic_filter(self._prefix, kind), self._on_message)
        self._client.connect()

    def _on_message(self, topic: str, payload: bytes) -> None:
        site_id, camera_id, kind = parse_camera_topic(self._prefix, topic)
        key = (site_id, camera_id)
        with self._changed:
            if kind is TopicKind.COUNTS:
                self.counts[key] = decode_counts(payload)
            elif kind is TopicKind.STATUS:
                self.status[key] = decode_status(payload)
            else:
                self.available.setdefault(key, []).append(payload.decode())
            self._changed.notify_all()

    def wait_for_counts(self, timeout: float) -> bool:
        """Until every expected camera sent counts."""
        with self._changed:
            return self._changed.wait_for(lambda: set(self.counts) >= self._expected, timeout)

    def wait_for_offline(self, timeout: float) -> bool:
        """Until every expected camera's last availability and status say offline."""

        def all_offline() -> bool:
            return all(
                self.available.get(key, [""])[-1] == AVAILABLE_OFFLINE
                and self.status.get(key) is not None
                and self.status[key].state is CameraState.OFFLINE
                for key in self._expected
            )

        with self._changed:
            return self._changed.wait_for(all_offline, timeout)

    def close(self) -> None:
        self._client.close()


@pytest.fixture
def recorder(district: CrowdwatchConfig, mqtt_config: MqttConfig) -> Iterator[Recorder]:
    expected = {(s.id, c.id) for s, c in district.cameras() if c.simulated}
    box = Recorder(mqtt_config, expected)
    try:
        yield box
    finally:
        box.close()


def test_a_short_run_publishes_for_every_simulated_camera(
    district: CrowdwatchConfig, mqtt_config: MqttConfig, recorder: Recorder
) -> None:
    config = district.model_copy(update={"mqtt": mqtt_config, "edge": EdgeConfig(interval_s=0.2)})
    expected = {(s.id, c.id) for s, c in config.cameras() if c.simulated}
    stop = threading.Event()
    start = datetime(2026, 10, 1, 5, 0, tzinfo=UTC)  # 13:00 in the district
    worker = threading.Thread(
        target=run_simulator,
        args=(config, stop),
        kwargs={"speed": 60.0, "start": start, "seed": 1},
        name="simulator",
    )
    worker.start()
    try:
        arrived = recorder.wait_for_counts(timeout=20)
    finally:
        stop.set()
        worker.join(timeout=20)
    assert not worker.is_alive()

    assert arrived, f"missing counts from {sorted(expected - set(recorder.counts))}"
    assert set(recorder.counts) == expected
    for (site_id, camera_id), message in recorder.counts.items():
        camera = next(c for c in config.site(site_id).cameras if c.id == camera_id)
        assert [z.zone_id for z in message.zones] == [z.id for z in camera.zones]
        assert message.interval_s == 0.2
        # Live data: the real clock, not the simulated one.
        assert abs((datetime.now(UTC) - message.ts).total_seconds()) < 60
    assert all(states[0] == AVAILABLE_ONLINE for states in recorder.available.values())
    # A clean stop marks every simulated camera offline: its zones become "no data", not 0.
    assert recorder.wait_for_offline(timeout=10)
    assert set(recorder.available) == expected


def test_the_tunnels_bus_line_sees_a_bus_sized_share_of_its_flow(
    district: CrowdwatchConfig,
) -> None:
    site = district.site("road-tunnel-exit")
    camera = SimulatedCamera(site, site.cameras[0], seed=11)
    ts = datetime(2026, 10, 1, 1, 0, tzinfo=UTC)

    # A simulated morning peak, 5-minute counts (09:00 -> 11:00 local).
    messages = [camera.counts(ts, 9.0 + i / 12, 300.0) for i in range(24)]

    def total(line_id: str) -> int:
        return sum(
            c.in_count + c.out_count for m in messages for c in m.lines if c.line_id == line_id
        )

    every, buses = total("exit-line"), total("exit-line-bus")
    assert every > 1000
    # TRAFFIC_MIX gives buses 3 % of the camera's vehicles: Poisson noise on ~4 % of that.
    assert 0.02 * every <= buses <= 0.04 * every
