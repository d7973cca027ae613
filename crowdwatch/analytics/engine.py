"""The alert engine process: evaluate counts as they arrive, record, notify.

Two inputs feed one :class:`AlertEvaluator`:

- **Count messages over MQTT** (``alerts.listen_counts``, on by default): the engine has its
  own plain subscription to every camera's counts and evaluates the zones of each message
  (in small batches) as it arrives, so an alert leaves well under a second after the count
  was published.  A message whose ``ts`` is not newer than what the engine has for its
  zones (a redelivery, a late message) changes nothing.  Payloads arrive through a
  :class:`~crowdwatch.analytics.inbox.CountInbox`, which decodes each one alone: a hostile
  payload is counted and left out, never the end of alerting.
- **A periodic tick** every ``alerts.evaluate_every_s``: renews the lease, catches up with
  ``zone_latest`` and ``camera_latest_status`` (what ingest wrote, including anything missed
  over MQTT), judges staleness and offline cameras (no data: its own alert), and does the
  follow-ups — held-back notifications whose silence or mute window ended, timed
  escalation of unacknowledged alerts, hand escalations from the dispatcher page.

The tick's work follows what changed, not the size of the district (20,000 zones every 5 s
took ~40 % of a core and held the live path back).  It reads only the latest rows written
since its last read (:mod:`crowdwatch.storage.latest_changes`; every row at start and after a
reconnect), and of those only the whole rows of zones whose count is newer than the one the
live path brought.  It evaluates only the cameras where something can have moved:

- a zone with a newer count, or a camera whose report went offline or came back from it;
- a zone or camera with an alert in memory (pending ``for_s``, firing, clearing
  ``keep_firing_for_s``): its timers run without new data;
- a camera without data at its last evaluation, or with a zone whose count has gone stale
  since: its no-data seconds grow (the ``no_data_s`` rules);
- everything at start and when this engine takes the lease over.

A zone that none of these touch has the reading it had when it was last evaluated, so the
rules give what they gave then.  One exception, on purpose: a ``forecast_occupancy`` rule's
reference day (``alerts.reference_days``) is looked up when the zone's count changes, not
again while the count stands still (a live camera sends one every few seconds).

A firing alert at a bus stop with ``transit`` routes carries a dispatch recommendation
(:mod:`crowdwatch.analytics.dispatch_advice`), computed when people are told and on each
tick while it fires (it follows the counts): the notification says it, and
``dispatch_advice`` keeps the newest for the dispatcher page.

Who is told what is decided by the pure stages of :mod:`crowdwatch.analytics.planner`
(silence, mute, inhibit, route, group, escalate); the engine keeps the lease, the database,
the caches and the order.  Every change is written to PostgreSQL in one transaction per
evaluation (alerts, their history, pending timers, ``clearing_since``, and the notifications
to send), then the notifications go to the :class:`Deliverer` (per-channel worker threads,
retries with backoff) and the engine moves on.  A database outage reverts the evaluation so
the next one tries again.  State lives in the database, so a restarted engine (or a standby
taking over the lease) continues where the last one stopped, without notifying twice.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg

from crowdwatch.analytics.alert_store import (
    ActiveAlert,
    active_alert_states,
    hold_lease,
    pending_timers,
    queue_followups,
    record_batch,
    release_lease,
)
from crowdwatch.analytics.delivery import Deliverer, Job, queued_jobs
from crowdwatch.analytics.dispatch_actions import store_advice
from crowdwatch.analytics.dispatch_advice import RATE_WINDOW, StopAdvisor
from crowdwatch.analytics.evaluator import (
    AlertEvaluator,
    CameraReading,
    Transition,
    camera_readings,
)
from crowdwatch.analytics.forecast import ReferenceTrend
from crowdwatch.analytics.gtfs_import import read_gtfs
from crowdwatch.analytics.history import CountHistory
from crowdwatch.analytics.inbox import CountInbox
from crowdwatch.analytics.planner import Policy, plan_follow_ups, plan_transitions
from crowdwatch.analytics.readings import (
    ZoneReading,
    ZoneStatus,
    zone_reading,
    zone_status,
)
from crowdwatch.analytics.routing import channels_by_id
from crowdwatch.analytics.rules import CROWD_METRICS, alert_key, camera_alert_key
from crowdwatch.analytics.silences import Silence, active_silences
from crowdwatch.contracts.config import AlertMetric, CrowdwatchConfig
from crowdwatch.contracts.errors import CrowdwatchError, StorageError
from crowdwatch.contracts.ground import derived_capacities
from crowdwatch.contracts.messages import (
    MAX_PACKET_BYTES,
    CameraState,
    CountMessage,
    TopicKind,
    camera_topic_filter,
)
from crowdwatch.contracts.notification import DispatchAdvice
from crowdwatch.mqtt.client import MqttClient
from crowdwatch.storage.db import connect
from crowdwatch.storage.latest_changes import (
    ZoneStamp,
    change_mark,
    changed_offline_reports,
    changed_zones,
    zone_rows,
)
from crowdwatch.storage.queries import (
    AlertRow,
    CameraStatusRow,
    Resolution,
    ZoneLatest,
    latest_camera_status,
    latest_zone_counts,
    reference_series,
)

logger = logging.getLogger(__name__)

Publish = Callable[[str, bytes], None]
"""``publish(topic, payload)`` at QoS 1 that raises :class:`BrokerError` when not acknowledged."""

_REFERENCE_TTL_S = 300.0

CameraKey = tuple[str, str]
"""(site_id, camera_id)"""


@dataclass(frozen=True, slots=True)
class TickStats:
    """What one tick read and evaluated (the debug log; tests)."""

    full_read: bool
    """every latest row was read (start, after a reconnect), not only the changed ones"""
    zone_rows: int
    """``zone_latest`` rows read: the changed zones' stamps, then the whole rows needed"""
    camera_rows: int
    """``camera_latest_status`` rows read"""
    zones_evaluated: int


