"""amqtt, a pure-Python MQTT 3.1.1 broker, in a background thread: the demo's broker only.

amqtt supports neither MQTT 5 nor shared subscriptions and manages about 1k messages/s, which is
plenty for one laptop; production and the tests use mosquitto.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from crowdwatch.contracts.errors import BrokerError

logger = logging.getLogger(__name__)


class EmbeddedBroker:
    """An amqtt broker listening on ``host:port`` until :meth:`stop`."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="amqtt", daemon=True)
        self._broker: Any = None

    def start(self, timeout: float = 15.0) -> None:
        """Start listening.

        Raises:
            BrokerError: amqtt is not installed or could not bind the port.
        """
        try:
            from amqtt.broker import Broker
        except ImportError as exc:
            raise BrokerError(
                "the embedded broker needs amqtt: pip install 'crowdwatch[demo]'"
            ) from exc
        # amqtt logs every connection at INFO; the demo's console is for our own lines.
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
        self._thread.start()

        async def start_broker() -> Any:
            broker = Broker(config, loop=self._loop)
            await broker.start()
            return broker

        future = asyncio.run_coroutine_threadsafe(start_broker(), self._loop)
        try:
            self._broker = future.result(timeout)
        except Exception as exc:
            raise BrokerError(
                f"embedded MQTT broker failed on {self.host}:{self.port}: {exc}"
            ) from exc
        logger.info("embedded MQTT broker (amqtt) on %s:%d", self.host, self.port)

    def stop(self, timeout: float = 10.0) -> None:
        if self._broker is not None:
            future = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
            try:
                future.result(timeout)
            except Exception:
                logger.warning("embedded broker did not shut down cleanly", exc_info=True)
            self._broker = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
