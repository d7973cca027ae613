"""``grafana``: ``POST {url}/api/annotations`` ``{"time", "tags", "text"}``, bearer token."""

from __future__ import annotations

from typing import Any

from crowdwatch.analytics.channels.http import post_json
from crowdwatch.analytics.channels.text import plain_text
from crowdwatch.contracts.channels import GrafanaChannel
from crowdwatch.contracts.notification import Notification


def body(notification: Notification) -> dict[str, Any]:
    """A Grafana annotation (tags: crowdwatch, event, severity, sites, rules)."""
    alerts = notification.alerts
    tags = ["crowdwatch", notification.event.value, notification.severity]
    tags += sorted({a.site_id for a in alerts}) + sorted({a.rule_id for a in alerts})
    return {
        "time": notification.at_ms,
        "tags": [t for t in tags if t],
        "text": plain_text(notification).replace("\n", "<br>"),
    }


def send(channel: GrafanaChannel, notification: Notification) -> None:
    headers = {"Authorization": f"Bearer {channel.token}"} if channel.token else {}
    url = channel.url.rstrip("/") + "/api/annotations"
    post_json(url, body(notification), channel.timeout_s, headers)
