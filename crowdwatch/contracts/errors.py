"""Every error crowdwatch raises on purpose.

    CrowdwatchError
    ├── ConfigError        a config file or setting is wrong; the message names the YAML path
    ├── MessageError       an MQTT payload breaks the message contract (goes to dead letters)
    ├── BrokerError        the MQTT broker refused us or went away
    ├── StorageError       PostgreSQL refused us or went away
    ├── SourceError        a camera stream or video file cannot be opened or read
    ├── ModelError         detector weights are missing or of the wrong kind
    ├── AlertNotFound      no alert has the id a dispatcher acted on
    ├── AlertNotActive     the alert is no longer firing (resolved): nothing to acknowledge
    └── GrafanaError       the Grafana HTTP API refused us or is unreachable

Library errors (psycopg, paho, OpenCV, ONNX Runtime) are translated at the boundary with
``raise OurError(...) from exc`` so callers catch one family.
"""

from __future__ import annotations


class CrowdwatchError(Exception):
    """Base of all crowdwatch errors."""


class ConfigError(CrowdwatchError):
    """A config file or setting is wrong."""


class MessageError(CrowdwatchError):
    """An MQTT payload does not follow the message contract."""


class BrokerError(CrowdwatchError):
    """The MQTT broker refused the connection or is unreachable."""


class StorageError(CrowdwatchError):
    """The database refused a statement or is unreachable."""


class SourceError(CrowdwatchError):
    """A camera stream or video file cannot be opened or read."""


class ModelError(CrowdwatchError):
    """Detector weights are missing or unusable."""


class AlertNotFound(CrowdwatchError):  # noqa: N818 (name fixed by the web page contract)
    """No alert has the given id."""


class AlertNotActive(CrowdwatchError):  # noqa: N818 (name fixed by the web page contract)
    """The alert exists but is not firing any more, so it cannot be acknowledged or escalated."""


class GrafanaError(CrowdwatchError):
    """The Grafana HTTP API refused a request (e.g. a bad token) or is unreachable."""
