"""A small MQTT client over paho-mqtt 2 that every process uses.

Domain code never sees paho: it gets :class:`MqttClient` (or just its ``publish`` method as a
callable) and hands it bytes.  What this wrapper adds over paho:

- ``connect`` waits for the CONNACK and raises :class:`BrokerError` on a refusal or time-out;
  an authentication refusal is final (no retry loop against wrong credentials).
- ``publish`` at QoS 1 waits for the broker's PUBACK, so "published" means "the broker has it".
- Subscriptions are remembered and renewed after every reconnect (paho's background loop
  reconnects with backoff on its own).
- MQTT 5 or 3.1.1 (amqtt, the demo's embedded broker, speaks only 3.1.1) from the config.
- TLS (``mqtt.tls``): the broker's certificate verified against ``mqtt.ca_file`` and its host
  name checked; an optional client certificate.  A CA or key file that cannot be used is a
  :class:`ConfigError` naming the file, at construction; a broker certificate the CA did not
  sign is a :class:`BrokerError` naming the CA file, at :meth:`MqttClient.connect`.
- Credentials: ``mqtt.username`` and its password (``${ENV}`` in the config, or
  ``CROWDWATCH_MQTT_PASSWORD``); the password is never logged.
- A QoS 1 publish the broker refuses (MQTT 5 PUBACK "Not authorized": the account's ACL does
  not allow the topic) is logged as an error naming the topic and counted in
  :attr:`MqttClient.refused`.  It does not raise: a refusal is final, so a caller that
  spools on :class:`BrokerError` must not keep it for a retry.
- Optional manual acknowledgement (``manual_ack=True``): a handler registered with
  :meth:`MqttClient.subscribe_deliveries` gets a :class:`Delivery` (topic, payload, retain
  flag, ...) and the PUBACK goes out only when the owner calls :meth:`MqttClient.ack`, e.g.
  after the database commit.  Until then the broker keeps the message; after a crash it
  redelivers it to the persistent session.  Handlers registered with plain :meth:`subscribe`
  are acknowledged as soon as they return, as before.
"""

from __future__ import annotations

import functools
import logging
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from crowdwatch.contracts.config import MqttConfig
from crowdwatch.contracts.errors import BrokerError, ConfigError

logger = logging.getLogger(__name__)

MessageHandler = Callable[[str, bytes], None]
"""Called with (topic, payload) on paho's network thread: keep it quick."""

_AUTH_FAILURES = {"Bad user name or password", "Not authorized", "Banned"}

SESSION_EXPIRY_S = 24 * 3600
"""How long the broker keeps a persistent (``clean_start=False``) MQTT 5 session while we are away."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message as the broker delivered it, for handlers that need more than the payload.

    ``retain`` is set when the broker sent a stored retained message because we subscribed
    (a replay of an old value), not for a message published while we listened.
    """

    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    """The broker sent it before and got no acknowledgement (a redelivery)."""
    mid: int
    connection: int
    """Which connection of this client it arrived on (acks are only valid on that one)."""


DeliveryHandler = Callable[[Delivery], None]
"""Called with each :class:`Delivery` on paho's network thread: keep it quick."""


@dataclass(frozen=True, slots=True)
class _Route:
    """Where a subscription's messages go: exactly one of the two handlers is set."""

    on_message: MessageHandler | None = None
    on_delivery: DeliveryHandler | None = None


def tls_context(config: MqttConfig) -> ssl.SSLContext:
    """The TLS context of a connection: the broker verified against ``ca_file``.

    Args:
        config: the ``mqtt`` section (``tls: true``).

    Returns:
        A client context that requires the broker's certificate (and checks its host name
        unless ``tls_insecure``), with the client certificate loaded when one is configured.

    Raises:
        ConfigError: the CA, certificate or key file is missing, unreadable or not PEM; the
            message names the setting and the file.
    """
    ca = config.ca_file
    try:
        context = ssl.create_default_context(cafile=None if ca is None else str(ca))
    except ssl.SSLError as exc:
        raise ConfigError(
            f"mqtt.ca_file: {ca} holds no usable PEM CA certificate ({exc.reason or exc})"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"mqtt.ca_file: cannot read {ca}: {exc.strerror or exc}") from exc
    if config.cert_file is not None:
        for setting, path in (("cert_file", config.cert_file), ("key_file", config.key_file)):
            if path is not None and not path.is_file():
                raise ConfigError(f"mqtt.{setting}: no such file {path}")
        try:
            # A key with a passphrase fails here instead of prompting on a terminal.
            context.load_cert_chain(
                str(config.cert_file),
                None if config.key_file is None else str(config.key_file),
                password=lambda: b"",
            )
        except (ssl.SSLError, OSError) as exc:
            key = config.key_file or config.cert_file
            raise ConfigError(
                f"mqtt.cert_file/key_file: cannot use client certificate {config.cert_file} "
                f"with key {key} (PEM, unencrypted, matching): {exc}"
            ) from exc
    context.sslsocket_class = _ClosingSSLSocket
    if config.tls_insecure:
        context.check_hostname = False
        logger.warning(
            "mqtt.tls_insecure: the host name of broker %s is not checked (testing only)",
            config.host,
        )
    return context


