"""The ingest service: MQTT counts and status in, PostgreSQL rows out.

::

    paho thread ── on_message ──► bounded queue ──► writer thread ──► committer thread
    (enqueue only; blocks when       (Envelope)      batch (size or     date offline notices
     the queue is full, which        handed over     time) → validate   → one transaction
     slows the broker down)          in batches                         (COPY, upserts)
                                                                        → PUBACK each message
                                                                        → retry with backoff
                                                                          on a lost DB

The writer validates batch N+1 while the committer waits on the database for batch N (one
validated batch in between): the database round trips, which release the GIL, overlap the
validation instead of following it.  The committer alone writes and acknowledges, in order.

Batches adapt to the load: a batch is written when ``batch_size`` messages are waiting or
when its oldest is ``batch_interval_s`` old, and under a backlog the writer takes everything
waiting, up to ``MAX_BATCH_FACTOR`` times ``batch_size``, into one transaction (fewer
statements and round trips per message exactly when the ingest is behind).  The queue wakes
the writer per batch, not per message (:mod:`crowdwatch.ingest.intake`).

Delivery guarantee: **a message is acknowledged to the broker only after its rows (or its
dead letter) are committed** (paho's manual ack, ``Client(manual_ack=True)``).  The session is
persistent (MQTT 5 ``clean_start=False`` with a session expiry; 3.1.1 ``clean_session=False``)
under a client id that is stable across restarts, so whatever was received but not committed
when the process dies (SIGKILL, power loss) is sent again by the broker when the worker comes
back, and a database outage only delays the acknowledgements.  Every raw row is keyed by its
message id, so a redelivered message is written once: exactly once in the database, given
that the broker keeps the session (``max_queued_messages`` must hold an outage's worth).

The broker limits the unacknowledged messages in flight: an MQTT 5 client announces its
Receive Maximum (here the queue size), while mosquitto's ``max_inflight_messages`` (default
20) applies to 3.1.1 clients; raise it there or a whole batch never fills.  amqtt, the demo's
3.1.1 broker, waits 5 s for each acknowledgement and then forgets the message, so on amqtt
the guarantee holds only while batches commit within 5 s (it does not redeliver).

Several ingest processes share the load as one MQTT 5 shared-subscription group
(``$share/{group}/...``), each with its own worker name (client id).  When one is lost, a
surviving one stands in for it on its session until it comes back
(:mod:`crowdwatch.ingest.takeover`): the broker would otherwise keep its share waiting.

Retained messages are not delivered to shared subscriptions (MQTT 5 rule), so a new ingest
group does not see the ``available``/``status`` values retained before it subscribed; it
sees every change after that.  How an ``available: offline`` notice is dated (it has no
timestamp of its own): :mod:`crowdwatch.ingest.offline`.

Metrics (:mod:`crowdwatch.ingest.metrics`): ``GET /metrics`` on ``metrics_port`` for
Prometheus, and a retained :class:`~crowdwatch.contracts.messages.IngestStatsMessage` on
``{prefix}/v1/_ingest/{worker}/stats`` every ``stats_every_s``.  Each camera's edge clock
offset (receive time minus ``ts``) is among the metrics, and logged when it is off by more
than half a minute: :mod:`crowdwatch.ingest.clock`.
"""

from __future__ import annotations

import functools
import logging
import queue
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

from crowdwatch.contracts.config import CrowdwatchConfig
from crowdwatch.contracts.errors import BrokerError, StorageError
from crowdwatch.contracts.messages import (
    MAX_FUTURE,
    TopicKind,
    camera_topic_filter,
    clipped,
    encode,
    ingest_presence_filter,
    ingest_presence_topic,
    ingest_stats_topic,
    utc_now,
)
from crowdwatch.ingest.clock import WINDOW_S, ClockSkew
from crowdwatch.ingest.exposition import MetricsServer
from crowdwatch.ingest.intake import BatchIntake
from crowdwatch.ingest.metrics import (
    CLOCK_SKEW_METRIC,
    IngestMetrics,
    IngestStats,
    prometheus_text,
    stats_message,
)
from crowdwatch.ingest.offline import DatabaseLastSeen, OfflineDating
from crowdwatch.ingest.takeover import OFFLINE, ONLINE, Presence, Takeover
from crowdwatch.ingest.validate import Accepted, Envelope, MessageValidator, Rejected
from crowdwatch.ingest.writer import BatchWriter, Item
from crowdwatch.mqtt.client import Delivery, MqttClient
from crowdwatch.storage.maintenance import Maintenance
from crowdwatch.storage.migrate import require_schema, upgrade

logger = logging.getLogger(__name__)

