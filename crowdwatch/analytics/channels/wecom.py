"""``wecom``: ``{"msgtype": "text", "text": {"content", "mentioned_mobile_list"}}``."""

from __future__ import annotations

from typing import Any

from crowdwatch.analytics.channels.http import check_robot_answer, post_json
from crowdwatch.analytics.channels.text import mentions, plain_text
from crowdwatch.contracts.channels import WecomChannel
from crowdwatch.contracts.notification import Notification


def body(channel: WecomChannel, notification: Notification) -> dict[str, Any]:
    text: dict[str, Any] = {"content": plain_text(notification)}
    mention = mentions(channel.mention, notification)
    if mention:
        text["mentioned_mobile_list"] = mention
    return {"msgtype": "text", "text": text}


def send(channel: WecomChannel, notification: Notification) -> None:
    raw = post_json(channel.url, body(channel, notification), channel.timeout_s)
    check_robot_answer(raw, "errcode", channel.url)
