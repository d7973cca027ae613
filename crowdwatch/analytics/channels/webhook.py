"""``webhook``: the notification itself as JSON, ``Idempotency-Key`` = its ``id``."""

from __future__ import annotations

from crowdwatch.analytics.channels.http import post_json
from crowdwatch.contracts.channels import WebhookChannel
from crowdwatch.contracts.notification import Notification


def send(channel: WebhookChannel, notification: Notification) -> None:
    # A resend after an engine restart carries the same key: receivers can drop repeats.
    headers = {"Idempotency-Key": notification.id}
    post_json(channel.url, notification.to_json(), channel.timeout_s, headers)