class AlertEngine:
    """The engine's state and one evaluation at a time (not thread-safe: one thread drives it).

    Args:
        config: the site config (sites, zones, rules, routes, channels).
        db_url: libpq URL of the crowdwatch database.
        publish: sends one payload to one topic, raising :class:`BrokerError` on failure.
        holder: this engine's name in the lease (default host, pid and a random part).
    """

    def __init__(
        self,
        config: CrowdwatchConfig,
        db_url: str,
        publish: Publish,
        *,
        holder: str | None = None,
    ) -> None:
        self._config = config
        self._alerts = config.alerts
        self._tz = config.district.timezone
        self._db_url = db_url
        self._holder = holder or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        windows = [r.window_s for r in self._alerts.rules] + [600.0]
        self._history = CountHistory(timedelta(seconds=max(windows) + 120))
        self._evaluator = AlertEvaluator(self._alerts.rules, self._history, self._reference)
        channels = channels_by_id(self._alerts)
        self._deliverer = Deliverer(db_url, channels, publish, self._alerts.delivery)
        self._conn: psycopg.Connection | None = None
        self._holding = False
        self._lease_until = 0.0
        self._seeded = False
        self._started_at = datetime.now(UTC)
        self._latest: dict[tuple[str, str], ZoneLatest] = {}
        self._camera_status: dict[CameraKey, CameraStatusRow] = {}
        self._cameras = {(s.id, c.id): (s, c) for s, c in config.cameras()}
        self._camera_order = {key: i for i, key in enumerate(self._cameras)}
        self._key_camera = _key_cameras(config)
        # The catch-up of the tick: where the next read of the latest rows starts (None:
        # read them all), whether the next evaluation takes every camera, and the cameras
        # without data at their last evaluation.
        self._mark: int | None = None
        self._evaluate_all = True
        self._no_data: set[CameraKey] = set()
        self.last_tick: TickStats | None = None
        """What the last tick that held the lease read and evaluated."""
        self._silences: list[Silence] = []
        self._active: dict[str, ActiveAlert] = {}
        self._references: dict[tuple[str, str, float], tuple[float, ReferenceTrend | None]] = {}
        self._now = self._started_at
        self._sites = {s.id: s for s in config.sites}
        self._zone_camera = {(s.id, z.id): c.id for s, c in config.cameras() for z in c.zones}
        self._advisor = _advisor(config)
        self._crowd_rules = {r.id for r in self._alerts.rules if r.metric in CROWD_METRICS}
        self._advice_stored: dict[int, str] = {}

    @property
    def evaluator(self) -> AlertEvaluator:
        return self._evaluator

    @property
    def holder(self) -> str:
        """This engine's name in the lease."""
        return self._holder

    @property
    def is_active(self) -> bool:
        """Whether this engine held the lease at its last renewal (the standby: False)."""
        return self._holding and time.monotonic() < self._lease_until

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued notification is delivered or given up (tests, benchmarks)."""
        return self._deliverer.wait_idle(timeout)

    def tick(self, now: datetime | None = None) -> list[Transition]:
        """One periodic evaluation: lease, what changed or is due (see the module), follow-ups.

        Args:
            now: evaluation time (UTC-aware); the wall clock when omitted.

        Returns:
            The transitions recorded in the database at this evaluation (none on a standby).

        Raises:
            StorageError: the database is away (the engine reconnects on the next tick).
        """
        now = now or datetime.now(UTC)
        self._now = now
        try:
            conn = self._connection()
            if not self._renew_lease(conn):
                return []
            if not self._seeded:
                self._seed_history(conn, now)
            self._silences = active_silences(conn, now)
            changed, read = self._catch_up(conn)
        except StorageError:
            self._drop_connection()
            raise
        readings = self._due_readings(changed, now)
        cameras = camera_readings(readings, now, self._started_at)
        self._note_no_data(cameras)
        transitions = self._evaluator.evaluate(readings, now, cameras)
        self.last_tick = replace(read, zones_evaluated=len(readings))
        logger.debug("alert tick: %s", self.last_tick)
        recorded = self._record(conn, transitions, now)
        try:
            self._follow_up(conn, now)
        except StorageError:
            self._drop_connection()
            raise
        return recorded

    def on_counts(
        self, messages: Iterable[CountMessage], now: datetime | None = None
    ) -> list[Transition]:
        """Evaluate the zones of freshly received count messages (the fast path).

        Args:
            messages: decoded count messages, in any order; duplicates and messages older
                than what the engine has are ignored.
            now: evaluation time; the wall clock when omitted.

        Returns:
            The transitions recorded (none on a standby or when nothing changed).

        Raises:
            StorageError: the database is away.
        """
        now = now or datetime.now(UTC)
        if not self.is_active:
            for message in messages:
                self._store_message(message)
            return []
        self._now = now
        # In time order, each camera evaluated after each of its messages: a short spike
        # followed by a calm count in the same batch still fires (and then resolves).
        transitions: list[Transition] = []
        for message in sorted(messages, key=lambda m: m.ts):
            if not self._store_message(message):
                continue
            readings = self._camera_zone_readings(message.site_id, message.camera_id, now)
            cameras = camera_readings(readings, now, self._started_at)
            self._note_no_data(cameras)
            transitions += self._evaluator.evaluate(readings, now, cameras)
        try:
            return self._record(self._connection(), transitions, now)
        except StorageError:
            self._drop_connection()
            raise

    def _store_message(self, message: CountMessage) -> bool:
        stored = False
        for zone in message.zones:
            stored = self._store_latest(ZoneLatest.of(message, zone)) or stored
        return stored

    def _camera_zone_readings(
        self, site_id: str, camera_id: str, now: datetime
    ) -> list[ZoneReading]:
        """The readings of one camera's zones (what ``zone_readings`` says, for one camera)."""
        found = self._cameras.get((site_id, camera_id))
        if found is None:
            return []
        site, camera = found
        status_row = self._camera_status.get((site_id, camera_id))
        rows = [self._latest.get((site_id, z.id)) for z in camera.zones]
        newest = max((r.ts for r in rows if r is not None), default=None)
        offline = (
            status_row is not None
            and status_row.state == CameraState.OFFLINE
            and (newest is None or status_row.ts >= newest)
        )
        stale_after = self._alerts.stale_after_s
        derived = derived_capacities(self._config)
        out = []
        for zone, row in zip(camera.zones, rows, strict=True):
            age = (now - row.ts).total_seconds() if row is not None else None
            status = zone_status(offline=offline, age_s=age, stale_after_s=stale_after)
            area = derived.get((site_id, zone.id))
            out.append(zone_reading(site, camera_id, zone, row, status, age, area))
        return out

    def close(self) -> None:
        """Stop delivering (undelivered rows stay queued for the next engine), let the lease go."""
        self._deliverer.close()
        if self._holding and self._conn is not None and not self._conn.closed:
            try:
                release_lease(self._conn, self._holder)
            except StorageError as exc:
                logger.warning("could not release the alert lease: %s", exc)
        self._drop_connection()

    # --- inputs ----------------------------------------------------------------------

    def _store_latest(self, row: ZoneLatest) -> bool:
        key = (row.site_id, row.zone_id)
        if key not in self._zone_camera:
            return False
        current = self._latest.get(key)
        if current is not None and row.ts <= current.ts:
            return False
        self._latest[key] = row
        self._history.add(key, row.ts, row.count)
        return True

    # --- the tick's catch-up ----------------------------------------------------------

    def _catch_up(self, conn: psycopg.Connection) -> tuple[set[CameraKey], TickStats]:
        """Read the latest rows written since the last tick: the cameras they changed, and
        what was read.

        A zone counts as changed when its row is newer than what the engine has (the live
        path brought most already), a camera when its report goes offline or comes back.
        """
        full = self._mark is None
        mark = change_mark(conn)
        if self._mark is None:
            zones = latest_zone_counts(conn)
            statuses = latest_camera_status(conn)
            zone_reads = len(zones)
        else:
            stamps = changed_zones(conn, self._mark)
            zones = zone_rows(conn, self._newer(stamps))
            held_offline = [
                k for k, r in self._camera_status.items() if r.state == CameraState.OFFLINE
            ]
            statuses = changed_offline_reports(conn, self._mark, held_offline)
            zone_reads = len(stamps) + len(zones)
        # Only after every read succeeded: a failed one is read again from the old mark.
        self._mark = mark
        changed: set[CameraKey] = set()
        for row in zones:
            if self._store_latest(row):
                changed.add((row.site_id, self._zone_camera[(row.site_id, row.zone_id)]))
        for status in statuses:
            key = (status.site_id, status.camera_id)
            before = self._camera_status.get(key)
            self._camera_status[key] = status
            # Only an offline report (or the end of one) changes what the zones read.
            if before is None or CameraState.OFFLINE in (before.state, status.state):
                changed.add(key)
        return changed, TickStats(full, zone_reads, len(statuses), 0)

    def _newer(self, stamps: Iterable[ZoneStamp]) -> list[tuple[str, str]]:
        """The configured zones of ``stamps`` whose count is newer than the engine's."""
        latest, configured = self._latest, self._zone_camera
        out = []
        for site_id, zone_id, ts in stamps:
            key = (site_id, zone_id)
            current = latest.get(key)
            if key in configured and (current is None or ts > current.ts):
                out.append(key)
        return out

    def _due_readings(self, changed: set[CameraKey], now: datetime) -> list[ZoneReading]:
        """The readings of the cameras to evaluate at this tick, in config order."""
        if self._evaluate_all:
            self._evaluate_all = False
            due: set[CameraKey] = set(self._cameras)
        else:
            due = changed | self._no_data | self._going_stale(now)
            due.update(
                self._key_camera[k] for k in self._evaluator.watched if k in self._key_camera
            )
        out: list[ZoneReading] = []
        for site_id, camera_id in sorted(
            due & self._cameras.keys(), key=self._camera_order.__getitem__
        ):
            out += self._camera_zone_readings(site_id, camera_id, now)
        return out

    def _going_stale(self, now: datetime) -> set[CameraKey]:
        """Cameras with a zone whose newest count is older than ``alerts.stale_after_s``."""
        cutoff = now - timedelta(seconds=self._alerts.stale_after_s)
        return {
            (row.site_id, self._zone_camera[(row.site_id, row.zone_id)])
            for row in self._latest.values()
            if row.ts < cutoff
        }

    def _note_no_data(self, cameras: Iterable[CameraReading]) -> None:
        """Remember the cameras without data: the tick evaluates them until they have some."""
        for camera in cameras:
            key = (camera.site.id, camera.camera_id)
            if camera.status is ZoneStatus.OK:
                self._no_data.discard(key)
            else:
                self._no_data.add(key)

    def _seed_history(self, conn: psycopg.Connection, now: datetime) -> None:
        try:
            rows = conn.execute(
                # Each count as of its arrival, as zone_latest and the live path take it.
                "SELECT site_id, zone_id, least(ts, received_at) AS at, count FROM zone_counts "
                "WHERE ts >= %s ORDER BY at",
                (now - self._history_keep(),),
            ).fetchall()
        except psycopg.Error as exc:
            raise StorageError(f"cannot read recent counts: {exc}") from exc
        self._history.extend(rows)
        self._seeded = True

    def _history_keep(self) -> timedelta:
        return timedelta(seconds=max([r.window_s for r in self._alerts.rules] + [600.0]) + 120)

    def _reference(self, site_id: str, zone_id: str, horizon_min: float) -> ReferenceTrend | None:
        """The reference holiday around this local time (cached for a few minutes)."""
        if not self._alerts.reference_days or self._conn is None:
            return None
        key = (site_id, zone_id, horizon_min)
        cached = self._references.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        now, margin = self._now, timedelta(minutes=5)
        horizon = timedelta(minutes=horizon_min)
        trend = None
        for day in self._alerts.reference_days:
            try:
                series = reference_series(
                    self._conn,
                    site_id,
                    now - margin,
                    now + horizon,
                    day,
                    self._tz,
                    zone_id=zone_id,
                    resolution=Resolution.MINUTE,
                )
            except StorageError as exc:
                logger.warning("reference day %s unavailable: %s", day, exc)
                break
            before = [p.count_mean for p in series.points if p.ts < now]
            after = [p.count_mean for p in series.points if p.ts >= now + horizon - margin]
            if before and after:
                trend = ReferenceTrend(sum(before) / len(before), sum(after) / len(after))
                break
        self._references[key] = (time.monotonic() + _REFERENCE_TTL_S, trend)
        return trend

    # --- lease -----------------------------------------------------------------------

    def _renew_lease(self, conn: psycopg.Connection) -> bool:
        lease_s = self._alerts.lease_s
        holding = hold_lease(conn, self._holder, lease_s)
        if holding:
            # Count only most of the lease as ours: the clocks of two engines may differ.
            self._lease_until = time.monotonic() + lease_s * 0.8
        if holding and not self._holding:
            self._take_over(conn)
        elif not holding and self._holding:
            logger.warning("alert engine %s lost the lease: standing by", self._holder)
            self._evaluator.reset()
        self._holding = holding
        return holding

    def _take_over(self, conn: psycopg.Connection) -> None:
        active = active_alert_states(conn)
        pending = pending_timers(conn)
        self._evaluator.reset()
        self._evaluate_all = True
        self._evaluator.restore({a.row.alert_key: a.clearing_since for a in active}, pending)
        self._active = {a.row.alert_key: a for a in active}
        jobs = queued_jobs(conn)
        for job in jobs:
            self._deliverer.submit(job)
        logger.info(
            "alert engine %s is active: %d firing, %d pending, %d notification(s) to resend",
            self._holder,
            len(active),
            len(pending),
            len(jobs),
        )

    # --- evaluation ------------------------------------------------------------------

    def _record(
        self, conn: psycopg.Connection, transitions: list[Transition], now: datetime
    ) -> list[Transition]:
        """Write one evaluation's transitions and timer changes, then queue the notifications.

        A key may fire and resolve within one batch of messages; both are recorded in order.
        """
        changes = self._evaluator.drain_changes()
        if not transitions and not changes:
            return []
        messages = [(t, t.message(self._tz)) for t in transitions]
        keys = {t.key for t in transitions}
        advice = self._transition_advice(transitions, now)
        plan = plan_transitions(self._policy(), messages, self._active, now, advice)
        fired, resolved, notified = plan.fired, plan.resolved, plan.notified
        pending = {k: s.pending_since for k, s in changes.items() if k not in keys and not s.firing}
        clearing = {k: s.clearing_since for k, s in changes.items() if k not in keys and s.firing}
        try:
            inserted, closed, queued = record_batch(
                conn, fired, resolved, notified, plan.suppressed, plan.drafts, pending, clearing
            )
        except StorageError:
            # Unrecorded transitions must happen again on the next evaluation, not be lost.
            for t in reversed(transitions):
                self._evaluator.revert(t)
            self._evaluator.mark_changed(changes)
            raise
        for row in inserted:
            at = row.started_at if row.alert_key in notified else None
            self._active[row.alert_key] = ActiveAlert(row, None, at, 0)
        for row in closed:
            self._active.pop(row.alert_key, None)
            self._advice_stored.pop(row.id, None)
        self._store_advice(
            conn, [(r.id, advice[r.alert_key]) for r in inserted if r.alert_key in advice], now
        )
        for notification_id, draft, alert_ids in queued:
            self._deliverer.submit(Job(notification_id, draft.channel_id, alert_ids, draft.payload))
        recorded_keys = {r.alert_key for r in inserted} | {r.alert_key for r in closed}
        for t, message in messages:
            if t.key in recorded_keys:
                log = logger.warning if t.state == "firing" else logger.info
                log("alert %s %s: %s", t.state, t.key, message.summary_en)
            else:
                logger.info("alert %s already %s in the database", t.key, t.state)
        return [t for t in transitions if t.key in recorded_keys]

    # --- follow-ups of firing alerts ---------------------------------------------------

    def _follow_up(self, conn: psycopg.Connection, now: datetime) -> None:
        active = active_alert_states(conn)
        self._active = {a.row.alert_key: a for a in active}
        advice = {
            a.row.alert_key: (a.row.id, self._row_advice(a.row, now))
            for a in active
            if self._advised(a.row.site_id)
        }
        self._store_advice(conn, list(advice.values()), now)
        by_key = {key: found for key, (_, found) in advice.items() if found is not None}
        plan = plan_follow_ups(self._policy(), active, self._sites, self._zone_camera, now, by_key)
        if not plan:
            return
        queued = queue_followups(
            conn, plan.drafts, plan.notified, plan.escalate, plan.escalation_notified, now
        )
        for notification_id, draft, alert_ids in queued:
            self._deliverer.submit(Job(notification_id, draft.channel_id, alert_ids, draft.payload))
        for alert_id in plan.escalate:
            logger.warning("alert %d escalated: not acknowledged in time", alert_id)

    # --- dispatch advice of bus-stop alerts --------------------------------------------

    def _transition_advice(
        self, transitions: list[Transition], now: datetime
    ) -> dict[str, DispatchAdvice]:
        out: dict[str, DispatchAdvice] = {}
        for t in transitions:
            if t.state != "firing" or not isinstance(t.reading, ZoneReading):
                continue
            found = self._advice(t.reading, t.rule.id, now)
            if found is not None:
                out[t.key] = found
        return out

    def _row_advice(self, row: AlertRow, now: datetime) -> DispatchAdvice | None:
        """The advice for a firing alert now, from the engine's newest readings."""
        if self._advisor is None or row.zone_id is None:
            return None
        camera_id = self._zone_camera.get((row.site_id, row.zone_id))
        if camera_id is None:
            return None
        for reading in self._camera_zone_readings(row.site_id, camera_id, now):
            if reading.zone.id == row.zone_id:
                return self._advice(reading, row.rule_id, now)
        return None

    def _advice(self, reading: ZoneReading, rule_id: str, now: datetime) -> DispatchAdvice | None:
        if self._advisor is None or rule_id not in self._crowd_rules:
            return None
        samples = self._history.samples((reading.site.id, reading.zone.id), now - RATE_WINDOW)
        return self._advisor.advise(reading, samples, now)

    def _advised(self, site_id: str) -> bool:
        """Whether the site is a bus stop that ``transit`` routes serve."""
        transit = self._config.transit
        return transit is not None and bool(transit.routes_at(site_id))

    def _store_advice(
        self,
        conn: psycopg.Connection,
        advice: Sequence[tuple[int, DispatchAdvice | None]],
        now: datetime,
    ) -> None:
        """Keep the page's advice current: a row is rewritten only when what it says changed.

        ``None`` withdraws an alert's advice (a stale or offline camera gives none).
        """
        changed = [(i, a) for i, a in advice if self._advice_stored.get(i) != _said(a)]
        try:
            store_advice(conn, changed, now)
        except StorageError as exc:
            # The notification already carries it; the next tick writes it again.
            logger.warning("could not record dispatch advice: %s", exc)
            return
        self._advice_stored.update((i, _said(a)) for i, a in changed)

    def _policy(self) -> Policy:
        """What the planner reads now: the config, the silences in force, what is firing."""
        return Policy(
            self._alerts,
            self._tz,
            self._config.mqtt.topic_prefix,
            tuple(self._silences),
            self._evaluator.firing,
        )

    # --- connection ------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self._db_url, autocommit=True)
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        # The next tick reads every latest row: the server may be another one now (a
        # failover, a restore), whose transaction ids the mark does not belong to.
        self._mark = None


