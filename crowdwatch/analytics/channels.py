"""Sending one notification to one channel: bodies per channel type, one attempt each.

A notification is a JSON object (``crowdwatch.notification/1``: event, group, the alerts with
their bilingual summaries) stored in the ``notifications`` table; each channel turns it into
the body its receiver documents:

=========  ==================================================================================
webhook    the notification itself, ``Content-Type: application/json``; header
           ``Idempotency-Key``: its ``id`` (the same when a restarted engine sends it again)
wecom      ``{"msgtype": "text", "text": {"content": ..., "mentioned_mobile_list": [...]}}``
dingtalk   ``{"msgtype": "text", "text": {"content": ...}, "at": {"atMobiles": [...]}}``; with a
           ``secret``, ``&timestamp=<ms>&sign=<base64 HMAC-SHA256 of "ts\\nsecret">`` on the URL
feishu     ``{"msg_type": "text", "content": {"text": ...}}``; with a ``secret``, ``timestamp``
           (s) and ``sign`` (base64 HMAC-SHA256 keyed with "ts\\nsecret" over nothing)
grafana    ``POST {url}/api/annotations`` ``{"time": ms, "tags": [...], "text": ...}``, bearer token
email      SMTP: subject = the first line, body = both languages
=========  ==================================================================================

The robots answer HTTP 200 with an error code in the body (``errcode`` / ``code`` not 0) when
they refuse a message; that is a failed attempt like an HTTP error or a time-out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import smtplib
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

from crowdwatch.contracts.config import AlertChannel, ChannelType
from crowdwatch.contracts.errors import CrowdwatchError

NOTIFICATION_SCHEMA = "crowdwatch.notification/1"

Publish = Callable[[str, bytes], None]


class DeliveryError(CrowdwatchError):
    """One attempt to deliver a notification failed (HTTP error, refusal, time-out)."""


def plain_text(payload: dict[str, Any]) -> str:
    """The notification as chat text: a title line, then each alert in Chinese and English."""
    lines = [f"{payload['title_zh']} / {payload['title_en']}"]
    for alert in payload["alerts"]:
        lines.append(alert["summary_zh"])
        lines.append(alert["summary_en"])
    return "\n".join(lines)


def _post_json(
    url: str, body: dict[str, Any], timeout: float, headers: dict[str, str] | None = None
) -> bytes:
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    request = urllib.request.Request(
        url,
        data=data,
        method="POST",
        headers={"Content-Type": "application/json; charset=utf-8", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as exc:
        exc.close()
        raise DeliveryError(f"HTTP {exc.code} from {_host(url)}") from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryError(f"cannot POST to {_host(url)}: {reason}") from exc


def _host(url: str) -> str:
    # Robot URLs carry their secret key in the query: never log it.
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _check_robot_answer(raw: bytes, field: str, url: str) -> None:
    try:
        answer = json.loads(raw or b"{}")
    except json.JSONDecodeError:
        return
    if isinstance(answer, dict) and answer.get(field, 0) not in (0, None):
        message = answer.get("errmsg") or answer.get("msg") or ""
        raise DeliveryError(f"{_host(url)} refused the message: {field} {answer[field]} {message}")


def dingtalk_url(url: str, secret: str, now_ms: int) -> str:
    """The robot URL with DingTalk's ``timestamp`` and ``sign`` parameters."""
    to_sign = f"{now_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode("utf-8"), to_sign, hashlib.sha256).digest()
    sign = urllib.parse.quote_plus(base64.b64encode(digest))
    return f"{url}&timestamp={now_ms}&sign={sign}"


