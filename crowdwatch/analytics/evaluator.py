"""Alert rules over zone and camera readings: pending, hysteresis, keep-firing; no I/O.

Per key (``site/zone/rule``, or ``site/cam:CAMERA/rule`` for a no-data rule) an alert moves
through these states, as in Prometheus Alertmanager and Grafana Alerting::

                   value >= fire_at                 held for ``for_s``
    inactive ───────────────────────────► pending ─────────────────────► firing
       ▲   ◄── value < fire_at or no data ──┘                               │
       │                                                                    │ value < clear_at
       │              held below clear_at for ``keep_firing_for_s``        ▼
       └──────────────────────────────────────────────────────────────  clearing
                                        (value >= clear_at again: back to firing, no message)

A zone without a fresh count (stale, camera offline, never reported) is *no data*: it never
fires a crowd alert and never resolves one by reading as zero — a firing alert stays firing
until a real count clears it.  No data is its own alert (metric ``no_data_s``, per camera).

The evaluator keeps the state of every key in memory; the engine persists what changed
(:meth:`AlertEvaluator.drain_changes`: pending starts, clearing starts) and restores it at
start (:meth:`AlertEvaluator.restore`), so a restarted engine neither re-notifies nor
forgets a pending timer or an open alert.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, assert_never

from crowdwatch.analytics.forecast import Forecast, ReferenceTrend, forecast
from crowdwatch.analytics.history import CountHistory
from crowdwatch.analytics.readings import ZoneReading, ZoneStatus
from crowdwatch.analytics.rules import (
    EffectiveRule,
    alert_key,
    camera_alert_key,
    effective_rule,
    metric_value,
)
from crowdwatch.analytics.summaries import AlertFacts, alert_text
from crowdwatch.contracts.config import AlertMetric, AlertRule, Site
from crowdwatch.contracts.messages import AlertMessage, CountMethod
from crowdwatch.contracts.site_kinds import road_level

TransitionState = Literal["firing", "resolved"]

TEXT_RISE_WINDOW = timedelta(minutes=10)
"""The rise every crowd alert's text reports ("rising 20/10 min")."""

ReferenceLookup = Callable[[str, str, float], ReferenceTrend | None]
"""``(site_id, zone_id, horizon_min) -> ReferenceTrend | None``: the reference holiday."""


@dataclass(frozen=True, slots=True)
class CameraReading:
    """One camera at one instant: whether it delivers fresh counts, and since when not."""

    site: Site
    camera_id: str
    status: ZoneStatus
    """the worst status of its zones"""
    no_data_s: float
    """seconds since its newest count (0 while fresh)"""


def camera_readings(
    zones: Sequence[ZoneReading], now: datetime, started_at: datetime
) -> list[CameraReading]:
    """Group zone readings per camera and measure how long each has been without data.

    Args:
        zones: the zone readings of one evaluation.
        now: the evaluation time.
        started_at: when the engine started (a camera that never reported has been silent
            at least since then).

    Returns:
        One reading per camera, in the order of ``zones``.
    """
    grouped: dict[tuple[str, str], list[ZoneReading]] = {}
    for zone in zones:
        grouped.setdefault((zone.site.id, zone.camera_id), []).append(zone)
    out = []
    for members in grouped.values():
        first = members[0]
        if all(z.status is ZoneStatus.OK for z in members):
            out.append(CameraReading(first.site, first.camera_id, ZoneStatus.OK, 0.0))
            continue
        seen = [z.ts for z in members if z.ts is not None]
        since = max(seen) if seen else started_at
        status = next(z.status for z in members if z.status is not ZoneStatus.OK)
        silent = max(0.0, (now - since).total_seconds())
        out.append(CameraReading(first.site, first.camera_id, status, silent))
    return out


Subject = ZoneReading | CameraReading