def _key_cameras(config: CrowdwatchConfig) -> dict[str, CameraKey]:
    """The camera of every alert key the rules can make (zone keys and no-data keys)."""
    rules = config.alerts.rules
    zone_rules = [r.id for r in rules if r.metric is not AlertMetric.NO_DATA_S]
    camera_rules = [r.id for r in rules if r.metric is AlertMetric.NO_DATA_S]
    out: dict[str, CameraKey] = {}
    for site, camera in config.cameras():
        key = (site.id, camera.id)
        for rule_id in camera_rules:
            out[camera_alert_key(site.id, camera.id, rule_id)] = key
        for zone in camera.zones:
            for rule_id in zone_rules:
                out[alert_key(site.id, zone.id, rule_id)] = key
    return out


def _said(advice: DispatchAdvice | None) -> str:
    """What the page shows of an advice (its time moves on every tick; this does not)."""
    return "" if advice is None else f"{advice.waiting} {advice.text_en}"


def _advisor(config: CrowdwatchConfig) -> StopAdvisor | None:
    """The bus stops' advisor when ``transit`` is configured (reads its GTFS feed once).

    Raises:
        ConfigError: the GTFS feed cannot be read or does not match ``transit``.
    """
    transit = config.transit
    if transit is None:
        return None
    feed = None
    if transit.gtfs is not None:
        feed = read_gtfs(transit.gtfs.path)
        feed.check(transit)
    tz = ZoneInfo(config.district.timezone)
    return StopAdvisor(transit, feed, tz, config.alerts.stale_after_s)


