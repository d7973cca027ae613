"""The bounded queue between paho's thread and the ingest's writer, handed over in batches.

A ``queue.Queue`` wakes its consumer for every item: with the writer waiting for a batch to
fill, each received message costs a wake-up, a hand-over of the GIL between the two threads
and a ``get`` call, which on a busy ingest is as much CPU as the message's own processing.
:class:`BatchIntake` wakes the writer only when what it waits for is there (a batch's worth,
or an urgent item such as a flush marker) or when its deadline passes, and hands over every
waiting item at once, up to a limit; under a backlog the writer so takes large batches, and
when quiet it is woken by the first message and then by the batch's deadline.

The producer blocks while the queue is full, as with ``queue.Queue``: that is the ingest's
backpressure (paho stops reading and the broker holds the messages).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class BatchIntake(Generic[T]):
    """A bounded FIFO whose consumer takes lists of items.

    Args:
        maxsize: the most items held; :meth:`put` blocks beyond it.

    Example:
        >>> intake: BatchIntake[int] = BatchIntake(10)
        >>> intake.put(1, timeout=0.1) and intake.put(2, timeout=0.1)
        True
        >>> intake.take(want=2, limit=10, timeout=0.1)
        [1, 2]
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"expected a queue size of at least 1, got {maxsize}")
        self._maxsize = maxsize
        self._items: deque[tuple[T, bool]] = deque()
        """(item, urgent), oldest first"""
        self._lock = threading.Lock()
        self._not_full = threading.Condition(self._lock)
        self._ready = threading.Condition(self._lock)
        self._want = 1
        self._urgent = 0

    def qsize(self) -> int:
        """Items waiting."""
        with self._lock:
            return len(self._items)

    def put(self, item: T, timeout: float, *, urgent: bool = False) -> bool:
        """Append ``item``, waiting up to ``timeout`` seconds for room.

        Args:
            item: what to hand to the consumer.
            timeout: how long to wait while the queue is full.
            urgent: wake the consumer now, whatever it waits for (markers: flush, stop).

        Returns:
            False when there was no room within ``timeout`` (nothing was added).
        """
        deadline = time.monotonic() + timeout
        with self._not_full:
            while len(self._items) >= self._maxsize:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._not_full.wait(left)
            self._items.append((item, urgent))
            if urgent:
                self._urgent += 1
            if urgent or len(self._items) >= self._want:
                self._ready.notify()
            return True

    def take(self, want: int, limit: int, timeout: float) -> list[T]:
        """Wait until ``want`` items (or an urgent one) are waiting, or ``timeout`` passes;
        then take every waiting item, at most ``limit``, oldest first.

        Args:
            want: how many items are worth waking for (at least 1).
            limit: the most items taken at once.
            timeout: the longest wait, in seconds (0: do not wait).

        Returns:
            The items taken (empty when none came within ``timeout``).
        """
        deadline = time.monotonic() + timeout
        with self._ready:
            self._want = max(1, want)
            while len(self._items) < self._want and not self._urgent:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._ready.wait(left)
            self._want = 1
            taken: list[T] = []
            for _ in range(min(limit, len(self._items))):
                item, urgent = self._items.popleft()
                self._urgent -= urgent
                taken.append(item)
            if taken:
                self._not_full.notify_all()
            return taken
