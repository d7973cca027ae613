"""The built-in channel: every alert message on ``{prefix}/v1/alerts/{site}`` (QoS 1)."""

from __future__ import annotations

from collections.abc import Callable

from crowdwatch.analytics.channels.errors import DeliveryError
from crowdwatch.contracts.errors import CrowdwatchError
from crowdwatch.contracts.messages import encode
from crowdwatch.contracts.notification import AlertPublication

Publish = Callable[[str, bytes], None]
"""``publish(topic, payload)`` at QoS 1 that raises :class:`BrokerError` when not acknowledged."""

MQTT_CHANNEL = "mqtt"
"""Channel id of the built-in MQTT alerts topic (not in ``alerts.channels``)."""


def send(publish: Publish, publication: AlertPublication) -> None:
    try:
        publish(publication.topic, encode(publication.message))
    except CrowdwatchError as exc:
        raise DeliveryError(f"MQTT: {exc}") from exc
