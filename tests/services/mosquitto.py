"""The test broker: a private mosquitto (:mod:`crowdwatch.devservices.mosquitto`) or an
external one (``CROWDWATCH_TEST_MQTT``), which the fault tests cannot stop."""

from __future__ import annotations

from typing import Protocol

import pytest

from crowdwatch.devservices.mosquitto import DEBIAN_BINARY, MosquittoBroker, find_binary

__all__ = ["DEBIAN_BINARY", "ExternalBroker", "MosquittoBroker", "MqttBroker", "find_binary"]


class MqttBroker(Protocol):
    """What the ``mqtt_broker`` fixture offers, whether we started the broker or not."""

    host: str
    port: int

    def start(self) -> None: ...
    def stop(self, *, kill: bool = False) -> None: ...
    def ensure_running(self) -> None: ...
    def close(self) -> None: ...


class ExternalBroker:
    """A broker we did not start (``CROWDWATCH_TEST_MQTT=host:port``): it cannot be stopped."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port

    @classmethod
    def parse(cls, spec: str) -> ExternalBroker:
        """``host:port`` -> broker.

        Raises:
            ValueError: not ``host:port`` with a numeric port.
        """
        host, sep, port = spec.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"CROWDWATCH_TEST_MQTT: expected host:port, got {spec!r}")
        return cls(host, int(port))

    def start(self) -> None:
        self._skip()

    def stop(self, *, kill: bool = False) -> None:
        self._skip()

    def ensure_running(self) -> None:
        """Nothing to do: the broker's owner keeps it running."""

    def close(self) -> None:
        """Nothing to do: the broker is not ours."""

    def _skip(self) -> None:
        pytest.skip(
            f"the test stops/starts the broker, but CROWDWATCH_TEST_MQTT={self.host}:{self.port} "
            "is an external broker; unset it to run against a private mosquitto"
        )
