"""Sending the daily report to leaders' chat groups and mailboxes, at a configured local time.

The channels are ``alerts.channels`` named in ``reports.channels``; each gets the poster in
the form its robot takes:

==========  ==========================================================================
webhook     ``{"schema": "crowdwatch.report/1", "day", "title", "url", "png_base64",
            "figures"}`` (the API's JSON of the day)
wecom       ``{"msgtype": "image", "image": {"base64", "md5"}}`` (WeCom's robots take an
            image up to 2 MB inline), then a text with the link
dingtalk    ``{"msgtype": "markdown", "markdown": {"title", "text": "![](PNG url)"}}``:
            DingTalk's robots show images by URL only, so ``reports.public_url`` is needed
feishu      ``{"msg_type": "post"}`` with the title and the link (an inline image needs a
            Feishu app's upload token, which a robot webhook does not have)
email       the PNG inline-attached and the PDF attached
grafana     an annotation with the title and the link
==========  ==========================================================================

A failed channel is logged and reported; the others are still sent.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import smtplib
import threading
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.message import EmailMessage
from typing import Any, assert_never
from zoneinfo import ZoneInfo

from crowdwatch.analytics.channels.dingtalk import signed_url
from crowdwatch.analytics.channels.errors import DeliveryError
from crowdwatch.analytics.channels.feishu import sign
from crowdwatch.analytics.channels.http import check_robot_answer, post_json
from crowdwatch.contracts.channels import (
    AlertChannel,
    DingtalkChannel,
    EmailChannel,
    FeishuChannel,
    GrafanaChannel,
    WebhookChannel,
    WecomChannel,
)
from crowdwatch.contracts.config import CrowdwatchConfig
from crowdwatch.reports.daily import DailyReport, build_daily_report, report_json
from crowdwatch.reports.poster import poster_pdf, poster_png
from crowdwatch.storage.db import connect

logger = logging.getLogger(__name__)

REPORT_SCHEMA = "crowdwatch.report/1"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One report ready to send: its figures and its files."""

    report: DailyReport
    png: bytes
    pdf: bytes
    url: str | None
    """The page's address for readers (``reports.public_url`` + path), if configured."""

    @property
    def text(self) -> str:
        zh, en = self.report.title()
        total = self.report.total_comparison("last_year").change_pct
        change = "" if total is None else f" ({total:+.1f}% 较去年同期 vs last year)"
        link = f"\n{self.url}" if self.url else ""
        return f"{zh}\n{en}\n全区游客 Visitors: {self.report.total_visits:,}{change}{link}"


def _need_url(outgoing: Outgoing, what: str) -> str:
    if outgoing.url is None:
        raise DeliveryError(f"{what} shows images by link only: set reports.public_url")
    return outgoing.url


def send_to(channel: AlertChannel, outgoing: Outgoing) -> None:
    """Deliver the report once over ``channel``.

    Raises:
        DeliveryError: this attempt failed.
    """
    title_zh, title_en = outgoing.report.title()
    body: dict[str, Any]
    match channel:
        case WebhookChannel():
            body = {
                "schema": REPORT_SCHEMA,
                "day": outgoing.report.day.isoformat(),
                "title": {"zh": title_zh, "en": title_en},
                "url": outgoing.url,
                "png_base64": base64.b64encode(outgoing.png).decode(),
                "figures": report_json(outgoing.report),
            }
            post_json(channel.url, body, channel.timeout_s)
        case WecomChannel():
            image = {
                "base64": base64.b64encode(outgoing.png).decode(),
                "md5": hashlib.md5(outgoing.png).hexdigest(),  # WeCom's integrity check
            }
            raw = post_json(channel.url, {"msgtype": "image", "image": image}, channel.timeout_s)
            check_robot_answer(raw, "errcode", channel.url)
            text = {"msgtype": "text", "text": {"content": outgoing.text}}
            check_robot_answer(
                post_json(channel.url, text, channel.timeout_s), "errcode", channel.url
            )
        case DingtalkChannel():
            page = _need_url(outgoing, "DingTalk")
            markdown = f"### {title_zh}\n{title_en}\n\n![report]({page}.png)\n\n[{page}]({page})"
            url = channel.url
            if channel.secret:
                url = signed_url(url, channel.secret, int(time.time() * 1000))
            body = {"msgtype": "markdown", "markdown": {"title": title_zh, "text": markdown}}
            check_robot_answer(post_json(url, body, channel.timeout_s), "errcode", channel.url)
        case FeishuChannel():
            page = _need_url(outgoing, "Feishu")
            lines: list[list[dict[str, Any]]] = [
                [{"tag": "text", "text": line}] for line in outgoing.text.splitlines()[:-1]
            ]
            lines.append([{"tag": "a", "text": "PNG", "href": f"{page}.png"}])
            body = {
                "msg_type": "post",
                "content": {"post": {"zh_cn": {"title": title_zh, "content": lines}}},
            }
            if channel.secret:
                now_s = int(time.time())
                body |= {"timestamp": str(now_s), "sign": sign(channel.secret, now_s)}
            check_robot_answer(post_json(channel.url, body, channel.timeout_s), "code", channel.url)
        case EmailChannel():
            _email(channel, outgoing)
        case GrafanaChannel():
            headers = {"Authorization": f"Bearer {channel.token}"} if channel.token else {}
            body = {
                "time": int(outgoing.report.generated_at.timestamp() * 1000),
                "tags": ["crowdwatch", "report"],
                "text": outgoing.text,
            }
            post_json(
                f"{channel.url.rstrip('/')}/api/annotations", body, channel.timeout_s, headers
            )
        case _:
            assert_never(channel)


