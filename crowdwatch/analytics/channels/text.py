"""The notification as plain text, for chat robots, e-mail and Grafana annotations."""

from __future__ import annotations

from crowdwatch.contracts.notification import Notification


def plain_text(notification: Notification) -> str:
    """A title line, then each alert in Chinese and English, then its dispatch advice.

    The advice is one line in both languages ("调度建议: 立即加派 K1 路 2 辆 ... / Dispatch
    now: 2 extra K1 buses ..."): what the dispatcher acts on, in one glance.
    """
    lines = [f"{notification.title_zh} / {notification.title_en}"]
    for alert in notification.alerts:
        lines.append(alert.summary_zh)
        lines.append(alert.summary_en)
        if alert.dispatch is not None:
            lines.append(f"{alert.dispatch.text_zh} / {alert.dispatch.text_en}")
    return "\n".join(lines)


def mentions(numbers: list[str], notification: Notification) -> list[str]:
    """Who a robot @-mentions: the configured numbers, on critical notifications only."""
    return list(numbers) if notification.severity == "critical" else []
