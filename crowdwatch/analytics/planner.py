"""Who is told what, now: the notification pipeline as pure stages over typed values.

Like Alertmanager's ``silence``, ``inhibit``, ``dispatch`` packages, each stage is a small
function with no I/O; the engine reads the database, calls the planner, then records and
sends what it returns (in that order, in one transaction)::

    transitions / firing alerts
        │
        ├─ silence   a person's silence matches site/zone/rule          ┐ held back: recorded,
        ├─ mute      a mute window the rule names is open               │ people told when it
        ├─ inhibit   the camera's no-data alert is firing (crowd rules) ┘ ends (follow-ups)
        ├─ route     routes of the department and severity; a route's own mute windows and
        │            ``send_resolved`` drop it; an escalation takes the route's step
        ├─ group     one notification per channel and group key (bus route / site / zone)
        └─ escalate  unacknowledged past the step's ``after_min``: the next level

Every alert also goes out on MQTT (:class:`AlertPublication`), held back or not: machines
subscribe to the topic, silences are for people.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import assert_never

from crowdwatch.analytics.alert_store import ActiveAlert, NewAlert, NotificationDraft
from crowdwatch.analytics.evaluator import Transition
from crowdwatch.analytics.routing import escalation_step, group_key, matching_routes, muted_by
from crowdwatch.analytics.rules import CROWD_METRICS, camera_alert_key
from crowdwatch.analytics.silences import Silence
from crowdwatch.contracts.channels import ChannelType
from crowdwatch.contracts.config import AlertMetric, AlertsConfig, Site
from crowdwatch.contracts.messages import AlertMessage, alert_topic
from crowdwatch.contracts.notification import (
    AlertPublication,
    DispatchAdvice,
    Notification,
    NotificationEvent,
    NotifiedAlert,
    Severity,
)
from crowdwatch.storage.queries import AlertRow

_SEVERITY_ORDER: dict[Severity, int] = {"info": 0, "warning": 1, "critical": 2}


def _new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class Policy:
    """Everything the planner reads: the alert config and this moment's silences and alerts.

    Args:
        alerts: the ``alerts`` section (rules, routes, channels, mute windows).
        tz: the district's time zone (mute windows are local times).
        topic_prefix: the MQTT topic prefix (``{prefix}/v1/alerts/{site}``).
        silences: the silences in force.
        firing: keys of the alerts firing now (a camera's no-data alert inhibits its zones).
        new_id: makes a notification's ``id`` (fixed when queued; tests pass their own).
    """

    alerts: AlertsConfig
    tz: str
    topic_prefix: str
    silences: Sequence[Silence] = ()
    firing: Collection[str] = frozenset()
    new_id: Callable[[], str] = _new_id
    _channel_types: dict[str, ChannelType] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        types = {c.id: c.type for c in self.alerts.channels}
        object.__setattr__(self, "_channel_types", types)

    def channel_type(self, channel_id: str) -> ChannelType:
        return self._channel_types[channel_id]


class HoldReason(StrEnum):
    SILENCED = "silenced"
    MUTED = "muted"
    INHIBITED = "inhibited"


@dataclass(frozen=True, slots=True)
class HeldBack:
    """Why people are not told of an alert now (it is still recorded and published on MQTT)."""

    reason: HoldReason
    detail: str

    def __str__(self) -> str:
        match self.reason:
            case HoldReason.SILENCED:
                return f"silenced by {self.detail}".rstrip(": ")
            case HoldReason.MUTED:
                return f"mute window {self.detail}"
            case HoldReason.INHIBITED:
                return f"inhibited: camera {self.detail} has no data"
            case _:
                assert_never(self.reason)


@dataclass(frozen=True, slots=True)
class Subject:
    """What the hold-back stages look at: which alert, where."""

    site_id: str
    zone_id: str | None
    camera_id: str | None
    rule_id: str


def held_back(policy: Policy, subject: Subject, now: datetime) -> HeldBack | None:
    """Stages 1-3: silence, then the rule's mute windows, then inhibition by a camera."""
    for silence in policy.silences:
        if silence.matches(subject.site_id, subject.zone_id, subject.rule_id, now):
            return HeldBack(HoldReason.SILENCED, f"{silence.created_by}: {silence.comment}")
    rule = next((r for r in policy.alerts.rules if r.id == subject.rule_id), None)
    if rule is None:
        return None
    window = muted_by(policy.alerts, rule.mute_windows, now, policy.tz)
    if window is not None:
        return HeldBack(HoldReason.MUTED, window)
    if rule.metric in CROWD_METRICS and subject.camera_id is not None:
        for camera_rule in policy.alerts.rules:
            if camera_rule.metric is not AlertMetric.NO_DATA_S:
                continue
            key = camera_alert_key(subject.site_id, subject.camera_id, camera_rule.id)
            if key in policy.firing:
                return HeldBack(HoldReason.INHIBITED, subject.camera_id)
    return None


@dataclass(frozen=True, slots=True)
class Told:
    """An alert people are to be told of, with its site (routes and groups read the site)."""

    alert: NotifiedAlert
    site: Site


def notifications(
    policy: Policy,
    event: NotificationEvent,
    items: Sequence[Told],
    now: datetime,
    level: int = 0,
) -> list[NotificationDraft]:
    """Stages 4-5: route each alert to its channels, then group them into notifications.

    Args:
        event: firing, resolved, or escalation (then ``level`` picks the route's step).
        items: the alerts, in the order they should appear.
        now: the notifications' time (route mute windows are judged at it).
        level: the escalation level (1 = first escalation).

    Returns:
        One draft per channel and group key, alerts of a group in the order given.
    """
    groups: dict[tuple[str, str], list[Told]] = {}
    for item in items:
        for channel_id, group in _routed(policy, event, item, now, level):
            members = groups.setdefault((channel_id, group), [])
            if all(m.alert.alert_key != item.alert.alert_key for m in members):
                members.append(item)
    return [
        NotificationDraft(
            channel_id,
            policy.channel_type(channel_id).value,
            event,
            level,
            group,
            tuple(m.alert.alert_key for m in members),
            _notification(policy, event, level, group, members, now),
        )
        for (channel_id, group), members in groups.items()
    ]


def _routed(
    policy: Policy, event: NotificationEvent, item: Told, now: datetime, level: int
) -> list[tuple[str, str]]:
    """(channel, group key) pairs of one alert over every matching route."""
    out: list[tuple[str, str]] = []
    site = item.site
    for route in matching_routes(policy.alerts, site.department, item.alert.severity):
        if event is NotificationEvent.RESOLVED and not route.send_resolved:
            continue
        if muted_by(policy.alerts, route.mute_windows, now, policy.tz) is not None:
            continue
        match event:
            case NotificationEvent.ESCALATION:
                step = escalation_step(route, level)
                channels = list(step.notify) if step is not None else []
            case NotificationEvent.FIRING | NotificationEvent.RESOLVED:
                channels = list(route.notify)
            case _:
                assert_never(event)
        group = group_key(route.group_by, site, item.alert.zone_id, item.alert.alert_key)
        out += [(channel_id, group) for channel_id in channels]
    return out


def _notification(
    policy: Policy,
    event: NotificationEvent,
    level: int,
    group: str,
    members: Sequence[Told],
    now: datetime,
) -> Notification:
    severity = max((m.alert.severity for m in members), key=_SEVERITY_ORDER.__getitem__)
    n = len(members)
    match event:
        case NotificationEvent.RESOLVED:
            title_zh, title_en = f"【已解除】{n} 条人流告警", f"Cleared: {n} crowd alert(s)"
        case NotificationEvent.ESCALATION:
            title_zh = f"【升级 第 {level} 级】{n} 条告警未确认"
            title_en = f"Escalation level {level}: {n} alert(s) not acknowledged"
        case NotificationEvent.FIRING:
            tag = "紧急" if severity == "critical" else "人流告警"
            title_zh, title_en = f"【{tag}】{n} 条", f"Crowd alert ({severity}): {n}"
        case _:
            assert_never(event)
    return Notification(
        id=policy.new_id(),
        event=event,
        level=level,
        group=group,
        department=members[0].site.department.value,
        severity=severity,
        at=now,
        title_zh=title_zh,
        title_en=title_en,
        alerts=tuple(m.alert for m in members),
    )


def publication(policy: Policy, message: AlertMessage) -> NotificationDraft:
    """The MQTT draft of one alert message (every alert, held back or not)."""
    return NotificationDraft(
        "mqtt",
        "mqtt",
        NotificationEvent(message.state),
        0,
        None,
        (message.alert_key,),
        AlertPublication(topic=alert_topic(policy.topic_prefix, message.site_id), message=message),
    )


@dataclass(frozen=True, slots=True)
class TransitionPlan:
    """What one evaluation's transitions become (see ``record_batch`` for each field)."""

    fired: list[NewAlert]
    resolved: list[AlertMessage]
    notified: set[str]
    suppressed: dict[str, str]
    drafts: list[NotificationDraft]


def plan_transitions(
    policy: Policy,
    transitions: Sequence[tuple[Transition, AlertMessage]],
    active: Mapping[str, ActiveAlert],
    now: datetime,
    advice: Mapping[str, DispatchAdvice] | None = None,
) -> TransitionPlan:
    """Plan the records and notifications of one evaluation's transitions, in order.

    A resolve tells people only if they were told it fired (earlier, or in this same batch)
    and it is not held back now.

    Args:
        transitions: each transition with its alert message.
        active: the firing alerts the engine knows, by key (their ``notified_at``).
        now: evaluation time.
        advice: the dispatch advice of firing alerts at bus stops, by key.
    """
    advice = advice or {}
    fired: list[NewAlert] = []
    resolved: list[AlertMessage] = []
    notified: set[str] = set()
    suppressed: dict[str, str] = {}
    drafts: list[NotificationDraft] = []
    told: dict[NotificationEvent, list[Told]] = {
        NotificationEvent.FIRING: [],
        NotificationEvent.RESOLVED: [],
    }
    for t, message in transitions:
        site = t.reading.site
        drafts.append(publication(policy, message))
        subject = Subject(site.id, t.zone_id, t.camera_id, t.rule.id)
        hold = held_back(policy, subject, now)
        item = Told(NotifiedAlert.from_message(message), site)
        if t.state == "firing" and t.key in advice:
            item = Told(item.alert.model_copy(update={"dispatch": advice[t.key]}), site)
        match t.state:
            case "firing":
                routes = matching_routes(policy.alerts, site.department, t.rule.severity)
                by = routes[0].group_by if routes else "route"
                group = group_key(by, site, t.zone_id, t.key)
                fired.append(NewAlert(message, t.camera_id, site.department.value, group))
                if hold is None:
                    notified.add(t.key)
                    told[NotificationEvent.FIRING].append(item)
                else:
                    suppressed[t.key] = str(hold)
            case "resolved":
                resolved.append(message)
                if t.key in notified or t.key in suppressed:
                    was_told = t.key in notified  # fired earlier in this same batch
                else:
                    was = active.get(t.key)
                    was_told = was is None or was.notified_at is not None
                if was_told and hold is None:
                    told[NotificationEvent.RESOLVED].append(item)
            case _:
                assert_never(t.state)
    for event, items in told.items():
        drafts += notifications(policy, event, items, now)
    return TransitionPlan(fired, resolved, notified, suppressed, drafts)


@dataclass(frozen=True, slots=True)
class FollowUpPlan:
    """The follow-ups of firing alerts (see ``queue_followups`` for each field)."""

    drafts: list[tuple[NotificationDraft, tuple[int, ...]]]
    notified: list[tuple[int, datetime]]
    escalate: list[int]
    escalation_notified: dict[int, int]

    def __bool__(self) -> bool:
        return bool(self.drafts or self.notified or self.escalate or self.escalation_notified)


def plan_follow_ups(
    policy: Policy,
    active: Sequence[ActiveAlert],
    sites: Mapping[str, Site],
    zone_camera: Mapping[tuple[str, str], str],
    now: datetime,
    advice: Mapping[str, DispatchAdvice] | None = None,
) -> FollowUpPlan:
    """Stage 6 and the held-back alerts: tell what a hold kept back, escalate what is due.

    Args:
        active: every firing alert with its bookkeeping.
        sites: the configured sites by id (an alert of a removed site is left alone).
        zone_camera: the camera of each (site, zone).
        now: evaluation time.
        advice: the dispatch advice of bus-stop alerts now, by key (it follows the counts).
    """
    advice = advice or {}
    drafts: list[tuple[NotificationDraft, tuple[int, ...]]] = []
    notified: list[tuple[int, datetime]] = []
    escalate: list[int] = []
    escalation_notified: dict[int, int] = {}
    for alert in active:
        row = alert.row
        site = sites.get(row.site_id)
        if site is None:
            continue
        camera_id = row.camera_id or zone_camera.get((row.site_id, row.zone_id or ""))
        if held_back(policy, Subject(row.site_id, row.zone_id, camera_id, row.rule_id), now):
            continue
        item = [Told(notified_alert(row, advice.get(row.alert_key)), site)]
        if alert.notified_at is None:
            notified.append((row.id, now))
            drafts += [(d, (row.id,)) for d in notifications(policy, _FIRING, item, now)]
            continue
        level = row.escalation_level
        if row.acknowledged_at is None and escalation_due(policy, alert, site, now):
            escalate.append(row.id)
            level += 1
        for n in range(alert.escalation_notified + 1, level + 1):
            drafts += [(d, (row.id,)) for d in notifications(policy, _ESCALATION, item, now, n)]
        if level > alert.escalation_notified:
            escalation_notified[row.id] = level
    return FollowUpPlan(drafts, notified, escalate, escalation_notified)


_FIRING = NotificationEvent.FIRING
_ESCALATION = NotificationEvent.ESCALATION


def escalation_due(policy: Policy, alert: ActiveAlert, site: Site, now: datetime) -> bool:
    """Whether an unacknowledged alert has waited its first escalating route's next step."""
    row = alert.row
    for route in matching_routes(policy.alerts, site.department, row.severity):
        if not route.escalation:
            continue
        if row.escalation_level >= len(route.escalation):
            return False
        step = route.escalation[row.escalation_level]
        since = row.escalated_at or alert.notified_at or row.started_at
        return now - since >= timedelta(minutes=step.after_min)
    return False


def notified_alert(row: AlertRow, dispatch: DispatchAdvice | None = None) -> NotifiedAlert:
    """A recorded alert as it appears in a follow-up notification (with today's advice)."""
    return NotifiedAlert(
        alert_id=row.id,
        alert_key=row.alert_key,
        site_id=row.site_id,
        zone_id=row.zone_id,
        rule_id=row.rule_id,
        state=row.state,
        severity=row.severity,
        value=row.value,
        threshold=row.threshold,
        ts=row.started_at,
        summary_zh=row.summary_zh,
        summary_en=row.summary_en,
        acknowledged_by=row.acknowledged_by,
        dispatch=dispatch,
    )