class _ClosingSSLSocket(ssl.SSLSocket):
    """An SSL socket that closes itself when its handshake fails.

    paho drops the socket it wrapped when ``do_handshake`` raises, leaving it to the garbage
    collector (a ResourceWarning, and an open file descriptor until then).
    """

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


class MqttClient:
    """One connection to the broker.

    Args:
        config: the ``mqtt`` section of the site config.
        client_id: unique per process (MQTT drops an older session with the same id).
        will: ``(topic, payload)`` the broker publishes, retained, if we vanish.
        birth: ``(topic, payload)`` published, retained, on every connection (the counterpart
            of ``will``: the broker publishes the will after each unclean loss, so "back"
            must be said after each reconnect, not once).
        stand_in: this client resumes someone else's persistent session (MQTT 5,
            ``clean_start=False`` under their client id) and yields it: :meth:`connect` fails
            when the broker holds no such session (the empty one our CONNECT made is removed
            again at once, never subscribed), and any loss of the connection (e.g. the
            broker closing it when the owner comes back) stops the client
            instead of reconnecting, which would take the session back from its owner.
        clean_start: ``False`` keeps the session (queued QoS 1 messages) across reconnects
            (MQTT 5: for :data:`SESSION_EXPIRY_S` after a disconnect).
        manual_ack: acknowledge QoS 1 messages to :meth:`subscribe_deliveries` handlers only
            when :meth:`ack` is called.
        receive_maximum: MQTT 5 only: how many unacknowledged messages the broker may send us
            at once (mosquitto otherwise allows its ``max_inflight_messages``, 20 by default,
            which starves a client that acknowledges a whole batch at once).
        max_packet_size: MQTT 5 only: the broker never sends us a packet bigger than this
            (it drops it for us), so a huge payload costs this client nothing.

    Raises:
        ConfigError: a TLS file of the config cannot be used (see :func:`tls_context`).
        ValueError: ``receive_maximum`` or ``max_packet_size`` out of range.
    """

    def __init__(
        self,
        config: MqttConfig,
        client_id: str,
        *,
        will: tuple[str, bytes] | None = None,
        birth: tuple[str, bytes] | None = None,
        stand_in: bool = False,
        clean_start: bool = True,
        manual_ack: bool = False,
        receive_maximum: int | None = None,
        max_packet_size: int | None = None,
    ) -> None:
        if receive_maximum is not None and not 1 <= receive_maximum <= 65535:
            raise ValueError(f"receive_maximum must be 1..65535, got {receive_maximum}")
        if max_packet_size is not None and not 1 <= max_packet_size <= 268_435_455:
            raise ValueError(f"max_packet_size must be 1..268435455, got {max_packet_size}")
        self._max_packet_size = max_packet_size
        self._config = config
        self._v5 = config.protocol == "5"
        self._clean_start = clean_start
        self._manual_ack = manual_ack
        self._receive_maximum = receive_maximum
        self._birth = birth
        self._stand_in = stand_in
        self._client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5 if self._v5 else paho.MQTTv311,
            clean_session=None if self._v5 else clean_start,
            manual_ack=manual_ack,
        )
        if config.username:
            self._client.username_pw_set(config.username, config.resolved_password())
        if config.tls:
            self._client.tls_set_context(tls_context(config))
        if will is not None:
            self._client.will_set(will[0], will[1], qos=1, retain=True)
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.max_queued_messages_set(10_000)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._client.on_publish = self._on_publish
        self._subscriptions: dict[str, _Route] = {}
        self._connection = 0
        self._connected = threading.Event()
        self._settled = threading.Event()
        """Set on a CONNACK that connected us, or on a refusal that is final (credentials)."""
        self._refusal: str | None = None
        self._pending_subacks: dict[int, threading.Event] = {}
        self._lock = threading.Lock()
        self._refusals: dict[int, str] = {}
        """mid -> the broker's reason, for QoS 1 publishes it refused (until ``publish`` reads it)."""
        self.refused = 0
        """QoS 1 publishes the broker refused (ACL) since this client was made."""

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def _where(self) -> str:
        cfg = self._config
        return f"{cfg.host}:{cfg.port}" + (" (TLS)" if cfg.tls else "")

    def connect(self, timeout: float = 10.0) -> None:
        """Connect and wait for the broker's CONNACK.

        Raises:
            BrokerError: unreachable, refused, or no answer within ``timeout`` seconds.
        """
        cfg = self._config
        self._settled.clear()
        self._refusal = None
        props = None
        if self._v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            if not self._clean_start:
                props.SessionExpiryInterval = SESSION_EXPIRY_S
            if self._receive_maximum is not None:
                props.ReceiveMaximum = self._receive_maximum
            if self._max_packet_size is not None:
                # The broker drops what is bigger instead of sending it to us (MQTT 5).
                props.MaximumPacketSize = self._max_packet_size
        try:
            self._client.connect(
                cfg.host,
                cfg.port,
                keepalive=cfg.keepalive_s,
                clean_start=self._clean_start if self._v5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
                properties=props,
            )
        except ssl.SSLCertVerificationError as exc:
            trusted = f"the CA in {cfg.ca_file}" if cfg.ca_file else "the system's CAs"
            raise BrokerError(
                f"MQTT broker {cfg.host}:{cfg.port}: its TLS certificate is not accepted by "
                f"{trusted}: {exc.verify_message}"
            ) from exc
        except ssl.SSLError as exc:
            raise BrokerError(
                f"TLS handshake with MQTT broker {cfg.host}:{cfg.port} failed: {exc.reason or exc}"
                " (a TLS listener? a client certificate it requires?)"
            ) from exc
        except OSError as exc:
            raise BrokerError(f"cannot reach MQTT broker {self._where()}: {exc}") from exc
        self._client.loop_start()
        if not self._settled.wait(timeout) or not self._connected.is_set():
            self._client.loop_stop()
            reason = self._refusal or f"no answer within {timeout:g} s"
            if self._refusal in _AUTH_FAILURES:
                reason += " (check mqtt.username and its password)"
            who = f" as {cfg.username}" if cfg.username else ""
            raise BrokerError(f"MQTT broker {self._where()} refused us{who}: {reason}")
        self._wait_for_subacks(timeout)

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False, timeout: float = 10
    ) -> None:
        """Publish and, for QoS 1, wait until the broker acknowledged it.

        A QoS 1 message the broker refused (MQTT 5: its ACL denies the topic) is logged and
        counted in :attr:`refused`, not raised: sending it again would be refused again.

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
        with self._lock:
            reason = self._refusals.pop(info.mid, None)
        if reason is not None:
            self.refused += 1
            logger.error(
                "MQTT broker refused the message on %s: %s (the account %s may not publish there)",
                topic,
                reason,
                self._config.username or "(anonymous)",
            )

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
        self._add_route(topic_filter, _Route(on_message=handler), shared, timeout)

    def subscribe_deliveries(
        self,
        topic_filter: str,
        handler: DeliveryHandler,
        *,
        shared: bool = False,
        timeout: float = 10.0,
    ) -> None:
        """Like :meth:`subscribe`, but the handler gets the whole :class:`Delivery`.

        With ``manual_ack`` the message stays unacknowledged until :meth:`ack` is called.

        Raises:
            BrokerError: the broker did not acknowledge within ``timeout`` seconds.
        """
        self._add_route(topic_filter, _Route(on_delivery=handler), shared, timeout)

    def ack(self, delivery: Delivery) -> None:
        """Acknowledge a delivery to the broker (only needed with ``manual_ack``).

        Safe from any thread.  An ack for a delivery of an earlier connection is dropped: the
        broker sends such a message again on the new connection (persistent session), and
        that copy gets its own ack.

        Args:
            delivery: what a :meth:`subscribe_deliveries` handler was given.
        """
        if not self._manual_ack or delivery.qos == 0:
            return
        with self._lock:
            current = self._connection
        if delivery.connection != current or not self.connected:
            return
        self._client.ack(delivery.mid, delivery.qos)

    def _add_route(self, topic_filter: str, route: _Route, shared: bool, timeout: float) -> None:
        group = self._config.shared_group
        if shared and group and self._v5:
            topic_filter = f"$share/{group}/{topic_filter}"
        with self._lock:
            self._subscriptions[topic_filter] = route
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
            if self._stand_in:
                client.disconnect()
                self._settled.set()
            if str(reason) in _AUTH_FAILURES:
                # Retrying wrong credentials only gets the client banned; stop here.
                client.disconnect()
                self._settled.set()
            return
        if self._stand_in and not flags.session_present:
            # Nothing to take over (it expired, or never was): remove the session this
            # CONNECT just made, before anything is routed to it.
            self._refusal = "no session to take over"
            props = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 0
            client.disconnect(properties=props)
            self._settled.set()
            return
        with self._lock:
            self._connection += 1
            filters = list(self._subscriptions)
        for topic_filter in filters:
            self._send_subscribe(client, topic_filter)
        if self._birth is not None:
            client.publish(self._birth[0], self._birth[1], qos=1, retain=True)
        who = f" as {self._config.username}" if self._config.username else ""
        logger.info("MQTT connected to %s%s", self._where(), who)
        self._connected.set()
        self._settled.set()

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if self._stand_in:
            # Never reconnect: the owner (or another stand-in) may hold the session now.
            if self._connected.is_set():
                logger.info("MQTT stand-in disconnected: %s; not reconnecting", reason)
            client.disconnect()
            self._connected.clear()
            return
        if self._connected.is_set():
            logger.warning("MQTT disconnected: %s; reconnecting", reason)
        with self._lock:
            never_connected = self._connection == 0
        if never_connected and self._refusal is None:
            # A TLS listener that wants a client certificate (TLS 1.3 checks it after the
            # handshake) or a plain client on a TLS port: closed before any CONNACK.
            cfg = self._config
            if not cfg.tls:
                hint = "; a TLS port needs mqtt.tls: true"
            elif cfg.cert_file is None:
                hint = "; does its TLS listener require a client certificate (mqtt.cert_file)?"
            else:
                hint = ""
            self._refusal = f"it closed the connection before answering ({reason}){hint}"
        self._connected.clear()

    def _on_publish(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        # paho calls this before it marks the message published, so ``publish`` sees it; a
        # success clears what an earlier message with the same (recycled) mid left behind.
        with self._lock:
            if reason.is_failure:
                self._refusals[mid] = str(reason)
            else:
                self._refusals.pop(mid, None)

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
        with self._lock:
            connection = self._connection
        delivery = Delivery(
            topic=message.topic,
            payload=bytes(message.payload),
            qos=message.qos,
            retain=bool(message.retain),
            dup=bool(message.dup),
            mid=message.mid,
            connection=connection,
        )
        route = self._match(message.topic)
        try:
            if route is not None and route.on_delivery is not None:
                # Its owner acknowledges; if the handler failed, the message stays
                # unacknowledged and the broker sends it again on the next connection.
                route.on_delivery(delivery)
                return
            if route is not None and route.on_message is not None:
                route.on_message(delivery.topic, delivery.payload)
        except Exception:
            # A handler bug must not kill paho's network thread (and with it every message).
            logger.exception("MQTT handler failed for topic %s", message.topic)
            if route is not None and route.on_delivery is not None:
                return
        self.ack(delivery)

    def _match(self, topic: str) -> _Route | None:
        with self._lock:
            items = list(self._subscriptions.items())
        levels = topic.split("/")
        for topic_filter, route in items:
            if _filter_matches(_filter_levels(topic_filter), levels):
                return route
        return None


@functools.lru_cache(maxsize=256)
def _filter_levels(topic_filter: str) -> tuple[str, ...]:
    """A subscription's filter as levels, without a ``$share/{group}/`` prefix; cached, as
    paho's ``topic_matches_sub`` builds a matcher tree for every message it checks."""
    if topic_filter.startswith("$share/"):
        topic_filter = topic_filter.split("/", 2)[2]
    return tuple(topic_filter.split("/"))


def _filter_matches(filter_levels: tuple[str, ...], topic_levels: list[str]) -> bool:
    """MQTT topic matching: ``+`` is one level, a last ``#`` the rest (also none: ``a/#``
    matches ``a``); a topic starting with ``$`` is not matched by a wildcard first level."""
    if topic_levels[0].startswith("$") and filter_levels[0] in ("+", "#"):
        return False
    for i, level in enumerate(filter_levels):
        if level == "#":
            return True
        if i >= len(topic_levels) or (level != "+" and level != topic_levels[i]):
            return False
    return len(filter_levels) == len(topic_levels)
