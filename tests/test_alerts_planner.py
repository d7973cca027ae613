"""The notification planner, stage by stage, without a database: table-driven cases.

Transitions come from the real evaluator over real readings; silences, firing keys and the
engine's bookkeeping (``ActiveAlert``) are built as the engine would read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from factories import config_dict, make_config, site_dict

from crowdwatch.analytics.alert_store import ActiveAlert
from crowdwatch.analytics.evaluator import AlertEvaluator, Transition
from crowdwatch.analytics.planner import (
    HeldBack,
    HoldReason,
    Policy,
    Subject,
    held_back,
    plan_follow_ups,
    plan_transitions,
)
from crowdwatch.analytics.readings import ZoneReading, ZoneStatus
from crowdwatch.analytics.silences import Silence
from crowdwatch.contracts.config import CrowdwatchConfig
from crowdwatch.contracts.notification import AlertPublication, Notification, NotificationEvent
from crowdwatch.storage.queries import AlertRow

# 09:00 UTC is 17:00 in Asia/Shanghai; the "night" mute window is 23:00-06:00 local.
DAY = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
NIGHT = datetime(2026, 10, 1, 16, 0, tzinfo=UTC)  # 00:00 local
KEY_A = "stop-a/platform/crowded"
KEY_B = "stop-b/platform/crowded"
CAMERA_DOWN_A = "stop-a/cam:cam1/camera-down"


def district(*, rule_mutes: list[str] | None = None, **route: Any) -> CrowdwatchConfig:
    """Two stops on bus route K1; one route: transport -> hook, escalating to duty after 5 min."""
    sites = [site_dict("stop-a"), site_dict("stop-b")]
    for site in sites:
        site["routes"] = ["K1"]
    raw = config_dict(*sites)
    raw["alerts"] = {
        "rules": [
            {
                "id": "crowded",
                "metric": "occupancy_ratio",
                "fire_at": 0.8,
                "mute_windows": rule_mutes or [],
            },
            {"id": "camera-down", "metric": "no_data_s", "fire_at": 120},
        ],
        "channels": [
            {"id": "hook", "type": "webhook", "url": "http://127.0.0.1:9/hook"},
            {"id": "duty", "type": "wecom", "url": "http://127.0.0.1:9/duty"},
        ],
        "routes": [
            {
                "departments": ["transport"],
                "notify": ["hook"],
                "escalation": [{"after_min": 5, "notify": ["duty"]}],
                **route,
            }
        ],
        "mute_windows": [{"id": "night", "start": "23:00", "end": "06:00"}],
    }
    return make_config(raw)


CONFIG = district()


def policy(
    config: CrowdwatchConfig = CONFIG,
    silences: tuple[Silence, ...] = (),
    firing: frozenset[str] = frozenset(),
) -> Policy:
    ids = iter(f"n{i}" for i in range(1000))
    return Policy(
        config.alerts,
        config.district.timezone,
        "cw",
        silences,
        firing,
        new_id=lambda: next(ids),
    )


def silence(
    site_id: str | None = "stop-a", *, ends: datetime = DAY + timedelta(hours=1)
) -> Silence:
    return Silence(7, site_id, None, None, DAY - timedelta(hours=1), ends, "ana", "works")


def transitions(
    config: CrowdwatchConfig, counts: dict[str, int], now: datetime, evaluator: AlertEvaluator
) -> list[Transition]:
    readings = []
    for site_id, count in counts.items():
        site = config.site(site_id)
        zone = site.cameras[0].zones[0]
        readings.append(ZoneReading(site, "cam1", zone, ZoneStatus.OK, count, now, 0.0))
    return evaluator.evaluate(readings, now)


def fired(config: CrowdwatchConfig, *sites: str, now: datetime = DAY) -> list[Transition]:
    evaluator = AlertEvaluator(config.alerts.rules)
    return transitions(config, dict.fromkeys(sites, 45), now, evaluator)


def fired_then_resolved(config: CrowdwatchConfig, now: datetime = DAY) -> list[Transition]:
    evaluator = AlertEvaluator(config.alerts.rules)
    transitions(config, {"stop-a": 45}, now - timedelta(minutes=1), evaluator)
    return transitions(config, {"stop-a": 10}, now, evaluator)


def alert_row(key: str = KEY_A, **fields: Any) -> AlertRow:
    site_id, zone_id, rule_id = key.split("/")
    row = AlertRow(
        id=41,
        alert_key=key,
        site_id=site_id,
        zone_id=zone_id,
        rule_id=rule_id,
        severity="warning",
        state="firing",
        value=0.9,
        threshold=0.8,
        started_at=DAY - timedelta(minutes=10),
        resolved_at=None,
        summary_zh="甲站 候车区: 45 人",
        summary_en="Stop A platform: 45 people",
        camera_id="cam1",
    )
    return replace(row, **fields)


# --- stages 1-3: silence, mute, inhibit ------------------------------------------------------

SUBJECT = Subject("stop-a", "platform", "cam1", "crowded")

HOLD_CASES = [
    ("nothing holds it", CONFIG, SUBJECT, (), frozenset(), DAY, None),
    ("a silence of its site", CONFIG, SUBJECT, (silence(),), frozenset(), DAY, "silenced"),
    ("a silence of another site", CONFIG, SUBJECT, (silence("stop-b"),), frozenset(), DAY, None),
    ("an ended silence", CONFIG, SUBJECT, (silence(ends=DAY),), frozenset(), DAY, None),
    ("the rule's mute window", district(rule_mutes=["night"]), SUBJECT, (), frozenset(), NIGHT,
     "muted"),
    ("outside the mute window", district(rule_mutes=["night"]), SUBJECT, (), frozenset(), DAY,
     None),
    ("its camera has no data", CONFIG, SUBJECT, (), frozenset({CAMERA_DOWN_A}), DAY, "inhibited"),
    ("another camera has no data", CONFIG, SUBJECT, (), frozenset({"stop-b/cam:cam1/camera-down"}),
     DAY, None),
    ("a no-data alert is not inhibited by itself", CONFIG,
     Subject("stop-a", None, "cam1", "camera-down"), (), frozenset({CAMERA_DOWN_A}), DAY, None),
    ("silence comes before mute and inhibition", district(rule_mutes=["night"]), SUBJECT,
     (silence(ends=NIGHT + timedelta(hours=1)),), frozenset({CAMERA_DOWN_A}), NIGHT, "silenced"),
    ("an unknown rule (removed from the config) is not held", CONFIG,
     Subject("stop-a", "platform", "cam1", "gone"), (silence("stop-b"),), frozenset(), DAY, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("config", "subject", "silences", "firing", "now", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in HOLD_CASES],
)
def test_hold_back_stages(
    config: CrowdwatchConfig,
    subject: Subject,
    silences: tuple[Silence, ...],
    firing: frozenset[str],
    now: datetime,
    expected: str | None,
) -> None:
    hold = held_back(policy(config, silences, firing), subject, now)

    assert (hold.reason.value if hold else None) == expected


@pytest.mark.parametrize(
    ("reason", "detail", "text"),
    [
        (HoldReason.SILENCED, "ana: works", "silenced by ana: works"),
        (HoldReason.SILENCED, "ana: ", "silenced by ana"),
        (HoldReason.MUTED, "night", "mute window night"),
        (HoldReason.INHIBITED, "cam1", "inhibited: camera cam1 has no data"),
    ],
)
def test_hold_back_reasons_read_as_the_history_says_them(
    reason: HoldReason, detail: str, text: str
) -> None:
    assert str(HeldBack(reason, detail)) == text


# --- stages 4-5: route and group one evaluation --------------------------------------------


@dataclass(frozen=True)
class Expected:
    """What one evaluation plans: people notifications as (channel, event, group, keys)."""

    sent: list[tuple[str, str, str, tuple[str, ...]]]
    notified: set[str] = field(default_factory=set)
    suppressed: dict[str, str] = field(default_factory=dict)


def active(key: str, *, notified: bool) -> dict[str, ActiveAlert]:
    return {key: ActiveAlert(alert_row(key), None, DAY if notified else None, 0)}


TRANSITION_CASES: list[tuple[str, Policy, list[Transition], dict[str, ActiveAlert], datetime,
                             Expected]] = [
    ("a firing alert goes to its route's channel",
     policy(), fired(CONFIG, "stop-a"), {}, DAY,
     Expected([("hook", "firing", "route:K1", (KEY_A,))], {KEY_A})),
    ("two stops of one bus route: one message",
     policy(), fired(CONFIG, "stop-a", "stop-b"), {}, DAY,
     Expected([("hook", "firing", "route:K1", (KEY_A, KEY_B))], {KEY_A, KEY_B})),
    ("grouped by site instead",
     policy(district(group_by="site")), fired(district(group_by="site"), "stop-a", "stop-b"), {},
     DAY,
     Expected([("hook", "firing", "site:stop-a", (KEY_A,)),
               ("hook", "firing", "site:stop-b", (KEY_B,))], {KEY_A, KEY_B})),
    ("a silenced alert is recorded as held back, not sent",
     policy(silences=(silence(),)), fired(CONFIG, "stop-a"), {}, DAY,
     Expected([], set(), {KEY_A: "silenced by ana: works"})),
    ("an inhibited alert is held back",
     policy(firing=frozenset({CAMERA_DOWN_A})), fired(CONFIG, "stop-a"), {}, DAY,
     Expected([], set(), {KEY_A: "inhibited: camera cam1 has no data"})),
    ("a route's own mute window drops the route, not the notice",
     policy(district(mute_windows=["night"])), fired(district(mute_windows=["night"]), "stop-a",
                                                    now=NIGHT), {}, NIGHT,
     Expected([], {KEY_A})),
    ("a resolve of an alert people were told of",
     policy(), fired_then_resolved(CONFIG), active(KEY_A, notified=True), DAY,
     Expected([("hook", "resolved", "route:K1", (KEY_A,))])),
    ("no resolve for an alert people never heard of",
     policy(), fired_then_resolved(CONFIG), active(KEY_A, notified=False), DAY,
     Expected([])),
    ("no resolve where the route does not send them",
     policy(district(send_resolved=False)), fired_then_resolved(district(send_resolved=False)),
     active(KEY_A, notified=True), DAY,
     Expected([])),
]  # fmt: skip


@pytest.mark.parametrize(
    ("plan_policy", "batch", "known", "now", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in TRANSITION_CASES],
)
def test_plan_transitions(
    plan_policy: Policy,
    batch: list[Transition],
    known: dict[str, ActiveAlert],
    now: datetime,
    expected: Expected,
) -> None:
    messages = [(t, t.message()) for t in batch]

    plan = plan_transitions(plan_policy, messages, known, now)

    people = [d for d in plan.drafts if d.channel_id != "mqtt"]
    sent = [(d.channel_id, d.event.value, d.group_key or "", d.alert_keys) for d in people]
    assert sent == expected.sent
    assert plan.notified == expected.notified
    assert plan.suppressed == expected.suppressed
    # Every alert goes out on MQTT, held back or not: machines are not silenced.
    mqtt = [d for d in plan.drafts if d.channel_id == "mqtt"]
    assert [d.alert_keys for d in mqtt] == [(t.key,) for t in batch]
    for draft, t in zip(mqtt, batch, strict=True):
        assert isinstance(draft.payload, AlertPublication)
        assert draft.payload.topic == f"cw/v1/alerts/{t.reading.site.id}"
    for draft in people:
        assert isinstance(draft.payload, Notification)
        assert [a.alert_key for a in draft.payload.alerts] == list(draft.alert_keys)
        assert Notification.from_json(draft.payload.to_json()) == draft.payload


def test_a_notification_is_the_contract_with_titles_and_the_highest_severity() -> None:
    plan = plan_transitions(policy(), [(t, t.message()) for t in fired(CONFIG, "stop-a")], {}, DAY)

    [draft] = [d for d in plan.drafts if d.channel_id == "hook"]
    assert isinstance(draft.payload, Notification)
    assert draft.payload == Notification(
        id="n0",
        event=NotificationEvent.FIRING,
        level=0,
        group="route:K1",
        department="transport",
        severity="warning",
        at=DAY,
        title_zh="【人流告警】1 条",
        title_en="Crowd alert (warning): 1",
        alerts=draft.payload.alerts,
    )
    assert draft.payload.to_json()["at_ms"] == int(DAY.timestamp() * 1000)
    assert draft.channel_type == "webhook"


# --- stage 6 and follow-ups: what a hold kept back, escalation ------------------------------


def firing(
    *, notified_at: datetime | None, escalation_notified: int = 0, **row: Any
) -> ActiveAlert:
    return ActiveAlert(alert_row(**row), None, notified_at, escalation_notified)


SIX_MIN_AGO = DAY - timedelta(minutes=6)
FOLLOW_UP_CASES = [
    ("the hold ended: people are told now", policy(), firing(notified_at=None),
     [("hook", "firing", 0)], [41], [], {}),
    ("still silenced: nothing", policy(silences=(silence(),)), firing(notified_at=None),
     [], [], [], {}),
    ("unacknowledged past after_min: escalate to the step's channel", policy(),
     firing(notified_at=SIX_MIN_AGO), [("duty", "escalation", 1)], [], [41], {41: 1}),
    ("not yet due", policy(), firing(notified_at=DAY - timedelta(minutes=4)), [], [], [], {}),
    ("acknowledged: never escalated", policy(),
     firing(notified_at=SIX_MIN_AGO, acknowledged_at=DAY - timedelta(minutes=5),
            acknowledged_by="li"), [], [], [], {}),
    ("escalated by hand on the page: its contacts are told once", policy(),
     firing(notified_at=DAY - timedelta(minutes=1), escalation_level=1,
            escalated_at=DAY - timedelta(minutes=1)),
     [("duty", "escalation", 1)], [], [], {41: 1}),
    ("already told of its level: nothing", policy(),
     firing(notified_at=DAY - timedelta(minutes=1), escalation_level=1,
            escalated_at=DAY - timedelta(minutes=1), escalation_notified=1), [], [], [], {}),
    ("past the last step: the last step's contacts stay the last", policy(),
     firing(notified_at=SIX_MIN_AGO, escalation_level=1, escalated_at=DAY - timedelta(hours=1),
            escalation_notified=1), [], [], [], {}),
    ("a site no longer configured is left alone", policy(),
     firing(notified_at=None, site_id="gone", alert_key="gone/platform/crowded"),
     [], [], [], {}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("plan_policy", "alert", "sent", "notified", "escalate", "escalation_notified"),
    [pytest.param(*case[1:], id=case[0]) for case in FOLLOW_UP_CASES],
)
def test_plan_follow_ups(
    plan_policy: Policy,
    alert: ActiveAlert,
    sent: list[tuple[str, str, int]],
    notified: list[int],
    escalate: list[int],
    escalation_notified: dict[int, int],
) -> None:
    sites = {s.id: s for s in CONFIG.sites}
    zone_camera = {("stop-a", "platform"): "cam1", ("stop-b", "platform"): "cam1"}

    plan = plan_follow_ups(plan_policy, [alert], sites, zone_camera, DAY)

    assert [(d.channel_id, d.event.value, d.level) for d, _ in plan.drafts] == sent
    assert all(ids == (alert.row.id,) for _, ids in plan.drafts)
    assert [alert_id for alert_id, _ in plan.notified] == notified
    assert plan.escalate == escalate
    assert plan.escalation_notified == escalation_notified
    assert bool(plan) == bool(sent or notified or escalate or escalation_notified)
    for draft, _ in plan.drafts:
        assert isinstance(draft.payload, Notification)
        [told] = draft.payload.alerts
        assert (told.alert_id, told.alert_key) == (41, alert.row.alert_key)
