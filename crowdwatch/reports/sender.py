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
import os
import smtplib
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
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
from crowdwatch.storage.report_sends import claim_day, last_sent_day, mark_sent, release_day

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


CATCH_UP_DAYS = 7
"""After a long outage, the most days sent at once: the newest ones (a leader wants last
night's report, not a backlog of posters); the older ones are named in a warning."""
CLAIM_LEASE = timedelta(minutes=15)
"""How long a claim protects a day: a poster and every channel's timeouts take far less, so an
older claim's holder has died."""


def due_days(config: CrowdwatchConfig, now: datetime, last_sent: date | None) -> list[date]:
    """The local days whose report is due at ``now``, oldest first.

    Each day from the one after ``last_sent`` to the newest due day (today once ``send_at``
    has passed, else yesterday), at most :data:`CATCH_UP_DAYS`; before the first report ever
    sent, only today once ``send_at`` has passed.

    With ``send_at: "21:00"``, last sent 3 October, at 21:30 on 5 October: 4 and 5 October;
    at 20:00 on 5 October: 4 October only.
    """
    if config.reports.send_at is None:
        return []
    local = now.astimezone(ZoneInfo(config.district.timezone))
    passed = local.strftime("%H:%M") >= config.reports.send_at
    newest = local.date() if passed else local.date() - timedelta(days=1)
    if last_sent is None:
        return [newest] if passed else []
    days = [last_sent + timedelta(days=i) for i in range(1, (newest - last_sent).days + 1)]
    if len(days) > CATCH_UP_DAYS:
        logger.warning(
            "reports of %s to %s not sent (the scheduler was away); sending the last %d days",
            days[0],
            days[-CATCH_UP_DAYS - 1],
            CATCH_UP_DAYS,
        )
    return days[-CATCH_UP_DAYS:]


def send_due(config: CrowdwatchConfig, db_url: str, now: datetime, holder: str) -> list[date]:
    """Send every due day's report once (see :mod:`crowdwatch.storage.report_sends`).

    Days go oldest first; the first that cannot be drawn stops the round (its claim is given
    back) so that no later day overtakes it.  A channel that fails does not: its error is kept
    in the day's row and the log.

    Args:
        config: the config (``reports.send_at``, ``reports.channels``).
        db_url: the database.
        now: the present instant.
        holder: who sends (host and process), for the claims.

    Returns:
        The days sent in this round.

    Raises:
        StorageError: the database is away.
        ConfigError: the day cannot be drawn (the calendar lacks its year, no matplotlib).
    """
    with connect(db_url, autocommit=True) as conn:
        days = due_days(config, now, last_sent_day(conn))
    sent: list[date] = []
    for day in days:
        with connect(db_url, autocommit=True) as conn:
            if not claim_day(conn, day, holder, now, CLAIM_LEASE):
                logger.info("report of %s sent or being sent by another scheduler", day)
                continue
        try:
            outgoing = prepare(config, db_url, day)
        except Exception:
            with connect(db_url, autocommit=True) as conn:
                release_day(conn, day, holder)
            raise
        results = send_report(config, outgoing)
        with connect(db_url, autocommit=True) as conn:
            mark_sent(conn, day, holder, datetime.now(UTC), results)
        logger.info("report of %s sent: %s", day, results)
        sent.append(day)
    return sent


def run_schedule(
    config: CrowdwatchConfig, db_url: str, stop: threading.Event, *, check_every_s: float = 30.0
) -> None:
    """Send each day's report once, at ``reports.send_at`` local time, until ``stop``.

    The days sent are kept in the database (``report_sends``): a restarted scheduler sends
    neither a day again nor skips one (:func:`send_due`).
    """
    holder = f"{socket.gethostname()}:{os.getpid()}"
    while True:
        # Top of a long-running loop: one bad round must not stop the next one.
        try:
            send_due(config, db_url, datetime.now(UTC), holder)
        except Exception:
            logger.exception("daily report not sent; retrying in %.0f s", check_every_s)
        if stop.wait(check_every_s):
            return
