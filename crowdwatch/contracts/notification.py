"""What the alert engine sends people: the ``crowdwatch.notification/1`` contract.

One notification is one message to one channel: an event (``firing``, ``resolved``,
``escalation``), the group it was gathered under and the alerts in it, each with its
bilingual summary.  It is stored in the ``notifications`` table as JSON before it is sent
(so a restarted engine resends the same one, same ``id``) and a ``webhook`` channel posts it
as it is; the chat robots and e-mail turn it into their own bodies.  The MQTT alerts topic
gets :class:`AlertPublication` instead: the alert message itself and its topic.

An alert at a bus stop carries the dispatch recommendation (:class:`DispatchAdvice`): how many
extra buses on which route, when they reach the stop, the clearance time with and without
them and the stranded passengers they are expected to take away.  It is an optional field
added to version 1: a receiver that reads version 1 without it loses nothing it had.

Example:
    >>> from datetime import UTC, datetime
    >>> alert = NotifiedAlert(alert_key="stop-a/platform/crowded", site_id="stop-a",
    ...     zone_id="platform", rule_id="crowded", state="firing", severity="warning",
    ...     value=0.9, threshold=0.85, ts=datetime(2026, 10, 1, tzinfo=UTC),
    ...     summary_zh="甲站: 45 人", summary_en="Stop A: 45 people")
    >>> n = Notification(id="0" * 32, event=NotificationEvent.FIRING, level=0,
    ...     group="site:stop-a", department="transport", severity="warning",
    ...     at=datetime(2026, 10, 1, tzinfo=UTC), title_zh="t", title_en="t", alerts=(alert,))
    >>> Notification.from_json(n.to_json()) == n
    True
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

from crowdwatch.contracts.messages import AlertMessage

NOTIFICATION_SCHEMA: Final = "crowdwatch.notification/1"

Severity = Literal["info", "warning", "critical"]


class NotificationEvent(StrEnum):
    FIRING = "firing"
    """alerts that started firing (or whose silence, mute window or inhibition just ended)"""
    RESOLVED = "resolved"
    """alerts that cleared (only to routes with ``send_resolved``)"""
    ESCALATION = "escalation"
    """firing alerts nobody acknowledged in time: the route's next escalation step"""


class _Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class RouteAdvice(_Contract):
    """One route's part of a dispatch recommendation."""

    route: str = Field(description="the route as riders know it, e.g. 'K1'")
    kind: Literal["extra", "short_turn"] = Field(
        description="extra: buses from the depot; short_turn: buses turned back mid-route"
    )
    buses: int = Field(ge=0, le=20, description="buses to send now (0: the timetable suffices)")
    arrive_by: datetime = Field(description="when buses sent now reach the stop")
    clear_min_without: float | None = Field(
        description="minutes until the timetable alone clears the route's queue; null: not "
        "within the horizon"
    )
    clear_min_with: float | None = Field(description="the same with the recommended buses")
    stranded_avoided: int = Field(
        ge=0, description="people no longer waiting at the target time thanks to these buses"
    )


class DispatchAdvice(_Contract):
    """What a bus dispatcher is advised to send (``crowdwatch.analytics.dispatch_plan``)."""

    as_of: datetime
    waiting: int = Field(ge=0, description="people counted waiting at the stop")
    arrival_rate_per_min: float | None = Field(description="null: unknown, not planned for")
    target_min: float = Field(gt=0, description="clear the stop within this many minutes")
    routes: tuple[RouteAdvice, ...] = Field(min_length=1)
    text_zh: str = Field(description="the recommendation in one line")
    text_en: str

    @property
    def extra_buses(self) -> int:
        return sum(r.buses for r in self.routes)


class NotifiedAlert(_Contract):
    """One alert inside a notification."""

    alert_key: str = Field(description="site/zone/rule (site/camera/rule for no data)")
    site_id: str
    zone_id: str | None
    rule_id: str
    state: Literal["firing", "resolved"]
    severity: Severity
    value: float
    threshold: float
    ts: datetime = Field(description="when it fired (or resolved)")
    summary_zh: str
    summary_en: str
    alert_id: int | None = Field(
        default=None, description="its row in alerts (follow-ups; None in the first message)"
    )
    message_id: str | None = Field(
        default=None, description="the MQTT alert message it also went out as"
    )
    acknowledged_by: str | None = None
    dispatch: DispatchAdvice | None = Field(
        default=None, description="bus stops: the dispatch recommendation when it was sent"
    )
    schema_: Literal["crowdwatch.alert/1"] | None = Field(
        default=None,
        alias="schema",
        description="set when the alert is the MQTT alert message itself",
    )

    @classmethod
    def from_message(cls, message: AlertMessage) -> NotifiedAlert:
        """The alert as it went out on the MQTT alerts topic."""
        return cls.model_validate(message.model_dump(mode="json", by_alias=True))


class Notification(_Contract):
    """``crowdwatch.notification/1``: one message to one channel."""

    schema_: Literal["crowdwatch.notification/1"] = Field(
        default=NOTIFICATION_SCHEMA, alias="schema"
    )
    id: str = Field(
        min_length=1,
        max_length=64,
        description="fixed when queued: a resend carries the same id (Idempotency-Key)",
    )
    event: NotificationEvent
    level: int = Field(ge=0, description="escalation level (0 for firing and resolved)")
    group: str = Field(description="route:K1,K2 / site:<id> / alert:<key>")
    department: str
    severity: Severity = Field(description="the highest severity of its alerts")
    at: datetime
    title_zh: str
    title_en: str
    alerts: tuple[NotifiedAlert, ...] = Field(min_length=1)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def at_ms(self) -> int:
        """``at`` in epoch milliseconds (Grafana annotations, robots' timestamps)."""
        return int(self.at.timestamp() * 1000)

    def to_json(self) -> dict[str, Any]:
        """The JSON object stored in ``notifications.payload`` and posted to webhooks."""
        return self.model_dump(mode="json", by_alias=True)

    @classmethod
    def from_json(cls, data: Any) -> Notification:
        """Read a stored notification back (``at_ms`` is derived, so it is dropped first)."""
        if isinstance(data, dict):
            data = {k: v for k, v in data.items() if k != "at_ms"}
        return cls.model_validate(data)


class AlertPublication(_Contract):
    """What the built-in MQTT channel sends: one alert message to the site's alerts topic."""

    topic: str
    message: AlertMessage

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    @classmethod
    def from_json(cls, data: Any) -> AlertPublication:
        return cls.model_validate(data)