@dataclass(frozen=True, slots=True)
class Transition:
    """An alert that starts firing or resolves at one evaluation."""

    state: TransitionState
    key: str
    rule: EffectiveRule
    reading: Subject
    value: float
    threshold: float
    """``fire_at`` when firing, the clear threshold when resolving"""
    at: datetime
    pending_since: datetime
    """when the value first crossed ``fire_at`` (equals ``at`` for a resolve)"""
    facts: AlertFacts
    since: datetime | None = None
    """a resolve: when the alert started firing, if known"""

    @property
    def zone_id(self) -> str | None:
        return self.reading.zone.id if isinstance(self.reading, ZoneReading) else None

    @property
    def camera_id(self) -> str:
        return self.reading.camera_id

    def message(self, tz: str = "Asia/Shanghai") -> AlertMessage:
        """The :class:`AlertMessage` that announces this transition.

        Args:
            tz: the district's time zone (the "since 08:05" of the text).
        """
        site = self.reading.site
        zone = self.reading.zone if isinstance(self.reading, ZoneReading) else None
        text = alert_text(
            self.state,
            site,
            zone.name if zone is not None else None,
            self.camera_id,
            self.rule,
            self.threshold,
            self.facts,
            since=self.pending_since if self.state == "firing" else self.since,
            tz=tz,
        )
        return AlertMessage(
            alert_key=self.key,
            site_id=site.id,
            zone_id=zone.id if zone is not None else None,
            rule_id=self.rule.id,
            state=self.state,
            severity=self.rule.severity,  # type: ignore[arg-type]
            value=self.value,
            threshold=self.threshold,
            ts=self.at,
            summary_zh=text.zh,
            summary_en=text.en,
        )


@dataclass(slots=True)
class KeyState:
    """The evaluator's memory of one alert key."""

    pending_since: datetime | None = None
    firing: bool = False
    clearing_since: datetime | None = None
    firing_since: datetime | None = None


@dataclass(slots=True)
class _Measured:
    value: float | None
    facts: AlertFacts = field(default_factory=AlertFacts)


def congestion_level(reading: ZoneReading) -> float | None:
    """A road zone's congestion level (1 smooth .. 5 severe) from its vehicles' mean speed,
    else from its density (Greenshields' model).

    The level now (:func:`~crowdwatch.contracts.site_kinds.road_level`), with no hysteresis
    of its own: the rule's ``for_s``, ``clear_at`` and ``keep_firing_for_s`` are the alert's.
    """
    level = road_level(
        reading.site, reading.mean_speed_kmh, reading.vehicles, reading.vehicle_density
    )
    return None if level is None else float(level)


def queue_spillback(reading: ZoneReading) -> float | None:
    """An approach's queue over its length: 1.0 reaches its upstream end (spills back)."""
    return reading.queue_share


