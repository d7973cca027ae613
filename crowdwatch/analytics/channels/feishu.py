"""``feishu``: ``{"msg_type": "text", "content": {"text"}}``; signed in the body with a secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

from crowdwatch.analytics.channels.http import check_robot_answer, post_json
from crowdwatch.analytics.channels.text import plain_text
from crowdwatch.contracts.channels import FeishuChannel
from crowdwatch.contracts.notification import Notification


def sign(secret: str, now_s: int) -> str:
    """Feishu's ``sign``: base64 of HMAC-SHA256 keyed with ``"timestamp\\nsecret"`` over nothing."""
    key = f"{now_s}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def body(channel: FeishuChannel, notification: Notification, now_s: float) -> dict[str, Any]:
    out: dict[str, Any] = {"msg_type": "text", "content": {"text": plain_text(notification)}}
    if channel.secret:
        out["timestamp"] = str(int(now_s))
        out["sign"] = sign(channel.secret, int(now_s))
    return out


def send(channel: FeishuChannel, notification: Notification) -> None:
    raw = post_json(channel.url, body(channel, notification, time.time()), channel.timeout_s)
    check_robot_answer(raw, "code", channel.url)