def feishu_sign(secret: str, now_s: int) -> str:
    """Feishu's ``sign``: base64 of HMAC-SHA256 keyed with ``"timestamp\\nsecret"`` over nothing."""
    key = f"{now_s}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def robot_body(channel: AlertChannel, payload: dict[str, Any], now_s: float) -> dict[str, Any]:
    """The JSON body a chat robot (WeCom, DingTalk, Feishu) expects for this notification."""
    text = plain_text(payload)
    critical = payload.get("severity") == "critical"
    mention = list(channel.mention) if critical else []
    if channel.type is ChannelType.WECOM:
        body: dict[str, Any] = {"msgtype": "text", "text": {"content": text}}
        if mention:
            body["text"]["mentioned_mobile_list"] = mention
        return body
    if channel.type is ChannelType.DINGTALK:
        return {
            "msgtype": "text",
            "text": {"content": text},
            "at": {"atMobiles": mention, "isAtAll": False},
        }
    body = {"msg_type": "text", "content": {"text": text}}
    if channel.secret:
        body["timestamp"] = str(int(now_s))
        body["sign"] = feishu_sign(channel.secret, int(now_s))
    return body


def grafana_body(payload: dict[str, Any]) -> dict[str, Any]:
    """A Grafana annotation for the notification (tags: crowdwatch, event, sites, rules)."""
    alerts = payload["alerts"]
    tags = ["crowdwatch", payload["event"], payload.get("severity", "")]
    tags += sorted({a["site_id"] for a in alerts}) + sorted({a["rule_id"] for a in alerts})
    return {
        "time": int(payload["at_ms"]),
        "tags": [t for t in tags if t],
        "text": plain_text(payload).replace("\n", "<br>"),
    }


def send_email(channel: AlertChannel, payload: dict[str, Any]) -> None:
    """One SMTP delivery to every recipient of ``channel.smtp``."""
    smtp = channel.smtp
    assert smtp is not None
    message = EmailMessage()
    message["Subject"] = f"{payload['title_zh']} / {payload['title_en']}"
    message["From"] = smtp.from_addr
    message["To"] = ", ".join(smtp.to)
    message.set_content(plain_text(payload))
    try:
        with smtplib.SMTP(smtp.host, smtp.port, timeout=channel.timeout_s) as client:
            if smtp.starttls:
                client.starttls()
            if smtp.username:
                client.login(smtp.username, smtp.password or "")
            client.send_message(message)
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"SMTP {smtp.host}:{smtp.port}: {exc}") from exc


def send(
    channel: AlertChannel | None, payload: dict[str, Any], publish: Publish | None = None
) -> None:
    """Deliver ``payload`` once over ``channel`` (``None``: the MQTT alerts topic).

    Args:
        channel: the configured channel, or ``None`` for MQTT (payload ``{"topic",
            "message"}``).
        payload: the stored notification.
        publish: the MQTT publish callable (QoS 1, raises on no acknowledgement).

    Raises:
        DeliveryError: this attempt failed; the caller retries with backoff.
    """
    if channel is None:
        assert publish is not None
        try:
            publish(payload["topic"], json.dumps(payload["message"]).encode("utf-8"))
        except CrowdwatchError as exc:
            raise DeliveryError(f"MQTT: {exc}") from exc
        return
    if channel.type is ChannelType.EMAIL:
        send_email(channel, payload)
        return
    assert channel.url is not None
    if channel.type is ChannelType.WEBHOOK:
        # A resend after an engine restart carries the same key: receivers can drop repeats.
        key = payload.get("id")
        headers = {"Idempotency-Key": str(key)} if key else None
        _post_json(channel.url, payload, channel.timeout_s, headers)
    elif channel.type is ChannelType.GRAFANA:
        headers = {"Authorization": f"Bearer {channel.token}"} if channel.token else {}
        url = channel.url.rstrip("/") + "/api/annotations"
        _post_json(url, grafana_body(payload), channel.timeout_s, headers)
    else:
        now = time.time()
        url = channel.url
        if channel.type is ChannelType.DINGTALK and channel.secret:
            url = dingtalk_url(url, channel.secret, int(now * 1000))
        raw = _post_json(url, robot_body(channel, payload, now), channel.timeout_s)
        field = "code" if channel.type is ChannelType.FEISHU else "errcode"
        _check_robot_answer(raw, field, channel.url)
