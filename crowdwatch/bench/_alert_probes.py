"""Alert probes, shared by ``bench alerts`` and ``bench load``.

A probe publishes, for one camera, a count over the bench rule's threshold (``for_s: 0``) and
times the local webhook :class:`Receiver` getting the firing notification for that zone.  Its
baseline is the same two hops without the engine: a message published to the broker, received
by a subscriber that POSTs it to the same receiver.  Heavy imports stay inside the functions
(see :mod:`crowdwatch.bench`).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crowdwatch.bench._load import CameraSpec
    from crowdwatch.contracts.config import MqttConfig

PRIME_STRIDE = 7919
"""Probe n goes to camera n * 7919: the turns spread over sites, every camera before a repeat."""


class Receiver:
    """A local webhook receiver: when each alert key's firing notification arrived."""

    def __init__(self) -> None:
        self.arrivals: dict[str, list[float]] = {}
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                now = time.time()
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                keys = [a["alert_key"] for a in body.get("alerts", [])]
                if body.get("event", "firing") == "firing":
                    with receiver._cond:
                        for key in keys or [str(body.get("probe"))]:
                            receiver.arrivals.setdefault(key, []).append(now)
                        receiver._cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="bench-webhook"
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def wait(self, key: str, after: float, timeout: float) -> float | None:
        """The first arrival for ``key`` after ``after`` (epoch s), or None on time-out."""

        def found() -> float | None:
            return next((t for t in self.arrivals.get(key, []) if t >= after), None)

        with self._cond:
            self._cond.wait_for(lambda: found() is not None, timeout)
            return found()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` th percentile of ``values`` (not empty)."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def probe_alerts(rule_id: str, fire_at: int, clear_at: int, receiver: Receiver) -> dict[str, Any]:
    """The ``alerts`` section of a probed district: one rule on people, no pending period.

    Every zone is its own notification (``group_by: zone``) to ``receiver``, firing only.
    """
    return {
        "evaluate_every_s": 5,
        "rules": [
            {
                "id": rule_id,
                "metric": "people",
                "fire_at": fire_at,
                "clear_at": clear_at,
                "for_s": 0,
            }
        ],
        "channels": [{"id": "hook", "type": "webhook", "url": f"{receiver.url}/hook"}],
        "routes": [{"notify": ["hook"], "group_by": "zone", "send_resolved": False}],
    }


@dataclass
class ProbeTimes:
    """What probes measured, in ms: the probes that notified, and the baseline hops."""

    alerts: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    lost: int = 0
    """Probes that got no notification within 5 s."""


class AlertProber:
    """Alert probes and their baseline, over one MQTT client of the benchmark.

    Args:
        mqtt: the broker and topic prefix of the district.
        specs: the cameras to take turns over.
        receiver: where the engine's webhook and the baseline POSTs arrive.
        rule_id: the rule of :func:`probe_alerts`; alert keys end with it.
        people: the crowded count, at or over the rule's ``fire_at``.
        client_id: the MQTT client id.
    """

    def __init__(
        self,
        mqtt: MqttConfig,
        specs: list[CameraSpec],
        receiver: Receiver,
        *,
        rule_id: str,
        people: int,
        client_id: str,
    ) -> None:
        from crowdwatch.mqtt.client import MqttClient

        self._mqtt = mqtt
        self._specs = specs
        self._receiver = receiver
        self._rule_id = rule_id
        self._people = people
        self._client = MqttClient(mqtt, client_id=client_id)
        self._baseline_topic = f"{mqtt.topic_prefix}/bench/baseline"
        self._client.subscribe(self._baseline_topic, lambda _t, p: _post(receiver.url, p))
        self._client.connect()
        self._turn = 0
        self.sent_at: list[float] = []
        """Monotonic times of the probe counts published (an ingest receives them too)."""

    def crowded(self, index: int) -> str:
        """Publish the crowded count on the first zone of camera ``index``; its alert key."""
        from crowdwatch.bench._load import crowded_count
        from crowdwatch.contracts.messages import TopicKind, camera_topic, encode

        spec = self._specs[index % len(self._specs)]
        message = crowded_count(spec, self._people)
        topic = camera_topic(
            self._mqtt.topic_prefix, spec.site_id, spec.camera_id, TopicKind.COUNTS
        )
        self.sent_at.append(time.monotonic())
        self._client.publish(topic, encode(message), qos=1)
        return f"{spec.site_id}/{spec.zone_ids[0]}/{self._rule_id}"

    def wait_for_engine(self, timeout_s: float, check: Callable[[], None]) -> None:
        """Probe camera 0 until the engine has the lease and notifies.

        Args:
            timeout_s: how long the engine may take.
            check: called between tries; raises when a process the probes need has exited.

        Raises:
            RuntimeError: no notification within ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            started = time.time()
            key = self.crowded(0)
            if self._receiver.wait(key, started, 1.0) is not None:
                return
            check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the alert engine did not notify within {timeout_s:g} s")

    def probe(self) -> float | None:
        """One alert probe on the next camera: ms to the webhook, None when lost (5 s)."""
        self._turn += 1
        sent = time.time()
        key = self.crowded(self._turn * PRIME_STRIDE)
        got = self._receiver.wait(key, sent, 5.0)
        return None if got is None else (got - sent) * 1000

    def baseline(self) -> float | None:
        """The same two hops without the engine: ms to the receiver, None when lost (5 s)."""
        tag = f"baseline-{uuid.uuid4().hex[:8]}"
        sent = time.time()
        self._client.publish(self._baseline_topic, json.dumps({"probe": tag}).encode(), qos=1)
        got = self._receiver.wait(tag, sent, 5.0)
        return None if got is None else (got - sent) * 1000

    def probe_pair(self, times: ProbeTimes) -> None:
        """One :meth:`probe` and one :meth:`baseline` hop after it, added to ``times``."""
        latency = self.probe()
        if latency is None:
            times.lost += 1
        else:
            times.alerts.append(latency)
        hop = self.baseline()
        if hop is not None:
            times.baseline.append(hop)

    def close(self) -> None:
        self._client.close()


def _post(url: str, payload: bytes) -> None:
    request = urllib.request.Request(
        f"{url}/baseline", data=payload, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        response.read()