SUMMARY_EVERY_S = 30.0
MAX_BACKOFF_S = 30.0
MAX_RECEIVE_MAXIMUM = 65535
MAX_BATCH_FACTOR = 4
"""Under a backlog a batch takes up to this many times ``batch_size`` messages."""
"""The largest Receive Maximum MQTT 5 can express."""


@dataclass(frozen=True, slots=True)
class _Received:
    envelope: Envelope
    delivery: Delivery
    client: MqttClient
    """The connection it came on (ours or a stand-in's): the ack goes back there."""


@dataclass(frozen=True, slots=True)
class _Flush:
    done: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True, slots=True)
class _Stop:
    pass


_QueueItem = _Received | _Flush | _Stop


@dataclass(frozen=True, slots=True)
class _Validated:
    batch: list[_Received]
    items: list[Item] | None
    """What to write; None: validating the batch met a bug, so it is written one by one."""


_Stage = _Validated | _Flush | _Stop


def default_client_id(worker: str = "0") -> str:
    """``crowdwatch-ingest-{hostname}-{worker}``: stable across restarts.

    The session is persistent (``clean_start=False``), so a restarted worker must come back
    under the same id to take over what the broker queued for it; with a per-process id the
    old session would keep receiving its share of a shared subscription while nobody reads it.
    Run several workers on one host with different ``worker`` names.
    """
    return f"crowdwatch-ingest-{socket.gethostname()}-{worker}"


def worker_label(client_id: str) -> str:
    """The worker's name in metrics and in its stats topic: the client id without the
    ``crowdwatch-ingest-`` prefix, with characters a topic level cannot hold replaced."""
    name = client_id.removeprefix("crowdwatch-ingest-")
    return re.sub(r"[^A-Za-z0-9_.-]", "-", name) or "ingest"


