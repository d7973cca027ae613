"""The alert engine process: read the newest counts, evaluate rules, record and announce.

Every ``alerts.evaluate_every_s`` it reads ``zone_latest`` and ``camera_latest_status``, turns
them into zone readings, runs :class:`AlertEvaluator` and, for each transition, first writes
the ``alerts`` row (the unique index deduplicates) and then publishes an
:class:`AlertMessage` on ``{prefix}/v1/alerts/{site}`` at QoS 1.  A message the broker did not
acknowledge is kept and sent again on the next evaluation with the same ``message_id``
(at-least-once; consumers deduplicate by id).  A database outage reverts the transition so
the next evaluation tries again.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg

from crowdwatch.analytics.alert_store import insert_firing, resolve_firing
from crowdwatch.analytics.evaluator import AlertEvaluator, Transition
from crowdwatch.analytics.readings import zone_readings
from crowdwatch.contracts.config import CrowdwatchConfig
from crowdwatch.contracts.errors import BrokerError, CrowdwatchError, StorageError
from crowdwatch.contracts.messages import AlertMessage, alert_topic, encode
from crowdwatch.mqtt.client import MqttClient
from crowdwatch.storage.db import connect
from crowdwatch.storage.queries import active_alerts, latest_camera_status, latest_zone_counts

logger = logging.getLogger(__name__)

Publish = Callable[[str, bytes], None]
"""``publish(topic, payload)`` at QoS 1 that raises :class:`BrokerError` when not acknowledged."""


class AlertEngine:
    """One evaluation at a time, against a database and a publish callable.

    Args:
        config: the site config (sites, zones, rules, staleness).
        db_url: libpq URL of the crowdwatch database.
        publish: sends one payload to one topic, raising :class:`BrokerError` on failure.
    """

    def __init__(self, config: CrowdwatchConfig, db_url: str, publish: Publish) -> None:
        self._config = config
        self._db_url = db_url
        self._publish = publish
        self._evaluator = AlertEvaluator(config.alerts.rules)
        self._conn: psycopg.Connection | None = None
        self._restored = False
        self._unsent: list[AlertMessage] = []

    @property
    def evaluator(self) -> AlertEvaluator:
        return self._evaluator

    def tick(self, now: datetime | None = None) -> list[Transition]:
        """Evaluate once.

        Args:
            now: evaluation time (UTC-aware); the wall clock when omitted.

        Returns:
            The transitions recorded in the database at this evaluation.

        Raises:
            StorageError: the database is away (the engine reconnects on the next tick).
        """
        now = now or datetime.now(UTC)
        try:
            conn = self._connection()
            if not self._restored:
                firing = active_alerts(conn)
                self._evaluator.restore(a.alert_key for a in firing)
                self._restored = True
                logger.info("alert engine restored %d firing alert(s)", len(firing))
            self._send_unsent()
            readings = zone_readings(
                self._config, latest_zone_counts(conn), latest_camera_status(conn), now
            )
        except StorageError:
            self._drop_connection()
            raise
        recorded = []
        transitions = self._evaluator.evaluate(readings, now)
        for i, transition in enumerate(transitions):
            message = transition.message()
            try:
                stored = self._record(conn, message)
            except StorageError:
                # Unrecorded transitions must happen again on the next tick, not be lost.
                for pending in transitions[i:]:
                    self._evaluator.revert(pending)
                self._drop_connection()
                raise
            if stored:
                recorded.append(transition)
                self._announce(message)
        return recorded

    def close(self) -> None:
        """Close the database connection."""
        self._drop_connection()

    def _record(self, conn: psycopg.Connection, message: AlertMessage) -> bool:
        if message.state == "firing":
            row = insert_firing(conn, message)
        else:
            row = resolve_firing(conn, message)
        if row is None:
            # Another engine (a standby) got there first and notified; stay quiet.
            logger.info("alert %s already %s in the database", message.alert_key, message.state)
        return row is not None

    def _announce(self, message: AlertMessage) -> None:
        log = logger.warning if message.state == "firing" else logger.info
        log("alert %s %s: %s", message.state, message.alert_key, message.summary_en)
        if self._unsent:
            # Keep order: an earlier undelivered message goes first.
            self._unsent.append(message)
            return
        try:
            self._send(message)
        except BrokerError as exc:
            logger.warning("alert %s not delivered (%s); will retry", message.alert_key, exc)
            self._unsent.append(message)

    def _send_unsent(self) -> None:
        while self._unsent:
            try:
                self._send(self._unsent[0])
            except BrokerError as exc:
                logger.warning("%d alert message(s) still undelivered: %s", len(self._unsent), exc)
                return
            self._unsent.pop(0)

    def _send(self, message: AlertMessage) -> None:
        self._publish(alert_topic(self._config.mqtt.topic_prefix, message.site_id), encode(message))

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self._db_url, autocommit=True)
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def run_alerts(config: CrowdwatchConfig, stop: threading.Event) -> None:
    """Run the alert engine until ``stop`` is set.

    Connects to the broker (fails fast with :class:`BrokerError` if it cannot) and evaluates
    every ``config.alerts.evaluate_every_s``; database outages are logged and retried.

    Args:
        config: the site config; the database URL comes from ``config.database``.
        stop: set it to end the loop after the current evaluation.

    Raises:
        ConfigError: no database URL is configured.
        BrokerError: the MQTT broker is unreachable at start.
    """
    db_url = config.database.resolved_url()
    client = MqttClient(config.mqtt, client_id=f"crowdwatch-alerts-{uuid.uuid4().hex[:12]}")
    client.connect()

    def publish(topic: str, payload: bytes) -> None:
        client.publish(topic, payload, qos=1, timeout=5)

    engine = AlertEngine(config, db_url, publish)
    logger.info(
        "alert engine started: %d rule(s), every %g s",
        len(config.alerts.rules),
        config.alerts.evaluate_every_s,
    )
    try:
        while True:
            try:
                engine.tick()
            except CrowdwatchError as exc:
                logger.warning("alert evaluation failed: %s", exc)
            except Exception:
                # Top of a long-running loop: one bad evaluation must not end alerting.
                logger.exception("alert evaluation crashed")
            if stop.wait(config.alerts.evaluate_every_s):
                break
    finally:
        engine.close()
        client.close()
        logger.info("alert engine stopped")
