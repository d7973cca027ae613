"""Which worker stands in for a lost one, and when it lets go (no broker: fake stand-ins).

The end-to-end proof on a real mosquitto with two real ingest processes is
``tests/test_ingest_faults.py::test_a_killed_workers_share_is_taken_over_by_its_peer_and_given_back``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import cast

import pytest

from crowdwatch.contracts.errors import BrokerError
from crowdwatch.ingest.takeover import OFFLINE, ONLINE, Presence, Takeover, holder
from crowdwatch.mqtt.client import MqttClient

PREFIX = "city"


class FakeStandIn:
    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self.connected = True
        self.closed = False

    def close(self) -> None:
        self.closed = True
        self.connected = False


class Harness:
    def __init__(self, worker: str, grace_s: float = 0.0) -> None:
        self.started: list[FakeStandIn] = []
        self.cleared: list[str] = []
        self.no_session: set[str] = set()
        self.takeover = Takeover(
            PREFIX, "ingest", worker, self._start, self._clear, grace_s=grace_s
        )

    def _start(self, client_id: str) -> MqttClient:
        if client_id in self.no_session:
            raise BrokerError("MQTT broker x refused us: no session to take over")
        client = FakeStandIn(client_id)
        self.started.append(client)
        return cast(MqttClient, client)

    def _clear(self, topic: str, payload: bytes) -> None:
        assert payload == b""
        self.cleared.append(topic)

    def say(self, worker: str, state: str, group: str = "ingest") -> None:
        presence = Presence(worker, f"crowdwatch-ingest-{worker}", group, state)
        self.takeover.on_presence(f"{PREFIX}/v1/_ingest/{worker}/presence", presence.encode())

    def live(self) -> list[str]:
        return [c.client_id for c in self.started if not c.closed]


def _until(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5.0
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture
def w2() -> Iterator[Harness]:
    harness = Harness("w2")
    harness.takeover.start()
    try:
        yield harness
    finally:
        harness.takeover.stop()


def test_every_worker_picks_the_same_holder_and_lost_workers_spread() -> None:
    online = {"a", "b", "c"}
    picks = {holder(f"lost-{i}", online) for i in range(30)}
    assert picks == online
    assert holder("x", {"b", "a"}) == holder("x", {"a", "b"})


def test_stands_in_for_an_offline_peer_and_lets_go_when_it_is_back(w2: Harness) -> None:
    w2.say("w1", ONLINE)
    w2.say("w2", ONLINE)
    time.sleep(0.1)
    assert w2.started == []
    w2.say("w1", OFFLINE)
    _until(lambda: w2.live() == ["crowdwatch-ingest-w1"])
    assert w2.takeover.standing_in() == ["w1"]
    w2.say("w1", ONLINE)
    _until(lambda: w2.live() == [])
    assert len(w2.started) == 1


def test_a_stand_in_whose_connection_was_lost_waits_for_the_next_loss(w2: Harness) -> None:
    w2.say("w1", OFFLINE)
    _until(lambda: len(w2.started) == 1)
    first = w2.started[0]
    # The owner's CONNECT took the session: mosquitto closes the stand-in's connection
    # without a reason, and the owner's online may come seconds later.
    first.connected = False
    _until(lambda: first.closed)  # the next recheck releases it
    time.sleep(1.5)  # more rechecks, w1 still reported offline
    assert len(w2.started) == 1, "a stand-in started again would take the owner's session"
    w2.say("w1", OFFLINE)  # reported lost again: stand in again
    _until(lambda: len(w2.started) == 2)


def test_only_the_chosen_survivor_stands_in(w2: Harness) -> None:
    lost = next(f"l{i}" for i in range(100) if holder(f"l{i}", {"w2", "w3"}) == "w3")
    w2.say("w3", ONLINE)
    w2.say(lost, OFFLINE)
    time.sleep(0.2)
    assert w2.started == []
    w2.say("w3", OFFLINE)  # the holder is lost too: w2 stands in for both
    _until(
        lambda: sorted(w2.live()) == sorted([f"crowdwatch-ingest-{lost}", "crowdwatch-ingest-w3"])
    )


def test_other_groups_and_own_presence_are_ignored(w2: Harness) -> None:
    w2.say("w9", OFFLINE, group="other")
    w2.say("w2", OFFLINE)
    time.sleep(0.2)
    assert w2.started == []


def test_a_lost_worker_without_a_session_is_forgotten(w2: Harness) -> None:
    w2.no_session.add("crowdwatch-ingest-old")
    w2.say("old", OFFLINE)
    _until(lambda: w2.cleared == [f"{PREFIX}/v1/_ingest/old/presence"])
    assert w2.started == []


def test_a_worker_back_within_the_grace_period_gets_no_stand_in() -> None:
    harness = Harness("w2", grace_s=1.0)
    harness.takeover.start()
    try:
        harness.say("w1", OFFLINE)  # a restart: its offline, then its online
        time.sleep(0.3)
        harness.say("w1", ONLINE)
        time.sleep(1.5)
        assert harness.started == []
        harness.say("w1", OFFLINE)  # lost for good: a stand-in once the grace is over
        time.sleep(0.3)
        assert harness.started == []
        _until(lambda: harness.live() == ["crowdwatch-ingest-w1"])
    finally:
        harness.takeover.stop()