class IngestService:
    """Subscribe to every camera's counts, status and availability; write them in batches.

    Args:
        config: the district config (its ``mqtt`` section and cameras).
        db_url: libpq URL of a migrated database (see :func:`~crowdwatch.storage.migrate.upgrade`).
        client_id: MQTT client id; default :func:`default_client_id`.
        batch_size: write when this many messages are waiting...
        batch_interval_s: ...or when the oldest waiting message is this old.
        queue_size: messages held in memory (received, not yet acknowledged); also the MQTT 5
            Receive Maximum, so the broker never sends more than this unacknowledged.
        metrics_port: serve Prometheus ``/metrics`` on this port (0: a free one, see
            :attr:`metrics_port`); None: no endpoint.
        metrics_host: listen address of the endpoint.
        stats_every_s: publish the retained stats message this often (0: never).
        skew_window_s: the window of each camera's clock-skew figure, and how long a camera
            stays behind before the warning (see :mod:`crowdwatch.ingest.clock`).

    Example:
        >>> service = IngestService(config, url)  # doctest: +SKIP
        >>> service.start()  # doctest: +SKIP
        >>> service.flush()  # doctest: +SKIP
        True
        >>> service.stop()  # doctest: +SKIP

        ``flush`` returns once everything received so far is committed and acknowledged.
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
        metrics_port: int | None = None,
        metrics_host: str = "127.0.0.1",
        stats_every_s: float = 10.0,
        skew_window_s: float = WINDOW_S,
    ) -> None:
        self._config = config
        self._db_url = db_url
        self._batch_size = batch_size
        self._batch_interval_s = batch_interval_s
        self._queue: BatchIntake[_QueueItem] = BatchIntake(queue_size)
        self._skew = ClockSkew(skew_window_s, max_future_s=MAX_FUTURE.total_seconds())
        self._validator = MessageValidator(config, clock_skew=self._skew)
        self._writer = BatchWriter(db_url)
        self._last_seen = DatabaseLastSeen(db_url)
        self._dating = OfflineDating(self._last_seen)
        self._metrics = IngestMetrics()
        client_id = client_id or default_client_id()
        self.worker = worker_label(client_id)
        self._receive_maximum = min(queue_size, MAX_RECEIVE_MAXIMUM)
        mqtt = config.mqtt
        group = mqtt.shared_group if mqtt.protocol == "5" else None
        # Peers stand in for a lost worker only where they share its messages.
        self._takeover: Takeover | None = None
        presence: dict[str, tuple[str, bytes]] = {}
        if group is not None:
            self._takeover = Takeover(
                mqtt.topic_prefix, group, self.worker, self._stand_in, self._publish_retained
            )
            self._presence_topic = ingest_presence_topic(mqtt.topic_prefix, self.worker)
            for state in (ONLINE, OFFLINE):
                payload = Presence(self.worker, client_id, group, state).encode()
                presence[state] = (self._presence_topic, payload)
        self._offline = presence.get(OFFLINE)
        self._mqtt = MqttClient(
            mqtt,
            client_id,
            will=self._offline,
            birth=presence.get(ONLINE),
            clean_start=False,
            manual_ack=True,
            receive_maximum=self._receive_maximum,
        )
        self._stats_topic = ingest_stats_topic(config.mqtt.topic_prefix, self.worker)
        self._stats_every_s = stats_every_s
        self._thread = threading.Thread(target=self._run, name="ingest-writer")
        # One batch waits validated while the previous one is being committed.
        self._validated: queue.Queue[_Stage] = queue.Queue(maxsize=1)
        self._committer = threading.Thread(target=self._commit_loop, name="ingest-committer")
        self._reporter = threading.Thread(target=self._report, name="ingest-stats")
        self._closing = threading.Event()
        self._abort = threading.Event()
        self._metrics_server = (
            None
            if metrics_port is None
            else MetricsServer(self._prometheus_text, metrics_host, metrics_port)
        )

    @property
    def metrics_port(self) -> int | None:
        """The port of the ``/metrics`` endpoint (None when there is none)."""
        return None if self._metrics_server is None else self._metrics_server.port

    def start(self, timeout: float = 10.0) -> None:
        """Start the writer thread, connect to the broker and subscribe.

        Raises:
            BrokerError: the broker is unreachable or refused us (the writer is stopped again).
        """
        self._thread.start()
        self._committer.start()
        prefix = self._config.mqtt.topic_prefix
        self._subscribe(self._mqtt)
        if self._takeover is not None:
            self._mqtt.subscribe(ingest_presence_filter(prefix), self._takeover.on_presence)
        try:
            self._mqtt.connect(timeout)
        except BaseException:
            self._stop_writer(timeout)
            self._close_metrics()
            raise
        if self._takeover is not None:
            self._takeover.start()
        if self._metrics_server is not None:
            self._metrics_server.start()
        self._reporter.start()
        logger.info("ingest %s started: %s -> database", self.worker, prefix)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every message received so far is committed (and acknowledged).

        Returns:
            False when that did not happen within ``timeout`` seconds (database down?).
        """
        marker = _Flush()
        if not self._queue.put(marker, timeout, urgent=True):
            return False
        return marker.done.wait(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Commit and acknowledge what is queued, disconnect, and stop.

        Args:
            timeout: how long to keep retrying the last batches if the database is away;
                after that they are left unacknowledged, and the broker delivers them again
                to the next worker with this client id.
        """
        deadline = time.monotonic() + timeout
        self._closing.set()
        if self._reporter.is_alive():
            self._reporter.join()
        # Commit while still connected, so the acknowledgements reach the broker.
        if self._thread.is_alive():
            self.flush(min(timeout, 10.0))
        if self._takeover is not None:
            self._takeover.stop()
        self._publish_stats(stopped=True)
        if self._offline is not None and self._mqtt.connected:
            # Our session still gets its share while we are away: a peer stands in.
            try:
                self._publish_retained(*self._offline)
            except BrokerError as exc:
                logger.warning("offline presence not published: %s", exc)
        self._mqtt.close()
        # What arrived after the flush is written, unacknowledged: redelivered, written once.
        self._stop_writer(max(0.0, deadline - time.monotonic()))
        self._close_metrics()
        self._last_seen.close()
        logger.info("ingest stopped: %s", self.stats().summary())

    def stats(self, *, clock_skew: bool = True) -> IngestStats:
        """The counters since start (thread-safe snapshot); ``clock_skew=False`` leaves out the
        per-camera skews (the one part whose cost grows with the district)."""
        skews = self._skew.skews() if clock_skew else {}
        return self._metrics.snapshot(queued=self._queue.qsize(), clock_skew=skews)

    def _prometheus_text(self, names: frozenset[str] | None) -> str:
        wanted = names is None or CLOCK_SKEW_METRIC in names
        return prometheus_text(self.stats(clock_skew=wanted), self.worker, names)

    def _close_metrics(self) -> None:
        if self._metrics_server is not None:
            self._metrics_server.close()

    def _stop_writer(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        if self._thread.is_alive() and not self._queue.put(_Stop(), timeout, urgent=True):
            self._abort.set()
        # The writer hands its stop on to the committer once its last batch is handed over.
        for thread in (self._thread, self._committer):
            if not thread.is_alive():
                continue
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                self._abort.set()
                thread.join()

    def standing_in(self) -> list[str]:
        """The lost workers whose sessions this one serves now (:mod:`.takeover`)."""
        return [] if self._takeover is None else self._takeover.standing_in()

    def _subscribe(self, client: MqttClient) -> None:
        prefix = self._config.mqtt.topic_prefix
        for kind in (TopicKind.COUNTS, TopicKind.STATUS, TopicKind.AVAILABLE):
            client.subscribe_deliveries(
                camera_topic_filter(prefix, kind),
                functools.partial(self._on_delivery, client=client),
                shared=True,
            )

    def _stand_in(self, client_id: str) -> MqttClient:
        """Connect under a lost worker's client id; its deliveries join our queue."""
        client = MqttClient(
            self._config.mqtt,
            client_id,
            stand_in=True,
            clean_start=False,
            manual_ack=True,
            receive_maximum=self._receive_maximum,
        )
        self._subscribe(client)
        client.connect()
        return client

    def _publish_retained(self, topic: str, payload: bytes) -> None:
        self._mqtt.publish(topic, payload, retain=True, timeout=5.0)

    # paho's network threads (ours and each stand-in's)

    def _on_delivery(self, delivery: Delivery, client: MqttClient) -> None:
        self._metrics.message_in()
        # A payload too big to be a message is cut here, before it waits in the queue.
        envelope = Envelope.received(
            delivery.topic, delivery.payload, utc_now(), retained=delivery.retain
        )
        received = _Received(envelope, delivery, client)
        # Blocking is the backpressure: paho stops reading and the broker holds on.
        while not self._queue.put(received, 0.5):
            if self._closing.is_set():
                # Not acknowledged: the broker delivers it again next time.
                logger.warning("queue full while stopping: left %s to the broker", delivery.topic)
                return

    # the stats thread

    def _report(self) -> None:
        next_summary = time.monotonic() + SUMMARY_EVERY_S
        every = self._stats_every_s if self._stats_every_s > 0 else SUMMARY_EVERY_S
        while not self._closing.wait(every):
            if self._stats_every_s > 0:
                self._publish_stats()
            if time.monotonic() >= next_summary:
                next_summary = time.monotonic() + SUMMARY_EVERY_S
                logger.info("ingest: %s", self.stats().summary())

    def _publish_stats(self, *, stopped: bool = False) -> None:
        if self._stats_every_s <= 0 or not self._mqtt.connected:
            return
        message = stats_message(self.stats(clock_skew=False), self.worker, stopped=stopped)
        try:
            self._mqtt.publish(self._stats_topic, encode(message), retain=True, timeout=5.0)
        except BrokerError as exc:
            logger.debug("stats not published: %s", exc)

    # the writer thread

    def _run(self) -> None:
        batch: list[_Received] = []
        batch_deadline = 0.0
        limit = self._batch_size * MAX_BATCH_FACTOR
        try:
            while True:
                if batch:
                    # Wake when the batch can be full, or at its deadline.
                    want = self._batch_size - len(batch)
                    wait = batch_deadline - time.monotonic()
                else:
                    want, wait = 1, 1.0
                items = self._queue.take(want, limit - len(batch), max(0.0, wait))
                for item in items:
                    if isinstance(item, _Received):
                        if not batch:
                            batch_deadline = time.monotonic() + self._batch_interval_s
                        batch.append(item)
                        continue
                    # A marker: what came before it is committed first.
                    if batch:
                        self._hand_over(batch)
                        batch = []
                    if isinstance(item, _Stop):
                        return
                    self._validated.put(item)
                if batch and (len(batch) >= self._batch_size or time.monotonic() >= batch_deadline):
                    self._hand_over(batch)
                    batch = []
        finally:
            # However the writer ends, the committer finishes what it was given and stops.
            self._validated.put(_Stop())

    def _hand_over(self, batch: list[_Received]) -> None:
        items: list[Item] | None
        try:
            checked = map(self._validator.validate, (r.envelope for r in batch))
            items = [r for r in checked if r is not None]
        except Exception:
            # A bug met on one message must not stop the service nor cost the other messages
            # of its batch: the committer writes them one at a time, so only the culprit is a
            # dead letter.
            logger.exception(
                "validating a batch of %d messages failed; writing them one by one", len(batch)
            )
            items = None
        self._validated.put(_Validated(batch, items))

    # the committer thread

    def _commit_loop(self) -> None:
        try:
            while True:
                stage = self._validated.get()
                if isinstance(stage, _Validated):
                    self._commit(stage)
                elif isinstance(stage, _Flush):
                    stage.done.set()
                else:
                    return
        finally:
            self._writer.close()

    def _commit(self, stage: _Validated) -> None:
        envelopes = [r.envelope for r in stage.batch]
        committed: bool | None = None
        if stage.items is not None:
            try:
                committed = self._write_with_retry(stage.items, envelopes[0].received_at)
            except Exception:
                logger.exception(
                    "ingest failed on a batch of %d messages; writing them one by one",
                    len(envelopes),
                )
        if committed is None:
            committed = all([self._commit_alone(e) for e in envelopes])
        if not committed:
            return  # left unacknowledged: the broker delivers them again
        for received in stage.batch:
            received.client.ack(received.delivery)
        self._metrics.acked(len(stage.batch))

    def _commit_alone(self, envelope: Envelope) -> bool:
        """Validate and write one message; what fails on it makes it a dead letter.

        Returns:
            False when stopping gave up on the database (left unacknowledged).
        """
        try:
            item = self._validator.validate(envelope)
            return self._write_with_retry([] if item is None else [item], envelope.received_at)
        except Exception as exc:
            logger.exception("ingest failed on a message from %s", clipped(envelope.topic, 200))
            reason = clipped(f"ingest error on this message: {type(exc).__name__}: {exc}")
        try:
            return self._write_with_retry([Rejected(envelope, reason)], envelope.received_at)
        except Exception:
            # Not even its dead letter can be written: say what it was, and acknowledge it
            # rather than have the broker send it again for ever.
            logger.exception(
                "dropped a message from %s (%d bytes, sha256 %s): not even its dead letter "
                "could be written",
                clipped(envelope.topic, 200),
                envelope.size,
                envelope.sha256(),
            )
            return True

    def _write_with_retry(self, items: list[Item], oldest: datetime) -> bool:
        """Write one batch, retrying while the database is away.

        Returns:
            True once committed (also for an empty batch); False when stopping gave up.
        """
        delay = 0.5
        while True:
            try:
                dated = self._dating.apply(items)
                result = self._writer.write(dated) if dated else None
            except StorageError as exc:
                self._metrics.db_error()
                if self._abort.is_set():
                    logger.error("giving up on a batch of %d messages: %s", len(items), exc)
                    return False
                logger.error(
                    "batch of %d not written, retrying in %.1f s: %s", len(items), delay, exc
                )
                self._abort.wait(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)
                continue
            if result is not None:
                latency = (utc_now() - oldest).total_seconds()
                newest = max((i.message.ts for i in dated if isinstance(i, Accepted)), default=None)
                self._metrics.batch_written(
                    result.rows_written, result.dead_letters, latency, newest
                )
            return True


def run_ingest(
    config: CrowdwatchConfig,
    stop: threading.Event,
    *,
    worker: str = "0",
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
) -> None:
    """Ingest until ``stop`` is set; as the owner, also migrate and keep the database up.

    With one URL for everything (``database.url`` or ``CROWDWATCH_DATABASE_URL``, no
    ``database.ingest_url``) ingest is the owner: it upgrades the schema at start and every
    worker runs the owner's upkeep (:class:`~crowdwatch.storage.maintenance.Maintenance`:
    partitions, rollups, retention; a database lock lets one refresh at a time).  With its own
    least-privilege URL (``database.ingest_url`` or ``CROWDWATCH_INGEST_DATABASE_URL``) it
    only checks that the schema is current and leaves the upkeep to ``crowdwatch db
    maintain``.

    Args:
        config: the district config; the database URL comes from ``database``.
        stop: set it (e.g. from a SIGTERM handler) to stop.
        worker: this worker's name on its host (its MQTT client id is built from it).
        metrics_port: serve Prometheus ``/metrics`` on this port; None: no endpoint.
        metrics_host: listen address of the endpoint.

    Raises:
        ConfigError: no database URL, or the metrics port cannot be bound.
        StorageError: the database is unreachable at start, or (own URL) not migrated.
        BrokerError: the broker is unreachable or refused us at start.
    """
    own_url = config.database.own_url("ingest")
    upkeep: Maintenance | None = None
    if own_url is None:
        url = config.database.resolved_url()
        version = upgrade(url, config)
        upkeep = Maintenance.for_config(url, config.database)
    else:
        url = own_url
        version = require_schema(url)
        logger.info(
            "ingest connects as its own user: partitions, rollups and retention are left to "
            "`crowdwatch db maintain`"
        )
    logger.info("database schema at version %d", version)
    service = IngestService(
        config,
        url,
        client_id=default_client_id(worker),
        metrics_port=metrics_port,
        metrics_host=metrics_host,
    )
    service.start()
    if upkeep is not None:
        upkeep.start()
    try:
        stop.wait()
    finally:
        if upkeep is not None:
            upkeep.stop()
        service.stop()
