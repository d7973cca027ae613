"""A bare MQTT 5 publisher for the load bench: QoS 1 PUBLISH packets built from bytes.

paho spends ~0.1-0.2 ms of Python per QoS 1 publish (packet objects, its locks, a socket
write per message, a callback per PUBACK): at thousands of simulated cameras that is the
simulators' CPU. The fleet's payloads are ready bytes, so here a packet is a few ``bytes``
joined (MQTT 5, section 3.3: fixed header, topic, packet id, empty properties, payload), a
tick's packets go out in one ``sendall``, and a reader thread counts PUBACKs against the
broker's Receive Maximum (section 3.2.2.3.3), which bounds what is in flight. It speaks only
what a publisher needs (CONNECT, PUBLISH QoS 1, PUBACK, PINGREQ, DISCONNECT); the broker
sees an ordinary MQTT 5 client.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

_CONNACK, _PUBACK, _PINGRESP, _DISCONNECT = 0x20, 0x40, 0xD0, 0xE0
_RECEIVE_MAXIMUM = 0x21
_DEFAULT_RECEIVE_MAXIMUM = 65535


class WireError(RuntimeError):
    """The broker refused us or the connection broke."""


def varint(n: int) -> bytes:
    """MQTT's Variable Byte Integer (section 1.5.5)."""
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack("!H", len(data)) + data


def _varint_at(data: bytes, i: int) -> tuple[int, int]:
    """A Variable Byte Integer at ``data[i]``: its value and the index after it."""
    value, shift = 0, 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i
        shift += 7


def _read_varint(sock: socket.socket) -> int:
    value, shift = 0, 0
    while True:
        byte = _read_exact(sock, 1)[0]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value
        shift += 7


def _read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise WireError("the broker closed the connection")
        data += chunk
    return data


def _receive_maximum(properties: bytes) -> int:
    """The Receive Maximum in CONNACK's properties (65535 when absent)."""
    i = 0
    while i < len(properties):
        ident = properties[i]
        i += 1
        if ident == _RECEIVE_MAXIMUM:
            return int(struct.unpack_from("!H", properties, i)[0])
        # Only what mosquitto, EMQX and VerneMQ send in a CONNACK needs skipping here.
        if ident in (0x24, 0x25, 0x28, 0x29, 0x2A):  # one byte
            i += 1
        elif ident in (0x13, 0x22):  # two bytes
            i += 2
        elif ident in (0x11, 0x27):  # four bytes
            i += 4
        elif ident in (0x12, 0x15, 0x1A, 0x1C, 0x1F):  # a string
            i += 2 + struct.unpack_from("!H", properties, i)[0]
        elif ident == 0x26:  # a user property: two strings
            for _ in range(2):
                i += 2 + struct.unpack_from("!H", properties, i)[0]
        else:
            raise WireError(f"unexpected CONNACK property {ident:#x}")
    return _DEFAULT_RECEIVE_MAXIMUM


class WirePublisher:
    """One MQTT 5 connection that publishes QoS 1 packets made by :meth:`packet`.

    Args:
        host: the broker.
        port: its port.
        client_id: the client identifier (clean start, no session kept).
        keepalive_s: the keepalive announced; a PINGREQ goes out with :meth:`ping`.
    """

    def __init__(self, host: str, port: int, client_id: str, keepalive_s: int = 60) -> None:
        self._sock = socket.create_connection((host, port), timeout=10)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        body = b"".join(
            (_string("MQTT"), bytes([5, 0x02]), struct.pack("!H", keepalive_s), b"\x00")
        ) + _string(client_id)
        self._sock.sendall(bytes([0x10]) + varint(len(body)) + body)
        kind = _read_exact(self._sock, 1)[0]
        connack = _read_exact(self._sock, _read_varint(self._sock))
        if kind != _CONNACK or connack[1] != 0:
            raise WireError(f"CONNACK refused: packet {kind:#x}, reason {connack[1:2].hex()}")
        props_len, at = _varint_at(connack, 2)
        self.receive_maximum = _receive_maximum(connack[at : at + props_len])
        self._sock.settimeout(None)
        self._inflight = threading.Semaphore(self.receive_maximum)
        self._next_id = 0
        self.acked = 0
        self.failed: str | None = None
        self._reader = threading.Thread(target=self._read, name="wire-publisher", daemon=True)
        self._reader.start()

    @staticmethod
    def prefix(topic: str, retain: bool = False) -> tuple[int, bytes]:
        """What every packet to ``topic`` starts with: the first byte and the topic name."""
        return 0x32 | (0x01 if retain else 0), _string(topic)

    def publish(self, messages: list[tuple[tuple[int, bytes], bytes]]) -> None:
        """Send QoS 1 PUBLISH packets of ``(prefix, payload)``, written together.

        Each takes a slot of the broker's Receive Maximum until its PUBACK; when none is
        free, what is built so far goes out first and the call waits for a slot.

        Raises:
            WireError: the connection broke, the broker refused a publish, or no PUBACK
                freed a slot for 30 s.
        """
        packets: list[bytes] = []
        for (first, topic), payload in messages:
            if self.failed:
                raise WireError(self.failed)
            if not self._inflight.acquire(blocking=False):
                self._sock.sendall(b"".join(packets))
                packets.clear()
                if not self._inflight.acquire(timeout=30):
                    raise WireError("no PUBACK for 30 s")
            self._next_id = self._next_id % 65535 + 1
            packets += (
                bytes([first]),
                varint(len(topic) + 3 + len(payload)),
                topic,
                struct.pack("!H", self._next_id),
                b"\x00",
                payload,
            )
        if packets:
            self._sock.sendall(b"".join(packets))

    def ping(self) -> None:
        self._sock.sendall(b"\xc0\x00")

    def close(self) -> None:
        """DISCONNECT (normal) and close."""
        with contextlib.suppress(OSError):
            self._sock.sendall(b"\xe0\x00")
        self._sock.close()

    def _read(self) -> None:
        try:
            while True:
                kind = _read_exact(self._sock, 1)[0] & 0xF0
                body = _read_exact(self._sock, _read_varint(self._sock))
                if kind == _PUBACK:
                    # A reason code of 0x80 or more is a refusal: still a freed slot.
                    if len(body) > 2 and body[2] >= 0x80:
                        self.failed = f"the broker refused a publish: reason {body[2]:#x}"
                    self.acked += 1
                    self._inflight.release()
                elif kind == _DISCONNECT:
                    self.failed = f"the broker disconnected us: {body[:1].hex()}"
                    return
        except (OSError, WireError) as exc:
            self.failed = self.failed or f"connection lost: {exc}"
            # Unblock a writer waiting for a slot; its next packet() raises.
            self._inflight.release()