class AlertEvaluator:
    """Evaluates the rules against each new set of readings.

    Args:
        rules: the config's alert rules.
        history: recent counts per zone (rise and forecast rules; the "rising" of texts).
        references: the reference holiday lookup (forecast rules); none by default.

    Example:
        >>> evaluator = AlertEvaluator(config.alerts.rules)  # doctest: +SKIP
        >>> for transition in evaluator.evaluate(readings, now):  # doctest: +SKIP
        ...     publish(transition.message())
    """

    def __init__(
        self,
        rules: Sequence[AlertRule],
        history: CountHistory | None = None,
        references: ReferenceLookup | None = None,
    ) -> None:
        self._rules = tuple(rules)
        self._zone_rules = tuple(r for r in self._rules if r.metric is not AlertMetric.NO_DATA_S)
        self._camera_rules = tuple(r for r in self._rules if r.metric is AlertMetric.NO_DATA_S)
        self._history = history
        self._references = references
        self._states: dict[str, KeyState] = {}
        self._changed: set[str] = set()
        self._effective: dict[tuple[str, str, str | None], EffectiveRule | None] = {}

    @property
    def firing(self) -> frozenset[str]:
        """Keys of the alerts firing now (clearing ones included)."""
        return frozenset(k for k, s in self._states.items() if s.firing)

    @property
    def watched(self) -> frozenset[str]:
        """Keys with a state in memory (pending, firing, clearing): their timers run on
        without new data, so each evaluation must see them again."""
        return frozenset(self._states)

    @property
    def pending(self) -> dict[str, datetime]:
        """Keys waiting out their pending period, with the time each crossed ``fire_at``."""
        return {
            k: s.pending_since
            for k, s in self._states.items()
            if s.pending_since is not None and not s.firing
        }

    def state(self, key: str) -> KeyState | None:
        """A copy of the memory of one key (``None`` when inactive and never seen)."""
        found = self._states.get(key)
        if found is None:
            return None
        return KeyState(found.pending_since, found.firing, found.clearing_since, found.firing_since)

    def restore(
        self,
        firing_keys: Iterable[str] | Mapping[str, datetime | None] = (),
        pending: Mapping[str, datetime] | None = None,
    ) -> None:
        """Load what the database says (at start): no re-notification, no lost timer.

        Args:
            firing_keys: keys already firing; a mapping gives each one's ``clearing_since``.
            pending: keys in their pending period, with ``pending_since``.
        """
        clearing = firing_keys if isinstance(firing_keys, Mapping) else {}
        for key in firing_keys:
            self._states[key] = KeyState(firing=True, clearing_since=clearing.get(key))
        for key, since in (pending or {}).items():
            state = self._states.setdefault(key, KeyState())
            if not state.firing:
                state.pending_since = since

    def reset(self) -> None:
        """Forget everything (a standby that lost the lease reloads from the database)."""
        self._states.clear()
        self._changed.clear()

    def drain_changes(self) -> dict[str, KeyState]:
        """Keys whose pending or clearing start changed since the last call, with their state.

        The engine writes these to the database (``alert_pending``, ``alerts.clearing_since``).
        """
        out = {}
        for key in self._changed:
            state = self._states.get(key, KeyState())
            out[key] = KeyState(
                state.pending_since, state.firing, state.clearing_since, state.firing_since
            )
        self._changed.clear()
        return out

    def mark_changed(self, keys: Iterable[str]) -> None:
        """Report these keys again at the next :meth:`drain_changes` (a write that failed)."""
        self._changed.update(keys)

    def evaluate(
        self,
        readings: Iterable[ZoneReading],
        now: datetime,
        cameras: Iterable[CameraReading] = (),
    ) -> list[Transition]:
        """Advance every rule over every zone (and camera) it watches.

        Args:
            readings: the zones at ``now`` (see ``zone_readings``).
            now: the evaluation time, UTC-aware.
            cameras: the cameras at ``now`` (see :func:`camera_readings`), for no-data rules.

        Returns:
            The alerts that start firing or resolve, in reading then rule order.
        """
        transitions = []
        for reading in readings:
            for rule in self._zone_rules:
                eff = self._effective_rule(rule, reading.site, reading.zone.id)
                if eff is None:
                    continue
                key = alert_key(reading.site.id, reading.zone.id, rule.id)
                measured = self._measure(eff, reading)
                step = self._step(key, eff, reading, measured, now)
                if step is not None:
                    transitions.append(step)
        for camera in cameras:
            for rule in self._camera_rules:
                eff = self._effective_rule(rule, camera.site, None)
                if eff is None:
                    continue
                key = camera_alert_key(camera.site.id, camera.camera_id, rule.id)
                facts = AlertFacts(no_data_s=camera.no_data_s, status=camera.status.value)
                step = self._step(key, eff, camera, _Measured(camera.no_data_s, facts), now)
                if step is not None:
                    transitions.append(step)
        return transitions

    def revert(self, transition: Transition) -> None:
        """Undo a transition that could not be recorded, so the next evaluation retries it."""
        state = self._states.setdefault(transition.key, KeyState())
        if transition.state == "firing":
            state.firing = False
            state.firing_since = None
            state.pending_since = transition.pending_since
        else:
            state.firing = True
            state.clearing_since = None
        self._changed.add(transition.key)

    def _effective_rule(
        self, rule: AlertRule, site: Site, zone_id: str | None
    ) -> EffectiveRule | None:
        cache_key = (rule.id, site.id, zone_id)
        if cache_key not in self._effective:
            self._effective[cache_key] = effective_rule(rule, site, zone_id)
        return self._effective[cache_key]

    def _measure(self, rule: EffectiveRule, reading: ZoneReading) -> _Measured:
        if reading.count is None:
            return _Measured(None)
        zone_id = (reading.site.id, reading.zone.id)
        history = self._history
        rise_window = (
            timedelta(seconds=rule.rule.window_s)
            if rule.metric is AlertMetric.RISE
            else TEXT_RISE_WINDOW
        )
        rise = history.rise(zone_id, rise_window) if history is not None else None
        predicted: Forecast | None = None
        if rule.metric is AlertMetric.FORECAST_OCCUPANCY and history is not None:
            window = timedelta(seconds=rule.rule.window_s)
            latest = reading.ts or datetime.min
            samples = history.samples(zone_id, latest - window)
            reference = (
                self._references(reading.site.id, reading.zone.id, rule.rule.horizon_min)
                if self._references is not None
                else None
            )
            predicted = forecast(
                samples,
                reading.count,
                reading.capacity,
                rule.rule.horizon_min,
                rule.rule.window_s,
                reference,
            )
        facts = AlertFacts(
            count=reading.count,
            capacity=reading.capacity,
            longest_wait_s=reading.longest_wait_s,
            density_per_m2=reading.density_per_m2,
            estimated=reading.method is CountMethod.DENSE,
            rise=rise,
            rise_window_s=rise_window.total_seconds(),
            forecast=predicted,
            vehicles=reading.vehicles,
            speed_kmh=reading.mean_speed_kmh,
            vehicle_density=reading.vehicle_density,
            queue_m=reading.queue_length_m,
            approach_m=reading.approach_m,
        )
        value: float | None
        # Exhaustive: a new metric fails mypy here instead of silently reading density.
        match rule.metric:
            case AlertMetric.OCCUPANCY_RATIO | AlertMetric.PEOPLE:
                value = metric_value(rule.metric, reading.count, reading.capacity)
            case AlertMetric.LONGEST_WAIT_MIN:
                wait = reading.longest_wait_s
                value = None if wait is None else wait / 60
            case AlertMetric.RISE:
                value = rise
            case AlertMetric.FORECAST_OCCUPANCY:
                value = None if predicted is None else predicted.occupancy
            case AlertMetric.DENSITY_PER_M2:
                value = reading.density_per_m2
            case AlertMetric.CONGESTION_LEVEL:
                value = congestion_level(reading)
            case AlertMetric.QUEUE_SPILLBACK:
                value = queue_spillback(reading)
            case AlertMetric.NO_DATA_S:
                # Camera rules are split off in __init__ and measured per camera.
                raise ValueError(f"rule {rule.rule.id!r}: no_data_s is measured per camera")
            case _:
                assert_never(rule.metric)
        return _Measured(value, facts)

    def _step(
        self, key: str, rule: EffectiveRule, reading: Subject, measured: _Measured, now: datetime
    ) -> Transition | None:
        state = self._states.get(key)
        value = measured.value
        if value is None:
            # No data: a pending period needs unbroken evidence; a firing alert stays as is.
            if state is not None and state.pending_since is not None and not state.firing:
                state.pending_since = None
                self._changed.add(key)
            return None
        if state is None:
            if value < rule.fire_at:
                return None
            state = self._states[key] = KeyState()
        if state.firing:
            return self._step_firing(key, state, rule, reading, measured, value, now)
        if value < rule.fire_at:
            if state.pending_since is not None:
                state.pending_since = None
                self._changed.add(key)
            del self._states[key]
            return None
        if state.pending_since is None:
            state.pending_since = now
            self._changed.add(key)
        since = state.pending_since
        if (now - since).total_seconds() < rule.for_s:
            return None
        state.firing, state.firing_since, state.clearing_since = True, now, None
        self._changed.add(key)
        return Transition(
            "firing", key, rule, reading, value, rule.fire_at, now, since, measured.facts
        )

    def _step_firing(
        self,
        key: str,
        state: KeyState,
        rule: EffectiveRule,
        reading: Subject,
        measured: _Measured,
        value: float,
        now: datetime,
    ) -> Transition | None:
        if value >= rule.clear_at:
            if state.clearing_since is not None:
                state.clearing_since = None
                self._changed.add(key)
            return None
        if rule.keep_firing_for_s > 0:
            if state.clearing_since is None:
                state.clearing_since = now
                self._changed.add(key)
            if (now - state.clearing_since).total_seconds() < rule.keep_firing_for_s:
                return None
        since = state.firing_since
        del self._states[key]
        self._changed.add(key)
        return Transition(
            "resolved", key, rule, reading, value, rule.clear_at, now, now, measured.facts, since
        )