def _freeze_start_up() -> None:
    """Keep what start-up built (the config, the engine's maps, the first read of the latest
    rows) out of the garbage collector's sight for good: it lives as long as the process.

    At 5,000 cameras that is ~390,000 objects that every full collection walked: with the live
    path under the fleet's load, full collections paused the engine up to 193 ms (552 ms in
    30 s); frozen, 16 ms at most (48 ms).
    """
    gc.collect()
    gc.freeze()


def run_alerts(config: CrowdwatchConfig, stop: threading.Event) -> None:
    """Run the alert engine until ``stop`` is set.

    Connects to the broker (fails fast with :class:`BrokerError` if it cannot), subscribes to
    every camera's counts (``alerts.listen_counts``), and evaluates each batch of arriving
    messages at once and everything every ``alerts.evaluate_every_s``; database outages are
    logged and retried.  Several engines may run: the lease makes one active, the others
    stand by and take over within ``alerts.lease_s`` when it stops.

    Args:
        config: the site config; the database URL is ``database.alerts_url``, else ``database.url``.
        stop: set it to end the loop after the current evaluation.

    Raises:
        ConfigError: no database URL is configured.
        BrokerError: the MQTT broker is unreachable at start.
    """
    db_url = config.database.url_for("alerts")
    inbox = CountInbox()
    client = MqttClient(
        config.mqtt,
        client_id=f"crowdwatch-alerts-{uuid.uuid4().hex[:12]}",
        # MQTT 5: the broker keeps payloads too big to be a message from reaching us at all.
        max_packet_size=MAX_PACKET_BYTES,
    )
    if config.alerts.listen_counts:
        topic = camera_topic_filter(config.mqtt.topic_prefix, TopicKind.COUNTS)
        client.subscribe(topic, lambda _topic, payload: inbox.offer(payload))
    client.connect()

    def publish(topic: str, payload: bytes) -> None:
        client.publish(topic, payload, qos=1, timeout=5)

    engine = AlertEngine(config, db_url, publish)
    every = config.alerts.evaluate_every_s
    logger.info(
        "alert engine %s started: %d rule(s), %d channel(s), every %g s",
        engine.holder,
        len(config.alerts.rules),
        len(config.alerts.channels),
        every,
    )
    next_tick = 0.0
    try:
        while not stop.is_set():
            wait = min(0.5, max(0.0, next_tick - time.monotonic()))
            try:
                # Inside the try: whatever one payload does, alerting goes on.
                batch = inbox.take(wait)
                if batch:
                    engine.on_counts(batch)
                if time.monotonic() >= next_tick:
                    first = next_tick == 0.0
                    next_tick = time.monotonic() + every
                    engine.tick()
                    if first:
                        _freeze_start_up()
            except CrowdwatchError as exc:
                logger.warning("alert evaluation failed: %s", exc)
                stop.wait(min(every, 1.0))
            except Exception:
                # Top of a long-running loop: one bad evaluation must not end alerting.
                logger.exception("alert evaluation crashed")
                stop.wait(min(every, 1.0))
    finally:
        engine.close()
        client.close()
        logger.info("alert engine stopped")
