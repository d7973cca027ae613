"""Alert rules over zone readings: pending period, hysteresis, no-data; no I/O.

Per key ``site/zone/rule`` an alert moves through these states (as Prometheus Alertmanager
and Grafana Alerting do)::

    inactive --value >= fire_at--> pending --held for for_s--> firing --value < clear_at--> inactive
                 ^                    |
                 +---value < fire_at--+  (or no data: a pending period needs unbroken evidence)

A zone without a fresh count (stale, camera offline, never reported) is *no data*: it
never fires a crowd alert and never resolves one by reading as zero — a firing alert stays
firing until a real count clears it.  :class:`AlertEvaluator` keeps the pending starts in
memory and takes the already-firing keys from the database at start (``restore``), so a
restarted engine neither re-notifies nor forgets an open alert.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from crowdwatch.analytics.readings import ZoneReading
from crowdwatch.analytics.rules import alert_key, clear_threshold, metric_value, rule_applies
from crowdwatch.analytics.summaries import firing_text, resolved_text
from crowdwatch.contracts.config import AlertRule
from crowdwatch.contracts.messages import AlertMessage

TransitionState = Literal["firing", "resolved"]


@dataclass(frozen=True, slots=True)
class Transition:
    """An alert that starts firing or resolves at one evaluation."""

    state: TransitionState
    key: str
    rule: AlertRule
    reading: ZoneReading
    value: float
    threshold: float
    """``fire_at`` when firing, the clear threshold when resolving"""
    at: datetime
    pending_since: datetime
    """when the value first crossed ``fire_at`` (equals ``at`` for a resolve)"""

    def message(self) -> AlertMessage:
        """The :class:`AlertMessage` that announces this transition."""
        zone = self.reading.zone
        site = self.reading.site
        count = self.reading.count if self.reading.count is not None else 0
        text_of = firing_text if self.state == "firing" else resolved_text
        text = text_of(
            site.name, zone.name, self.rule.metric, count, self.reading.capacity, self.threshold
        )
        return AlertMessage(
            alert_key=self.key,
            site_id=site.id,
            zone_id=zone.id,
            rule_id=self.rule.id,
            state=self.state,
            severity=self.rule.severity,
            value=self.value,
            threshold=self.threshold,
            ts=self.at,
            summary_zh=text.zh,
            summary_en=text.en,
        )


class AlertEvaluator:
    """Evaluates the rules against each new set of readings.

    Args:
        rules: the config's alert rules.

    Example:
        >>> evaluator = AlertEvaluator(config.alerts.rules)  # doctest: +SKIP
        >>> for transition in evaluator.evaluate(readings, now):  # doctest: +SKIP
        ...     publish(transition.message())
    """

    def __init__(self, rules: Sequence[AlertRule]) -> None:
        self._rules = tuple(rules)
        self._pending: dict[str, datetime] = {}
        self._firing: set[str] = set()

    @property
    def firing(self) -> frozenset[str]:
        """Keys of the alerts firing now."""
        return frozenset(self._firing)

    @property
    def pending(self) -> dict[str, datetime]:
        """Keys waiting out their pending period, with the time each crossed ``fire_at``."""
        return dict(self._pending)

    def restore(self, firing_keys: Iterable[str]) -> None:
        """Mark keys as already firing (read from the database at start): no re-notification."""
        self._firing.update(firing_keys)

    def evaluate(self, readings: Iterable[ZoneReading], now: datetime) -> list[Transition]:
        """Advance every rule over every zone it watches.

        Args:
            readings: the zones at ``now`` (see ``zone_readings``).
            now: the evaluation time, UTC-aware.

        Returns:
            The alerts that start firing or resolve, in reading then rule order.
        """
        transitions = []
        for reading in readings:
            for rule in self._rules:
                if rule_applies(rule, reading.site):
                    transition = self._step(rule, reading, now)
                    if transition is not None:
                        transitions.append(transition)
        return transitions

    def revert(self, transition: Transition) -> None:
        """Undo a transition that could not be recorded, so the next evaluation retries it."""
        if transition.state == "firing":
            self._firing.discard(transition.key)
            self._pending[transition.key] = transition.pending_since
        else:
            self._firing.add(transition.key)

    def _step(self, rule: AlertRule, reading: ZoneReading, now: datetime) -> Transition | None:
        key = alert_key(reading.site.id, reading.zone.id, rule.id)
        if reading.count is None:
            # No data: a pending period needs unbroken evidence; a firing alert stays as is.
            self._pending.pop(key, None)
            return None
        value = metric_value(rule.metric, reading.count, reading.capacity)
        if key in self._firing:
            clear_at = clear_threshold(rule)
            if value >= clear_at:
                return None
            self._firing.discard(key)
            return Transition("resolved", key, rule, reading, value, clear_at, now, now)
        if value < rule.fire_at:
            self._pending.pop(key, None)
            return None
        since = self._pending.setdefault(key, now)
        if (now - since).total_seconds() < rule.for_s:
            return None
        del self._pending[key]
        self._firing.add(key)
        return Transition("firing", key, rule, reading, value, rule.fire_at, now, since)
