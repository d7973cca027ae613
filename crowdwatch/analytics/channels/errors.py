"""The one error a channel raises."""

from __future__ import annotations

from crowdwatch.contracts.errors import CrowdwatchError


class DeliveryError(CrowdwatchError):
    """One attempt to deliver a notification failed (HTTP error, refusal, time-out)."""
