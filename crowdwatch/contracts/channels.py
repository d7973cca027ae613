"""Notification channels in the config (``alerts.channels``): one model per channel type.

``type`` selects the model (a pydantic discriminated union), so each type accepts exactly
its own settings: a ``secret`` on a webhook or an unknown ``type`` stops the process at
start with the YAML path (``alerts.channels[2].type: unknown channel type 'slack'; expected one of ...``).
The senders are :mod:`crowdwatch.analytics.channels`, one module per type; adding a type is
its model here (and a member of :class:`AlertChannel`) plus its sender and one ``case`` in
that package's registry — mypy fails where a case is missing.
"""

from __future__ import annotations

import os
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter

from crowdwatch.contracts.ids import Identifier


class ChannelType(StrEnum):
    WEBHOOK = "webhook"
    """POST the alert as JSON (``crowdwatch.notification/1``) to ``url``"""
    WECOM = "wecom"
    """WeCom (企业微信) group robot: ``https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=...``"""
    DINGTALK = "dingtalk"
    """DingTalk (钉钉) custom robot: ``https://oapi.dingtalk.com/robot/send?access_token=...``"""
    FEISHU = "feishu"
    """Feishu / Lark (飞书) custom bot: ``https://open.feishu.cn/open-apis/bot/v2/hook/...``"""
    EMAIL = "email"
    """e-mail over SMTP (``smtp``)"""
    GRAFANA = "grafana"
    """Grafana annotation: POST ``{url}/api/annotations`` with a service-account token"""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SmtpConfig(_Section):
    host: str = Field(description="SMTP server")
    port: int = Field(default=25, ge=1, le=65535)
    from_addr: str = Field(min_length=3, description="sender address")
    to: list[str] = Field(min_length=1, description="recipients")
    username: str | None = Field(default=None, description="password: CROWDWATCH_SMTP_PASSWORD")
    starttls: bool = Field(default=False, description="upgrade the connection with STARTTLS")

    @property
    def password(self) -> str | None:
        return os.environ.get("CROWDWATCH_SMTP_PASSWORD")


class _Channel(_Section):
    id: Identifier
    timeout_s: float = Field(default=5.0, gt=0, le=60, description="per attempt")


class WebhookChannel(_Channel):
    type: Literal[ChannelType.WEBHOOK]
    url: str = Field(min_length=1, description="receives the notification as JSON")


class WecomChannel(_Channel):
    type: Literal[ChannelType.WECOM]
    url: str = Field(min_length=1, description="the robot's webhook URL (key in the query)")
    mention: list[str] = Field(
        default_factory=list, description="mobile numbers to @ on critical alerts"
    )


class DingtalkChannel(_Channel):
    type: Literal[ChannelType.DINGTALK]
    url: str = Field(min_length=1, description="the robot's URL (access_token in the query)")
    secret: str | None = Field(default=None, description="signing secret (use ${ENV})")
    mention: list[str] = Field(
        default_factory=list, description="mobile numbers to @ on critical alerts"
    )


class FeishuChannel(_Channel):
    type: Literal[ChannelType.FEISHU]
    url: str = Field(min_length=1, description="the bot's webhook URL")
    secret: str | None = Field(default=None, description="signing secret (use ${ENV})")


class EmailChannel(_Channel):
    type: Literal[ChannelType.EMAIL]
    smtp: SmtpConfig


class GrafanaChannel(_Channel):
    type: Literal[ChannelType.GRAFANA]
    url: str = Field(min_length=1, description="Grafana's base URL")
    token: str | None = Field(default=None, description="service-account token (${ENV})")


def _channel_type(data: Any) -> str | None:
    if isinstance(data, dict):
        value = data.get("type")
        return value if isinstance(value, str) else None
    value = getattr(data, "type", None)
    return str(value) if value is not None else None


AlertChannel = Annotated[
    Annotated[WebhookChannel, Tag(ChannelType.WEBHOOK)]
    | Annotated[WecomChannel, Tag(ChannelType.WECOM)]
    | Annotated[DingtalkChannel, Tag(ChannelType.DINGTALK)]
    | Annotated[FeishuChannel, Tag(ChannelType.FEISHU)]
    | Annotated[EmailChannel, Tag(ChannelType.EMAIL)]
    | Annotated[GrafanaChannel, Tag(ChannelType.GRAFANA)],
    Discriminator(
        _channel_type,
        custom_error_type="channel_type",
        custom_error_message="unknown or missing channel type",
    ),
]
"""Somewhere notifications go: a robot in a department's group chat, a mailbox, ..."""

CHANNEL_TYPE_ERROR = "channel_type"
"""The pydantic error type of an unknown or missing ``type`` (see :func:`channel_type_problem`)."""


def channel_type_problem(data: Any) -> str:
    """The one-line message for a channel whose ``type`` selects no model."""
    expected = ", ".join(t.value for t in ChannelType)
    if not isinstance(data, dict):
        return f"expected a mapping with a 'type' ({expected}), got {type(data).__name__}"
    given = data.get("type")
    if given is None:
        return f"a channel needs a 'type': one of {expected}"
    return f"unknown channel type {given!r}; expected one of {expected}"


def without_channel_tag(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """A validation error's location without the union tag pydantic puts after the index.

    ``('alerts', 'channels', 0, 'wecom', 'url')`` -> ``('alerts', 'channels', 0, 'url')``, so
    the message names the YAML path the user wrote.
    """
    tags = {t.value for t in ChannelType}
    return tuple(
        part
        for i, part in enumerate(loc)
        if not (
            i >= 2 and loc[i - 2] == "channels" and isinstance(loc[i - 1], int) and part in tags
        )
    )


_ADAPTER: TypeAdapter[AlertChannel] = TypeAdapter(AlertChannel)


def parse_channel(data: Any) -> AlertChannel:
    """Validate one channel's settings (as under ``alerts.channels``).

    Raises:
        pydantic.ValidationError: unknown type, a missing or unknown setting.
    """
    return _ADAPTER.validate_python(data)
