"""The notification as plain text, for chat robots, e-mail and Grafana annotations."""

from __future__ import annotations

from crowdwatch.contracts.notification import Notification


def plain_text(notification: Notification) -> str:
    """A title line, then each alert in Chinese and English."""
    lines = [f"{notification.title_zh} / {notification.title_en}"]
    for alert in notification.alerts:
        lines.append(alert.summary_zh)
        lines.append(alert.summary_en)
    return "\n".join(lines)


def mentions(numbers: list[str], notification: Notification) -> list[str]:
    """Who a robot @-mentions: the configured numbers, on critical notifications only."""
    return list(numbers) if notification.severity == "critical" else []
