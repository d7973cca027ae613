"""Each channel's body and signature, delivered to real local receivers (tests/sinks.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import pytest
from sinks import HttpSink, SmtpSink

from crowdwatch.analytics.channels import DeliveryError, send
from crowdwatch.contracts.channels import AlertChannel, parse_channel
from crowdwatch.contracts.notification import Notification

PAYLOAD: dict[str, Any] = {
    "schema": "crowdwatch.notification/1",
    "id": "5f0c1d2e3a4b5c6d7e8f90a1b2c3d4e5",
    "event": "firing",
    "level": 0,
    "group": "route:K1",
    "department": "transport",
    "severity": "critical",
    "at": "2026-10-01T09:00:00Z",
    "at_ms": 1790845200000,
    "title_zh": "【紧急】1 条",
    "title_en": "Crowd alert (critical): 1",
    "alerts": [
        {
            "alert_key": "stop-a/platform/crowded",
            "site_id": "stop-a",
            "zone_id": "platform",
            "rule_id": "crowded",
            "state": "firing",
            "severity": "critical",
            "value": 0.9,
            "threshold": 0.85,
            "ts": "2026-10-01T08:59:55Z",
            "summary_zh": "甲站 候车区: 45 人候车",
            "summary_en": "Stop A platform: 45 waiting",
            "alert_id": None,
            "message_id": None,
            "acknowledged_by": None,
            "dispatch": None,
            "schema": None,
        }
    ],
}
NOTIFICATION = Notification.from_json(PAYLOAD)
TEXT = (
    "【紧急】1 条 / Crowd alert (critical): 1\n甲站 候车区: 45 人候车\nStop A platform: 45 waiting"
)


def channel(**fields: Any) -> AlertChannel:
    return parse_channel(fields)


def test_webhook_gets_the_notification_as_json(http_sink: HttpSink) -> None:
    send(channel(id="hook", type="webhook", url=f"{http_sink.url}/hook"), NOTIFICATION)
    [got] = http_sink.on("/hook")
    assert got.body == PAYLOAD
    # The same id on a resend after a restart: the receiver can drop the repeat.
    assert got.headers["Idempotency-Key"] == PAYLOAD["id"]
    assert got.headers["Content-Type"].startswith("application/json")


def test_wecom_robot_text_with_mentions(http_sink: HttpSink) -> None:
    url = f"{http_sink.url}/cgi-bin/webhook/send?key=abc"
    send(channel(id="wx", type="wecom", url=url, mention=["13800000000"]), NOTIFICATION)
    [got] = http_sink.on("/cgi-bin/webhook/send")
    assert got.body == {
        "msgtype": "text",
        "text": {"content": TEXT, "mentioned_mobile_list": ["13800000000"]},
    }
    assert got.query["key"] == ["abc"]


def test_dingtalk_robot_is_signed(http_sink: HttpSink) -> None:
    url = f"{http_sink.url}/robot/send?access_token=tok"
    send(channel(id="dd", type="dingtalk", url=url, secret="SECtest"), NOTIFICATION)
    [got] = http_sink.on("/robot/send")
    assert got.body == {
        "msgtype": "text",
        "text": {"content": TEXT},
        "at": {"atMobiles": [], "isAtAll": False},
    }
    timestamp = got.query["timestamp"][0]
    expected = hmac.new(b"SECtest", f"{timestamp}\nSECtest".encode(), hashlib.sha256).digest()
    assert got.query["sign"] == [base64.b64encode(expected).decode()]
    assert got.query["access_token"] == ["tok"]


def test_feishu_bot_is_signed(http_sink: HttpSink) -> None:
    http_sink.answer["/open-apis/bot/v2/hook/x"] = {"code": 0, "msg": "success"}
    url = f"{http_sink.url}/open-apis/bot/v2/hook/x"
    send(channel(id="fs", type="feishu", url=url, secret="s3"), NOTIFICATION)
    [got] = http_sink.on("/open-apis/bot/v2/hook/x")
    assert (got.body["msg_type"], got.body["content"]) == ("text", {"text": TEXT})
    key = f"{got.body['timestamp']}\ns3".encode()
    assert (
        got.body["sign"] == base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
    )


def test_a_robot_refusal_in_the_body_is_a_failed_attempt(http_sink: HttpSink) -> None:
    http_sink.answer["/robot/send"] = {"errcode": 310000, "errmsg": "keywords not in content"}
    with pytest.raises(DeliveryError, match="310000 keywords not in content"):
        send(channel(id="dd", type="dingtalk", url=f"{http_sink.url}/robot/send?a=1"), NOTIFICATION)


def test_grafana_annotation(http_sink: HttpSink) -> None:
    send(channel(id="gf", type="grafana", url=http_sink.url, token="glsa_x"), NOTIFICATION)
    [got] = http_sink.on("/api/annotations")
    assert got.headers["Authorization"] == "Bearer glsa_x"
    assert got.body["time"] == PAYLOAD["at_ms"]
    assert got.body["tags"] == ["crowdwatch", "firing", "critical", "stop-a", "crowded"]
    assert got.body["text"] == TEXT.replace("\n", "<br>")


def test_email_over_smtp(smtp_sink: SmtpSink) -> None:
    smtp = {"host": "127.0.0.1", "port": smtp_sink.port, "from_addr": "cw@x.cn", "to": ["a@x.cn"]}
    send(channel(id="mail", type="email", smtp=smtp), NOTIFICATION)
    [mail] = smtp_sink.wait_for(1)
    assert mail["Subject"] == "【紧急】1 条 / Crowd alert (critical): 1"
    assert mail["To"] == "a@x.cn"
    body = mail.get_body()
    assert body is not None and "Stop A platform: 45 waiting" in body.get_content()


def test_http_500_and_unreachable_are_failed_attempts(http_sink: HttpSink) -> None:
    http_sink.fail["/hook"] = 1
    with pytest.raises(DeliveryError, match="HTTP 500"):
        send(channel(id="h", type="webhook", url=f"{http_sink.url}/hook"), NOTIFICATION)
    with pytest.raises(DeliveryError, match="cannot POST"):
        send(channel(id="h", type="webhook", url="http://127.0.0.1:9/hook"), NOTIFICATION)


DISPATCH: dict[str, Any] = {
    "as_of": "2026-10-01T09:00:00Z",
    "waiting": 85,
    "arrival_rate_per_min": 6.0,
    "target_min": 15.0,
    "routes": [
        {
            "route": "K1",
            "kind": "extra",
            "buses": 1,
            "arrive_by": "2026-10-01T09:10:00Z",
            "clear_min_without": 25.0,
            "clear_min_with": 10.0,
            "stranded_avoided": 15,
        }
    ],
    "text_zh": "调度建议: 立即加派 K1 路 1 辆 (17:10 前到站); 预计 10 分钟疏散 (不加车 25 分钟), 少滞留约 15 人",
    "text_en": "Dispatch now: 1 extra K1 bus (at the stop by 17:10); clears in 10 min (25 without), "
    "~15 fewer stranded",
}
ADVISED_PAYLOAD = PAYLOAD | {"alerts": [PAYLOAD["alerts"][0] | {"dispatch": DISPATCH}]}
ADVISED = Notification.from_json(ADVISED_PAYLOAD)
DISPATCH_LINE = f"{DISPATCH['text_zh']} / {DISPATCH['text_en']}"


def _robot_text(kind: str, body: dict[str, Any]) -> str:
    if kind == "feishu":
        return str(body["content"]["text"])
    return str(body["text"]["content"])


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("wecom", "/cgi-bin/webhook/send"),
        ("dingtalk", "/robot/send"),
        ("feishu", "/open-apis/bot/v2/hook/x"),
    ],
)
def test_every_chat_robot_says_the_recommendation_in_one_line(
    http_sink: HttpSink, kind: str, path: str
) -> None:
    send(channel(id="robot", type=kind, url=f"{http_sink.url}{path}?key=k"), ADVISED)
    [got] = http_sink.on(path)
    assert _robot_text(kind, got.body) == f"{TEXT}\n{DISPATCH_LINE}"


def test_webhook_carries_the_recommendation_as_fields(http_sink: HttpSink) -> None:
    send(channel(id="hook", type="webhook", url=f"{http_sink.url}/hook"), ADVISED)
    [got] = http_sink.on("/hook")
    assert got.body == ADVISED_PAYLOAD
    assert got.body["alerts"][0]["dispatch"]["routes"][0]["buses"] == 1


def test_email_and_grafana_carry_the_recommendation_line(
    http_sink: HttpSink, smtp_sink: SmtpSink
) -> None:
    smtp = {"host": "127.0.0.1", "port": smtp_sink.port, "from_addr": "cw@x.cn", "to": ["a@x.cn"]}
    send(channel(id="mail", type="email", smtp=smtp), ADVISED)
    [mail] = smtp_sink.wait_for(1)
    body = mail.get_body()
    assert body is not None and DISPATCH_LINE in body.get_content().splitlines()
    send(channel(id="gf", type="grafana", url=http_sink.url), ADVISED)
    [got] = http_sink.on("/api/annotations")
    assert got.body["text"].split("<br>")[-1] == DISPATCH_LINE
