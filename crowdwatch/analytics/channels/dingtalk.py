"""``dingtalk``: text with ``at``; with a ``secret``, ``timestamp`` and ``sign`` on the URL."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import urllib.parse
from typing import Any

from crowdwatch.analytics.channels.http import check_robot_answer, post_json
from crowdwatch.analytics.channels.text import mentions, plain_text
from crowdwatch.contracts.channels import DingtalkChannel
from crowdwatch.contracts.notification import Notification


def signed_url(url: str, secret: str, now_ms: int) -> str:
    """The robot URL with DingTalk's ``timestamp`` and ``sign`` (HMAC-SHA256 of "ts\\nsecret")."""
    to_sign = f"{now_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode("utf-8"), to_sign, hashlib.sha256).digest()
    sign = urllib.parse.quote_plus(base64.b64encode(digest))
    return f"{url}&timestamp={now_ms}&sign={sign}"


def body(channel: DingtalkChannel, notification: Notification) -> dict[str, Any]:
    return {
        "msgtype": "text",
        "text": {"content": plain_text(notification)},
        "at": {"atMobiles": mentions(channel.mention, notification), "isAtAll": False},
    }


def send(channel: DingtalkChannel, notification: Notification) -> None:
    url = channel.url
    if channel.secret:
        url = signed_url(url, channel.secret, int(time.time() * 1000))
    raw = post_json(url, body(channel, notification), channel.timeout_s)
    check_robot_answer(raw, "errcode", channel.url)
