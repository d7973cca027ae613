"""A small MQTT client over paho-mqtt 2 that every process uses.

Domain code never sees paho: it gets :class:`MqttClient` (or just its ``publish`` method as a
callable) and hands it bytes.  What this wrapper adds over paho:

- ``connect`` waits for the CONNACK and raises :class:`BrokerError` on a refusal or time-out;
  an authentication refusal is final (no retry loop against wrong credentials).
- ``publish`` at QoS 1 waits for the broker's PUBACK, so "published" means "the broker has it".
- Subscriptions are remembered and renewed after every reconnect (paho's background loop
  reconnects with backoff on its own).
- MQTT 5 or 3.1.1 (amqtt, the demo's embedded broker, speaks only 3.1.1) from the config.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from crowdwatch.contracts.config import MqttConfig
from crowdwatch.contracts.errors import BrokerError

logger = logging.getLogger(__name__)

MessageHandler = Callable[[str, bytes], None]
"""Called with (topic, payload) on paho's network thread: keep it quick."""

_AUTH_FAILURES = {"Bad user name or password", "Not authorized", "Banned"}


class MqttClient:
    """One connection to the broker.

    Args:
        config: the ``mqtt`` section of the site config.
        client_id: unique per process (MQTT drops an older session with the same id).
        will: ``(topic, payload)`` the broker publishes, retained, if we vanish.
        clean_start: ``False`` keeps the session (queued QoS 1 messages) across reconnects.
    """

    def __init__(
        self,
        config: MqttConfig,
        client_id: str,
        *,
        will: tuple[str, bytes] | None = None,
        clean_start: bool = True,
    ) -> None:
        self._config = config
        self._v5 = config.protocol == "5"
        self._clean_start = clean_start
        self._client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5 if self._v5 else paho.MQTTv311,
            clean_session=None if self._v5 else clean_start,
        )
        if config.username:
            self._client.username_pw_set(config.username, config.password)
        if will is not None:
            self._client.will_set(will[0], will[1], qos=1, retain=True)
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.max_queued_messages_set(10_000)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._subscriptions: dict[str, MessageHandler] = {}
        self._connected = threading.Event()
        self._refusal: str | None = None
        self._pending_subacks: dict[int, threading.Event] = {}
        self._lock = threading.Lock()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def connect(self, timeout: float = 10.0) -> None:
        """Connect and wait for the broker's CONNACK.

        Raises:
            BrokerError: unreachable, refused, or no answer within ``timeout`` seconds.
        """
        cfg = self._config
        props = None
        if self._v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            if not self._clean_start:
                props.SessionExpiryInterval = 24 * 3600
        try:
            self._client.connect(
                cfg.host,
                cfg.port,
                keepalive=cfg.keepalive_s,
                clean_start=self._clean_start if self._v5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
                properties=props,
            )
        except OSError as exc:
            raise BrokerError(f"cannot reach MQTT broker {cfg.host}:{cfg.port}: {exc}") from exc
        self._client.loop_start()
        if not self._connected.wait(timeout):
            self._client.loop_stop()
            reason = self._refusal or f"no answer within {timeout:g} s"
            raise BrokerError(f"MQTT broker {cfg.host}:{cfg.port} refused us: {reason}")
        self._wait_for_subacks(timeout)

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False, timeout: float = 10
    ) -> None:
        """Publish and, for QoS 1, wait until the broker acknowledged it.

        Raises:
            BrokerError: not acknowledged within ``timeout`` (the broker is down or slow).
        """
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise BrokerError(f"publish to {topic!r} failed: {paho.error_string(info.rc)}")
        if qos == 0:
            return
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as exc:
            raise BrokerError(f"publish to {topic!r} failed: {exc}") from exc
        if not info.is_published():
            raise BrokerError(f"broker did not acknowledge {topic!r} within {timeout:g} s")

    def subscribe(
        self,
        topic_filter: str,
        handler: MessageHandler,
        *,
        shared: bool = False,
        timeout: float = 10.0,
    ) -> None:
        """Subscribe at QoS 1; with ``shared`` use the config's MQTT 5 shared group.

        When connected, returns once the broker acknowledged the subscription; otherwise the
        subscription is sent (and awaited by :meth:`connect`) on connection.

        Raises:
            BrokerError: the broker did not acknowledge within ``timeout`` seconds.
        """
        group = self._config.shared_group
        if shared and group and self._v5:
            topic_filter = f"$share/{group}/{topic_filter}"
        with self._lock:
            self._subscriptions[topic_filter] = handler
        if self.connected:
            self._send_subscribe(self._client, topic_filter)
            self._wait_for_subacks(timeout)

    def _send_subscribe(self, client: paho.Client, topic_filter: str) -> None:
        # Register the mid under the lock before the SUBACK can arrive on the network thread.
        with self._lock:
            _, mid = client.subscribe(topic_filter, qos=1)
            if mid is not None:
                self._pending_subacks[mid] = threading.Event()

    def _wait_for_subacks(self, timeout: float) -> None:
        """Block until the broker confirmed every subscription sent so far.

        Without this a message published right after ``subscribe`` returns may be missed.
        """
        with self._lock:
            events = list(self._pending_subacks.items())
        for mid, event in events:
            if not event.wait(timeout):
                raise BrokerError(f"broker did not confirm subscription {mid} within {timeout:g} s")
            with self._lock:
                self._pending_subacks.pop(mid, None)

    def close(self) -> None:
        """Disconnect cleanly (no Last Will) and stop the network thread."""
        self._connected.clear()  # before disconnect: this is not an outage worth a warning
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    # paho callbacks, on paho's network thread

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            self._refusal = str(reason)
            logger.error("MQTT broker refused connection: %s", reason)
            if str(reason) in _AUTH_FAILURES:
                # Retrying wrong credentials only gets the client banned; stop here.
                client.disconnect()
            return
        with self._lock:
            filters = list(self._subscriptions)
        for topic_filter in filters:
            self._send_subscribe(client, topic_filter)
        logger.info("MQTT connected to %s:%s", self._config.host, self._config.port)
        self._connected.set()

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if self._connected.is_set():
            logger.warning("MQTT disconnected: %s; reconnecting", reason)
        self._connected.clear()

    def _on_subscribe(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        for code in reason_codes:
            if code.is_failure:
                logger.error("MQTT broker refused subscription %d: %s", mid, code)
        with self._lock:
            event = self._pending_subacks.get(mid)
        if event is not None:
            event.set()

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        handler = self._match(message.topic)
        if handler is None:
            return
        try:
            handler(message.topic, bytes(message.payload))
        except Exception:
            # A handler bug must not kill paho's network thread (and with it every message).
            logger.exception("MQTT handler failed for topic %s", message.topic)

    def _match(self, topic: str) -> MessageHandler | None:
        with self._lock:
            items = list(self._subscriptions.items())
        for topic_filter, handler in items:
            plain = (
                topic_filter.split("/", 2)[2]
                if topic_filter.startswith("$share/")
                else topic_filter
            )
            if paho.topic_matches_sub(plain, topic):
                return handler
        return None
