"""Notification channels: one module per type, found through :func:`send`.

==========  ==================================================================================
webhook     the notification itself (``crowdwatch.notification/1``), ``Content-Type:
            application/json``; header ``Idempotency-Key``: its ``id`` (the same on a resend)
wecom       ``{"msgtype": "text", "text": {"content": ..., "mentioned_mobile_list": [...]}}``
dingtalk    ``{"msgtype": "text", "text": {"content": ...}, "at": {"atMobiles": [...]}}``; with a
            ``secret``, ``&timestamp=<ms>&sign=<base64 HMAC-SHA256 of "ts\\nsecret">`` on the URL
feishu      ``{"msg_type": "text", "content": {"text": ...}}``; with a ``secret``, ``timestamp``
            (s) and ``sign`` (base64 HMAC-SHA256 keyed with "ts\\nsecret" over nothing)
grafana     ``POST {url}/api/annotations`` ``{"time": ms, "tags": [...], "text": ...}``, bearer
email       SMTP: subject = the first line, body = both languages
mqtt        built in, not configured: each alert message on ``{prefix}/v1/alerts/{site}``
==========  ==================================================================================

The robots answer HTTP 200 with an error code in the body (``errcode`` / ``code`` not 0) when
they refuse a message; that is a failed attempt like an HTTP error or a time-out.

Adding a type: its config model in :mod:`crowdwatch.contracts.channels` (a member of
``AlertChannel``), a module here with ``send(channel, notification)``, and its ``case`` below.
The ``match`` ends in ``assert_never``: mypy fails when a configured type has no sender.
"""

from __future__ import annotations

from typing import assert_never

from crowdwatch.analytics.channels import dingtalk, email, feishu, grafana, webhook, wecom
from crowdwatch.analytics.channels.errors import DeliveryError
from crowdwatch.analytics.channels.mqtt import MQTT_CHANNEL, Publish
from crowdwatch.contracts.channels import (
    AlertChannel,
    DingtalkChannel,
    EmailChannel,
    FeishuChannel,
    GrafanaChannel,
    WebhookChannel,
    WecomChannel,
)
from crowdwatch.contracts.notification import Notification

__all__ = ["MQTT_CHANNEL", "DeliveryError", "Publish", "send"]


def send(channel: AlertChannel, notification: Notification) -> None:
    """Deliver ``notification`` once over ``channel``: the registry of senders.

    Raises:
        DeliveryError: this attempt failed; the caller retries with backoff.
    """
    match channel:
        case WebhookChannel():
            webhook.send(channel, notification)
        case WecomChannel():
            wecom.send(channel, notification)
        case DingtalkChannel():
            dingtalk.send(channel, notification)
        case FeishuChannel():
            feishu.send(channel, notification)
        case GrafanaChannel():
            grafana.send(channel, notification)
        case EmailChannel():
            email.send(channel, notification)
        case _:
            assert_never(channel)
