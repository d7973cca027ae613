"""The delivery worker: notifications leave here, retried with backoff, every attempt recorded.

The engine writes each notification to the ``notifications`` table (state ``queued``) in the
same transaction as the alert change, then hands it to :class:`Deliverer` and goes on
evaluating: it never waits for a channel.  Each channel has its own queue and worker
threads, so a robot that hangs (each attempt is bounded by the channel's ``timeout_s``) or
answers 500 delays only its own messages.  A failed attempt is retried after
``backoff_s``, doubled each time up to ``max_backoff_s``; after ``attempts`` tries the row is
``failed`` and the alert's history says so.  A row still ``queued`` when the engine stops is
sent by the next engine that holds the lease (:func:`queued_jobs`).

Notifications of one group (one alert, one site, one route) reach a channel in the order the
engine wrote them, whatever the number of workers: a later one waits until the earlier one is
sent or given up (:meth:`Deliverer.submit`).  Otherwise two workers could race and a chat
group would read "Cleared" after the re-firing that followed it, and believe the stop empty.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, assert_never

import psycopg
from psycopg.rows import dict_row
from pydantic import ValidationError

from crowdwatch.analytics import channels
from crowdwatch.analytics.actions import ENGINE, record_event
from crowdwatch.analytics.channels import MQTT_CHANNEL, DeliveryError, Publish
from crowdwatch.analytics.channels import mqtt as mqtt_channel
from crowdwatch.contracts.channels import AlertChannel
from crowdwatch.contracts.config import DeliveryConfig
from crowdwatch.contracts.errors import StorageError
from crowdwatch.contracts.notification import AlertPublication, Notification
from crowdwatch.storage.db import connect, transaction

logger = logging.getLogger(__name__)

__all__ = ["MQTT_CHANNEL", "Deliverer", "Job", "queued_jobs"]

Payload = Notification | AlertPublication
"""What a job carries: a notification for a configured channel, an alert message for MQTT."""


@dataclass(frozen=True, slots=True)
class Job:
    """One notification row to deliver to one channel."""

    notification_id: int
    channel_id: str
    alert_ids: tuple[int, ...]
    payload: Payload
    attempts: int = 0
    """attempts already made"""

    @property
    def order_key(self) -> tuple[str, str]:
        """Jobs with the same key are delivered one after another, in submission order."""
        match self.payload:
            case Notification():
                return (self.channel_id, self.payload.group)
            case AlertPublication():
                # Per site topic, not per alert: a site's next alert firing must not overtake
                # the "resolved" of its last one, or a subscriber reads the site as clear.
                return (self.channel_id, self.payload.topic)
            case _:
                assert_never(self.payload)


def decode_payload(channel_id: str, data: Any) -> Payload:
    """A stored ``notifications.payload`` as its contract (by the channel it was queued for).

    Raises:
        pydantic.ValidationError: the stored JSON is not the contract.
    """
    if channel_id == MQTT_CHANNEL:
        return AlertPublication.from_json(data)
    return Notification.from_json(data)


def queued_jobs(conn: psycopg.Connection) -> list[Job]:
    """Notifications a previous engine queued but did not finish, oldest first.

    A stored payload that is not the contract (written by hand, or by an older release that
    the contract no longer reads) is marked ``failed`` with the reason, not resent.

    Raises:
        StorageError: the database failed.
    """
    try:
        with conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                "SELECT id, channel_id, alert_ids, payload, attempts FROM notifications "
                "WHERE state = 'queued' ORDER BY id"
            ).fetchall()
    except psycopg.Error as exc:
        raise StorageError(f"cannot read queued notifications: {exc}") from exc
    jobs: list[Job] = []
    for r in rows:
        try:
            payload = decode_payload(r["channel_id"], r["payload"])
        except ValidationError as exc:
            reason = f"stored payload is not the notification contract: {exc.errors()[0]['msg']}"
            logger.warning("notification %d to %s: %s", r["id"], r["channel_id"], reason)
            with transaction(conn) as cur:
                cur.execute(
                    "UPDATE notifications SET state = 'failed', last_error = %s WHERE id = %s",
                    (reason[:500], r["id"]),
                )
            continue
        jobs.append(
            Job(int(r["id"]), r["channel_id"], tuple(r["alert_ids"]), payload, int(r["attempts"]))
        )
    return jobs


class Deliverer:
    """Per-channel queues and worker threads that send, retry and record.

    Args:
        db_url: where to record attempts (each worker has its own connection).
        channels: the configured channels by id.
        publish: the MQTT publish callable (channel :data:`MQTT_CHANNEL`).
        config: attempts and backoff.
    """

    def __init__(
        self,
        db_url: str,
        channels: Mapping[str, AlertChannel],
        publish: Publish,
        config: DeliveryConfig,
    ) -> None:
        self._db_url = db_url
        self._channels = dict(channels)
        self._publish = publish
        self._config = config
        self._queues: dict[str, queue.Queue[Job | None]] = {}
        self._threads: list[threading.Thread] = []
        self._retries: list[tuple[float, int, Job]] = []
        self._retry_lock = threading.Condition()
        self._seq = itertools.count()
        self._busy = 0
        self._idle = threading.Condition()
        self._stopping = threading.Event()
        self._order_lock = threading.Lock()
        self._waiting: dict[tuple[str, str], deque[Job]] = {}
        """per order key with a job in progress: the later jobs of that key, oldest first"""
        for channel_id in [MQTT_CHANNEL, *self._channels]:
            self._queues[channel_id] = queue.Queue()
            workers = 1 if channel_id == MQTT_CHANNEL else config.workers
            for i in range(workers):
                thread = threading.Thread(
                    target=self._work, args=(channel_id,), name=f"deliver-{channel_id}-{i}"
                )
                thread.start()
                self._threads.append(thread)
        self._scheduler = threading.Thread(target=self._schedule, name="deliver-retries")
        self._scheduler.start()

    def submit(self, job: Job) -> None:
        """Queue a job (never blocks).  Unknown channels (removed from the config) fail at once.

        A job whose group has an earlier job still in progress (queued, being sent or waiting
        for a retry) waits behind it and is queued when that one ends.
        """
        target = self._queues.get(job.channel_id)
        with self._idle:
            self._busy += 1
        if target is None:
            self._record_failure(job, "channel is not configured any more", final=True, conn=None)
            self._done()
            return
        with self._order_lock:
            later = self._waiting.get(job.order_key)
            if later is not None:
                later.append(job)
                return
            self._waiting[job.order_key] = deque()
        target.put(job)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every submitted job is delivered or given up (tests, benchmarks).

        Returns:
            True when idle, False on time-out.
        """
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)

    @property
    def pending(self) -> int:
        """Jobs submitted and not yet finished (waiting for a retry included)."""
        with self._idle:
            return self._busy

    def close(self, timeout: float = 10.0) -> None:
        """Stop the workers; jobs not yet delivered stay ``queued`` in the database."""
        self._stopping.set()
        for target in self._queues.values():
            for _ in range(self._config.workers):
                target.put(None)
        with self._retry_lock:
            self._retry_lock.notify_all()
        deadline = time.monotonic() + timeout
        for thread in [*self._threads, self._scheduler]:
            thread.join(max(0.1, deadline - time.monotonic()))
        # Jobs waiting behind their group stay queued in the database for the next engine.
        with self._order_lock:
            held = sum(len(later) for later in self._waiting.values())
            self._waiting.clear()
        for _ in range(held):
            self._done()

    def _done(self) -> None:
        with self._idle:
            self._busy -= 1
            self._idle.notify_all()

    def _finished(self, job: Job) -> None:
        """``job`` is sent or given up: queue the next job of its group, if one waits."""
        with self._order_lock:
            later = self._waiting.get(job.order_key)
            nxt = later.popleft() if later else None
            if nxt is None:
                self._waiting.pop(job.order_key, None)
        if nxt is not None:
            self._queues[nxt.channel_id].put(nxt)
        self._done()

    def _work(self, channel_id: str) -> None:
        conn: psycopg.Connection | None = None
        target = self._queues[channel_id]
        try:
            while True:
                job = target.get()
                if job is None or self._stopping.is_set():
                    if job is not None:
                        self._done()
                    return
                conn = self._attempt(job, conn)
        finally:
            if conn is not None:
                conn.close()

    def _send(self, job: Job) -> None:
        match job.payload:
            case AlertPublication():
                mqtt_channel.send(self._publish, job.payload)
            case Notification():
                channel = self._channels.get(job.channel_id)
                if channel is None:
                    raise DeliveryError(f"channel {job.channel_id!r} is not configured")
                channels.send(channel, job.payload)
            case _:
                assert_never(job.payload)

    def _attempt(self, job: Job, conn: psycopg.Connection | None) -> psycopg.Connection | None:
        attempt = replace_attempts(job, job.attempts + 1)
        try:
            self._send(job)
        except DeliveryError as exc:
            final = attempt.attempts >= self._config.attempts
            logger.warning(
                "notification %d to %s failed (attempt %d/%d): %s",
                job.notification_id,
                job.channel_id,
                attempt.attempts,
                self._config.attempts,
                exc,
            )
            conn = self._record_failure(attempt, str(exc), final=final, conn=conn)
            if final:
                self._finished(job)
            else:
                self._retry_later(attempt)
            return conn
        except Exception as exc:
            # A bug in one body must not kill the worker thread: record it, give up on it.
            logger.exception("notification %d to %s crashed", job.notification_id, job.channel_id)
            conn = self._record_failure(attempt, f"crashed: {exc!r}", final=True, conn=conn)
            self._finished(job)
            return conn
        conn = self._record(
            conn,
            "UPDATE notifications SET state = 'sent', attempts = %s, sent_at = now(), "
            "last_error = NULL WHERE id = %s",
            (attempt.attempts, job.notification_id),
        )
        self._finished(job)
        return conn

    def _delay(self, attempts: int) -> float:
        return float(min(self._config.max_backoff_s, self._config.backoff_s * 2 ** (attempts - 1)))

    def _retry_later(self, job: Job) -> None:
        due = time.monotonic() + self._delay(job.attempts)
        with self._retry_lock:
            heapq.heappush(self._retries, (due, next(self._seq), job))
            self._retry_lock.notify_all()

    def _schedule(self) -> None:
        with self._retry_lock:
            while not self._stopping.is_set():
                if not self._retries:
                    self._retry_lock.wait()
                    continue
                due, _, job = self._retries[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._retry_lock.wait(wait)
                    continue
                heapq.heappop(self._retries)
                self._queues[job.channel_id].put(job)
            # Stopping: retries still waiting stay queued in the database for the next engine.
            for _ in self._retries:
                self._done()
            self._retries.clear()

    def _record_failure(
        self, job: Job, error: str, *, final: bool, conn: psycopg.Connection | None
    ) -> psycopg.Connection | None:
        state = "failed" if final else "queued"
        next_at = datetime.now(UTC) + timedelta(seconds=self._delay(job.attempts))
        conn = self._record(
            conn,
            "UPDATE notifications SET state = %s, attempts = %s, last_error = %s, "
            "next_attempt_at = %s WHERE id = %s",
            (state, job.attempts, error[:500], next_at, job.notification_id),
            events=[(a, f"{job.channel_id}: {error}"[:500]) for a in job.alert_ids]
            if final
            else [],
        )
        return conn

    def _record(
        self,
        conn: psycopg.Connection | None,
        sql: str,
        params: tuple[Any, ...],
        events: list[tuple[int, str]] | None = None,
    ) -> psycopg.Connection | None:
        try:
            if conn is None or conn.closed:
                conn = connect(self._db_url, autocommit=True)
            with transaction(conn) as cur:
                cur.execute(sql, params)
                for alert_id, note in events or []:
                    record_event(cur, alert_id, datetime.now(UTC), "delivery_failed", ENGINE, note)
        except StorageError as exc:
            # The row stays as it was ('queued'): the next engine sends it again (at least once).
            logger.warning("cannot record a delivery attempt: %s", exc)
            if conn is not None:
                conn.close()
            return None
        return conn


def replace_attempts(job: Job, attempts: int) -> Job:
    """The same job with another attempt count."""
    return Job(job.notification_id, job.channel_id, job.alert_ids, job.payload, attempts)
