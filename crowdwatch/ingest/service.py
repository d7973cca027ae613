"""The ingest service: MQTT counts and status in, PostgreSQL rows out.

::

    paho thread ── on_message ──► bounded queue ──► writer thread
    (enqueue only; blocks when       (Envelope)      validate → batch (size or time)
     the queue is full, which                        → one transaction (COPY, upserts)
     slows the broker down)                          → retry with backoff on a lost DB

Several ingest processes share the load as one MQTT 5 shared-subscription group.

Delivery guarantee as it stands: paho acknowledges a QoS 1 message to the broker as soon as
the callback has queued it, before the row is committed.  A clean stop (``stop()``, SIGTERM)
writes everything queued first, and a database outage only delays writes (the batch is
retried until it commits), so nothing is lost in either case; a crash of the process itself
loses what was queued but not yet committed (at most one queue's worth).  Redelivered or
duplicated messages are harmless: every raw row is keyed by its message id.

Retained messages are not delivered to shared subscriptions (MQTT 5 rule), so a new ingest
group does not see the ``available``/``status`` values retained before it subscribed; it
sees every change after that.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

from crowdwatch.contracts.config import CrowdwatchConfig
from crowdwatch.contracts.errors import StorageError
from crowdwatch.contracts.messages import TopicKind, camera_topic_filter, utc_now
from crowdwatch.ingest.metrics import IngestMetrics, IngestStats
from crowdwatch.ingest.validate import Envelope, MessageValidator
from crowdwatch.ingest.writer import BatchWriter, Item
from crowdwatch.mqtt.client import MqttClient
from crowdwatch.storage.db import connect
from crowdwatch.storage.migrate import ensure_partition_window, upgrade

logger = logging.getLogger(__name__)

SUMMARY_EVERY_S = 30.0
PARTITIONS_EVERY_S = 3600.0
MAX_BACKOFF_S = 30.0


@dataclass(frozen=True, slots=True)
class _Flush:
    done: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True, slots=True)
class _Stop:
    pass


_QueueItem = Envelope | _Flush | _Stop


def default_client_id(worker: str = "0") -> str:
    """``crowdwatch-ingest-{hostname}-{worker}``: stable across restarts.

    The session is persistent (``clean_start=False``), so a restarted worker must come back
    under the same id to take over what the broker queued for it; with a per-process id the
    old session would keep receiving its share of a shared subscription while nobody reads it.
    Run several workers on one host with different ``worker`` names.
    """
    return f"crowdwatch-ingest-{socket.gethostname()}-{worker}"


class IngestService:
    """Subscribe to every camera's counts, status and availability; write them in batches.

    Args:
        config: the district config (its ``mqtt`` section and cameras).
        db_url: libpq URL of a migrated database (see :func:`~crowdwatch.storage.migrate.upgrade`).
        client_id: MQTT client id; default :func:`default_client_id`.
        batch_size: write when this many messages are waiting...
        batch_interval_s: ...or when the oldest waiting message is this old.
        queue_size: messages held in memory before the MQTT thread is made to wait.

    Example:
        >>> service = IngestService(config, url)
        >>> service.start()
        >>> service.flush()  # everything received so far is committed
        True
        >>> service.stop()
    """

    def __init__(
        self,
        config: CrowdwatchConfig,
        db_url: str,
        *,
        client_id: str | None = None,
        batch_size: int = 500,
        batch_interval_s: float = 0.5,
        queue_size: int = 10_000,
    ) -> None:
        self._config = config
        self._db_url = db_url
        self._batch_size = batch_size
        self._batch_interval_s = batch_interval_s
        self._queue: queue.Queue[_QueueItem] = queue.Queue(maxsize=queue_size)
        self._validator = MessageValidator(config)
        self._writer = BatchWriter(db_url)
        self._metrics = IngestMetrics()
        self._mqtt = MqttClient(config.mqtt, client_id or default_client_id(), clean_start=False)
        self._thread = threading.Thread(target=self._run, name="ingest-writer")
        self._closing = threading.Event()
        self._abort = threading.Event()

    def start(self, timeout: float = 10.0) -> None:
        """Start the writer thread, connect to the broker and subscribe.

        Raises:
            BrokerError: the broker is unreachable or refused us (the writer is stopped again).
        """
        self._thread.start()
        prefix = self._config.mqtt.topic_prefix
        for kind in (TopicKind.COUNTS, TopicKind.STATUS, TopicKind.AVAILABLE):
            self._mqtt.subscribe(camera_topic_filter(prefix, kind), self._on_message, shared=True)
        try:
            self._mqtt.connect(timeout)
        except BaseException:
            self._stop_writer(timeout)
            raise
        logger.info("ingest started: %s -> database", prefix)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every message received so far is committed.

        Returns:
            False when that did not happen within ``timeout`` seconds (database down?).
        """
        marker = _Flush()
        try:
            self._queue.put(marker, timeout=timeout)
        except queue.Full:
            return False
        return marker.done.wait(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Disconnect from the broker, write what is queued, and stop.

        Args:
            timeout: how long to keep retrying the last batches if the database is away;
                after that they are dropped with an error in the log.
        """
        self._closing.set()
        self._mqtt.close()
        self._stop_writer(timeout)
        logger.info("ingest stopped: %s", self.stats().summary())

    def stats(self) -> IngestStats:
        """The counters since start (thread-safe snapshot)."""
        return self._metrics.snapshot(queued=self._queue.qsize())

    def _stop_writer(self, timeout: float) -> None:
        if not self._thread.is_alive():
            return
        deadline = time.monotonic() + timeout
        try:
            self._queue.put(_Stop(), timeout=timeout)
        except queue.Full:
            self._abort.set()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            self._abort.set()
            self._thread.join()

    # paho's network thread

    def _on_message(self, topic: str, payload: bytes) -> None:
        self._metrics.message_in()
        envelope = Envelope(topic=topic, payload=payload, received_at=utc_now())
        while True:
            try:
                # Blocking is the backpressure: paho stops reading and the broker holds on.
                self._queue.put(envelope, timeout=0.5)
                return
            except queue.Full:
                if self._closing.is_set():
                    logger.error("queue full while stopping: dropped a message on %s", topic)
                    return

    # the writer thread

    def _run(self) -> None:
        batch: list[Envelope] = []
        batch_deadline = 0.0
        next_summary = time.monotonic() + SUMMARY_EVERY_S
        next_partitions = time.monotonic() + PARTITIONS_EVERY_S
        try:
            while True:
                now = time.monotonic()
                wait = batch_deadline - now if batch else 1.0
                try:
                    item: _QueueItem | None = self._queue.get(timeout=max(0.0, wait))
                except queue.Empty:
                    item = None
                if isinstance(item, Envelope):
                    if not batch:
                        batch_deadline = time.monotonic() + self._batch_interval_s
                    batch.append(item)
                if batch and (
                    len(batch) >= self._batch_size
                    or time.monotonic() >= batch_deadline
                    or isinstance(item, _Flush | _Stop)
                ):
                    self._commit(batch)
                    batch = []
                if isinstance(item, _Flush):
                    item.done.set()
                elif isinstance(item, _Stop):
                    return
                now = time.monotonic()
                if now >= next_summary:
                    next_summary = now + SUMMARY_EVERY_S
                    logger.info("ingest: %s", self.stats().summary())
                if now >= next_partitions:
                    next_partitions = now + PARTITIONS_EVERY_S
                    self._maintain_partitions()
        finally:
            self._writer.close()

    def _commit(self, envelopes: list[Envelope]) -> None:
        try:
            items = [r for r in map(self._validator.validate, envelopes) if r is not None]
            if items:
                self._write_with_retry(items, oldest=envelopes[0].received_at)
        except Exception:
            # A bug here must not stop the service; the batch is lost, and the log says so.
            logger.exception("ingest dropped a batch of %d messages", len(envelopes))

    def _write_with_retry(self, items: list[Item], oldest: datetime) -> None:
        delay = 0.5
        while True:
            try:
                result = self._writer.write(items)
            except StorageError as exc:
                self._metrics.db_error()
                if self._abort.is_set():
                    logger.error("giving up on a batch of %d messages: %s", len(items), exc)
                    return
                logger.error(
                    "batch of %d not written, retrying in %.1f s: %s", len(items), delay, exc
                )
                self._abort.wait(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)
                continue
            latency = (utc_now() - oldest).total_seconds()
            self._metrics.batch_written(result.rows_written, result.dead_letters, latency)
            return

    def _maintain_partitions(self) -> None:
        try:
            conn = connect(self._db_url, autocommit=True)
            try:
                created = ensure_partition_window(conn)
            finally:
                conn.close()
        except StorageError as exc:
            logger.warning("partition upkeep failed (rows go to DEFAULT meanwhile): %s", exc)
            return
        if created:
            logger.info("created partitions %s", ", ".join(created))


def run_ingest(config: CrowdwatchConfig, stop: threading.Event, *, worker: str = "0") -> None:
    """Upgrade the schema, then ingest until ``stop`` is set; flush and disconnect.

    Args:
        config: the district config; the database URL comes from ``database`` (or
            ``CROWDWATCH_DATABASE_URL``).
        stop: set it (e.g. from a SIGTERM handler) to stop.
        worker: this worker's name on its host (its MQTT client id is built from it).

    Raises:
        ConfigError: no database URL.
        StorageError: the database is unreachable at start.
        BrokerError: the broker is unreachable or refused us at start.
    """
    url = config.database.resolved_url()
    version = upgrade(url, config)
    logger.info("database schema at version %d", version)
    service = IngestService(config, url, client_id=default_client_id(worker))
    service.start()
    try:
        stop.wait()
    finally:
        service.stop()