def _email(channel: EmailChannel, outgoing: Outgoing) -> None:
    smtp = channel.smtp
    title_zh, title_en = outgoing.report.title()
    message = EmailMessage()
    message["Subject"] = f"{title_zh} / {title_en}"
    message["From"] = smtp.from_addr
    message["To"] = ", ".join(smtp.to)
    message.set_content(outgoing.text)
    day = outgoing.report.day.isoformat()
    message.add_attachment(
        outgoing.png, maintype="image", subtype="png", filename=f"report-{day}.png"
    )
    message.add_attachment(
        outgoing.pdf, maintype="application", subtype="pdf", filename=f"report-{day}.pdf"
    )
    try:
        with smtplib.SMTP(smtp.host, smtp.port, timeout=channel.timeout_s) as client:
            if smtp.starttls:
                client.starttls()
            if smtp.username:
                client.login(smtp.username, smtp.password or "")
            client.send_message(message)
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"SMTP {smtp.host}:{smtp.port}: {exc}") from exc


def prepare(config: CrowdwatchConfig, db_url: str, day: date) -> Outgoing:
    """Read the day's figures and draw the poster.

    Raises:
        StorageError: the database is away.
        ConfigError: the calendar lacks the year, or matplotlib is missing.
    """
    with connect(db_url, autocommit=True) as conn:
        report = build_daily_report(conn, config, day)
    base = config.reports.public_url
    url = None if base is None else f"{base.rstrip('/')}/reports/daily/{day.isoformat()}"
    return Outgoing(report, poster_png(report), poster_pdf(report), url)


def send_report(config: CrowdwatchConfig, outgoing: Outgoing) -> dict[str, str | None]:
    """Send to every channel of ``reports.channels``; channel id -> None (sent) or the error."""
    channels = {c.id: c for c in config.alerts.channels}
    results: dict[str, str | None] = {}
    for channel_id in config.reports.channels:
        try:
            send_to(channels[channel_id], outgoing)
            results[channel_id] = None
        except DeliveryError as exc:
            logger.warning("report %s to %s failed: %s", outgoing.report.day, channel_id, exc)
            results[channel_id] = str(exc)
    return results


def due_day(config: CrowdwatchConfig, now: datetime, last_sent: date | None) -> date | None:
    """The local day whose report is due at ``now`` (``send_at`` has passed, not sent yet)."""
    if config.reports.send_at is None:
        return None
    local = now.astimezone(ZoneInfo(config.district.timezone))
    if local.strftime("%H:%M") < config.reports.send_at or last_sent == local.date():
        return None
    return local.date()


def run_schedule(
    config: CrowdwatchConfig, db_url: str, stop: threading.Event, *, check_every_s: float = 30.0
) -> None:
    """Send each day's report once, at ``reports.send_at`` local time, until ``stop``.

    A process started after ``send_at`` sends that day's report at once; after a restart it
    sends it again (the sent day is kept in memory only).
    """
    last_sent: date | None = None
    while True:
        day = due_day(config, datetime.now(UTC), last_sent)
        if day is not None:
            # Top of a long-running loop: one bad day must not stop the next one.
            try:
                results = send_report(config, prepare(config, db_url, day))
                logger.info("report of %s sent: %s", day, results)
                last_sent = day
            except Exception:
                logger.exception("report of %s not sent; retrying in %.0f s", day, check_every_s)
        if stop.wait(check_every_s):
            return
