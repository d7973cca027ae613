"""The queue between paho's thread and the writer: batches, urgency, backpressure."""

from __future__ import annotations

import threading
import time

import pytest

from crowdwatch.ingest.intake import BatchIntake


def test_take_waits_for_a_batch_and_hands_over_everything_waiting_up_to_the_limit() -> None:
    intake: BatchIntake[int] = BatchIntake(100)
    for i in range(7):
        assert intake.put(i, timeout=0)
    assert intake.take(want=5, limit=4, timeout=1.0) == [0, 1, 2, 3]
    assert intake.take(want=1, limit=10, timeout=1.0) == [4, 5, 6]
    assert intake.qsize() == 0


def test_a_short_batch_is_handed_over_at_the_deadline() -> None:
    intake: BatchIntake[int] = BatchIntake(100)
    intake.put(1, timeout=0)
    started = time.monotonic()
    assert intake.take(want=10, limit=10, timeout=0.2) == [1]
    assert time.monotonic() - started >= 0.19


def test_the_consumer_wakes_when_its_batch_is_full_not_for_each_item() -> None:
    intake: BatchIntake[int] = BatchIntake(100)
    got: list[list[int]] = []
    consumer = threading.Thread(target=lambda: got.append(intake.take(3, 10, timeout=5.0)))
    consumer.start()
    time.sleep(0.05)
    intake.put(1, timeout=0)
    intake.put(2, timeout=0)
    time.sleep(0.1)
    assert consumer.is_alive()  # two of three: still waiting
    intake.put(3, timeout=0)
    consumer.join(2.0)
    assert got == [[1, 2, 3]]


def test_an_urgent_item_wakes_the_consumer_at_once_and_keeps_its_place() -> None:
    intake: BatchIntake[str] = BatchIntake(100)
    intake.put("a", timeout=0)
    intake.put("flush", timeout=0, urgent=True)
    started = time.monotonic()
    assert intake.take(want=50, limit=100, timeout=5.0) == ["a", "flush"]
    assert time.monotonic() - started < 1.0
    intake.put("b", timeout=0)
    started = time.monotonic()
    assert intake.take(want=50, limit=100, timeout=0.2) == ["b"]  # urgency was used up
    assert time.monotonic() - started >= 0.19


def test_put_blocks_while_full_and_resumes_when_the_consumer_takes() -> None:
    intake: BatchIntake[int] = BatchIntake(2)
    assert intake.put(1, timeout=0) and intake.put(2, timeout=0)
    assert not intake.put(3, timeout=0.05)
    threading.Timer(0.1, lambda: intake.take(1, 1, timeout=0)).start()
    assert intake.put(3, timeout=2.0)
    assert intake.take(1, 10, timeout=0) == [2, 3]


def test_a_queue_without_room_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        BatchIntake(0)
