"""``email``: SMTP; subject = the title line, body = both languages."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

from crowdwatch.analytics.channels.errors import DeliveryError
from crowdwatch.analytics.channels.text import plain_text
from crowdwatch.contracts.channels import EmailChannel
from crowdwatch.contracts.notification import Notification


def send(channel: EmailChannel, notification: Notification) -> None:
    """One SMTP delivery to every recipient of ``channel.smtp``."""
    smtp = channel.smtp
    message = EmailMessage()
    message["Subject"] = f"{notification.title_zh} / {notification.title_en}"
    message["From"] = smtp.from_addr
    message["To"] = ", ".join(smtp.to)
    message.set_content(plain_text(notification))
    try:
        with smtplib.SMTP(smtp.host, smtp.port, timeout=channel.timeout_s) as client:
            if smtp.starttls:
                client.starttls()
            if smtp.username:
                client.login(smtp.username, smtp.password or "")
            client.send_message(message)
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"SMTP {smtp.host}:{smtp.port}: {exc}") from exc
