"""The alert engine against the real database, broker and local HTTP/SMTP receivers.

Time is driven by hand (``tick(now)``) so pending periods, keep-firing, mute windows and
escalations are checked to the second without waiting; deliveries run on the engine's real
worker threads and are awaited with ``engine.flush()``.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from db_rows import put_status, put_zone
from factories import config_dict, count_message, make_config, site_dict
from sinks import HttpSink

from crowdwatch.analytics.actions import acknowledge, alert_history, escalate
from crowdwatch.analytics.engine import AlertEngine, TickStats, run_alerts
from crowdwatch.analytics.silences import add_silence, expire_silence
from crowdwatch.contracts.config import CrowdwatchConfig, MqttConfig
from crowdwatch.contracts.errors import BrokerError
from crowdwatch.contracts.messages import (
    AlertMessage,
    CountMethod,
    TopicKind,
    alert_topic,
    camera_topic,
    decode_alert,
    encode,
)
from crowdwatch.mqtt.client import MqttClient
from crowdwatch.storage.migrate import upgrade
from crowdwatch.storage.queries import active_alerts, firing_alert

T0 = datetime(2026, 10, 1, 2, 0, tzinfo=UTC)  # 10:00 in the district
KEY = "stop-a/platform/crowded"


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def engine_config(
    db_url: str,
    mqtt: MqttConfig,
    sink_url: str,
    *,
    rule: dict[str, Any] | None = None,
    channels: list[dict[str, Any]] | None = None,
    routes: list[dict[str, Any]] | None = None,
    routes_of: dict[str, list[str]] | None = None,
    transit: dict[str, Any] | None = None,
    more_sites: int = 0,
    **alerts: Any,
) -> CrowdwatchConfig:
    extra = [site_dict(f"stop-{n:02d}") for n in range(more_sites)]
    raw = config_dict(site_dict("stop-a"), site_dict("stop-b"), *extra)
    for site in raw["sites"]:
        site["routes"] = (routes_of or {}).get(site["id"], [])
    raw["alerts"] = {
        "evaluate_every_s": 0.2,
        "stale_after_s": 120,
        "rules": [
            {"id": "crowded", "metric": "occupancy_ratio", "fire_at": 0.8, "clear_at": 0.5}
            | (rule or {}),
            {"id": "camera-down", "metric": "no_data_s", "fire_at": 60},
        ],
        "channels": channels
        or [
            {"id": "hook", "type": "webhook", "url": f"{sink_url}/hook", "timeout_s": 2},
            {"id": "duty", "type": "webhook", "url": f"{sink_url}/duty", "timeout_s": 2},
        ],
        "routes": routes
        or [
            {
                "departments": ["transport"],
                "notify": ["hook"],
                "escalation": [{"after_min": 5, "notify": ["duty"]}],
            }
        ],
        "delivery": {"attempts": 3, "backoff_s": 0.05, "max_backoff_s": 0.2},
        **alerts,
    }
    raw["database"] = {"url": db_url}
    raw["mqtt"] = mqtt.model_dump()
    if transit is not None:
        raw["transit"] = transit
    return make_config(raw)


Sent = list[tuple[str, bytes]]


class Harness:
    """The database, a config, and engines that publish MQTT into a list."""

    def __init__(self, db_url: str, config: CrowdwatchConfig) -> None:
        self.db_url = db_url
        self.config = config
        self.mqtt: Sent = []
        self.engines: list[AlertEngine] = []
        upgrade(db_url, config)
        self.conn = psycopg.connect(db_url, autocommit=True)

    def engine(self, name: str = "a") -> AlertEngine:
        engine = AlertEngine(
            self.config,
            self.db_url,
            lambda topic, payload: self.mqtt.append((topic, payload)),
            holder=name,
        )
        self.engines.append(engine)
        return engine

    def count(self, n: int, at: datetime, site: str = "stop-a") -> None:
        put_zone(self.conn, site, "platform", n, at)

    def states(self, engine: AlertEngine, at: datetime) -> list[str]:
        return [t.state for t in engine.tick(at)]

    def notifications(self) -> list[tuple[str, str, str, int]]:
        return [
            (r[0], r[1], r[2], int(r[3]))
            for r in self.conn.execute(
                "SELECT channel_id, event, state, attempts FROM notifications ORDER BY id"
            ).fetchall()
        ]

    def close(self) -> None:
        for engine in self.engines:
            engine.close()
        self.conn.close()


@pytest.fixture
def harness_factory(
    db_url: str, mqtt_config: MqttConfig, http_sink: HttpSink
) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(**options: Any) -> Harness:
        harness = Harness(db_url, engine_config(db_url, mqtt_config, http_sink.url, **options))
        made.append(harness)
        return harness

    try:
        yield make
    finally:
        for harness in made:
            harness.close()


def bodies(sink: HttpSink, path: str) -> list[dict[str, Any]]:
    return [r.body for r in sink.on(path)]


def test_fire_notify_resolve_with_history(
    harness_factory: Callable[..., Harness], http_sink: HttpSink
) -> None:
    h = harness_factory()
    engine = h.engine()
    h.count(45, T0)
    assert h.states(engine, T0) == ["firing"]
    h.count(20, minutes(1))
    assert h.states(engine, minutes(1)) == ["resolved"]
    assert engine.flush()

    firing, resolved = bodies(http_sink, "/hook")
    assert (firing["event"], firing["group"], firing["department"]) == (
        "firing",
        "site:stop-a",
        "transport",
    )
    assert [a["alert_key"] for a in firing["alerts"]] == [KEY]
    assert firing["alerts"][0]["summary_en"].startswith("Stop A platform: 45 waiting")
    assert resolved["event"] == "resolved"
    assert [decode_alert(p).state for _, p in h.mqtt] == ["firing", "resolved"]
    assert h.notifications() == [
        ("mqtt", "firing", "sent", 1),
        ("hook", "firing", "sent", 1),
        ("mqtt", "resolved", "sent", 1),
        ("hook", "resolved", "sent", 1),
    ]
    [row] = h.conn.execute("SELECT id FROM alerts").fetchall()
    assert [e.kind for e in alert_history(h.conn, row[0])] == ["fired", "resolved"]


def test_a_density_estimate_is_said_as_one_in_the_alert_text(
    harness_factory: Callable[..., Harness], http_sink: HttpSink
) -> None:
    h = harness_factory()
    engine = h.engine()
    # Read back from zone_latest (ingest wrote it), as after a restart...
    put_zone(h.conn, "stop-a", "platform", 45, T0, method="dense")
    assert h.states(engine, T0) == ["firing"]
    # ...and from a count message received live: the detector's count is said plainly.
    detected = count_message(count=4, ts=T0 + timedelta(seconds=5))
    assert [t.state for t in engine.on_counts([detected], T0 + timedelta(seconds=6))] == [
        "resolved"
    ]
    counted = count_message(count=46, ts=T0 + timedelta(seconds=10))
    zone = counted.zones[0].model_copy(update={"method": CountMethod.DENSE})
    dense = counted.model_copy(update={"zones": [zone]})
    assert [t.state for t in engine.on_counts([dense], T0 + timedelta(seconds=11))] == ["firing"]
    assert engine.flush()
    texts = [b["alerts"][0]["summary_en"] for b in bodies(http_sink, "/hook")]
    assert texts[0].startswith("Stop A platform: about 45 waiting")
    assert texts[1].startswith("Cleared: Stop A platform: 4 waiting")
    assert texts[2].startswith("Stop A platform: about 46 waiting")
    zh = bodies(http_sink, "/hook")[0]["alerts"][0]["summary_zh"]
    assert "约 45 人候车" in zh


def test_a_group_s_notifications_arrive_in_the_order_they_were_written(
    harness_factory: Callable[..., Harness], http_sink: HttpSink
) -> None:
    # The firing notice fails once and waits for its retry; the "Cleared" written after it
    # must wait too, or the chat group reads the stop cleared while it is crowded again.
    http_sink.fail["/hook"] = 1
    assert _fire_then_clear(harness_factory(), http_sink) == [False, False, True]


def test_a_notice_given_up_does_not_hold_back_the_next_of_its_group(
    harness_factory: Callable[..., Harness], http_sink: HttpSink
) -> None:
    http_sink.fail["/hook"] = 3  # every attempt the harness allows
    assert _fire_then_clear(harness_factory(), http_sink) == [False, False, False, True]


def _fire_then_clear(h: Harness, http_sink: HttpSink) -> list[bool]:
    """Fire and clear one alert; for each request the webhook got, whether it said cleared."""
    engine = h.engine()
    h.count(45, T0)
    assert h.states(engine, T0) == ["firing"]
    h.count(4, T0 + timedelta(seconds=5))
    assert h.states(engine, T0 + timedelta(seconds=6)) == ["resolved"]
    assert engine.flush()
    return [b["alerts"][0]["summary_en"].startswith("Cleared") for b in bodies(http_sink, "/hook")]


def test_one_notification_per_route_group(
    harness_factory: Callable[..., Harness], http_sink: HttpSink
) -> None:
    h = harness_factory(routes_of={"stop-a": ["K1"], "stop-b": ["K1"]})
    engine = h.engine()
    h.count(45, T0, "stop-a")
    h.count(48, T0, "stop-b")
    assert h.states(engine, T0) == ["firing", "firing"]
    assert engine.flush()

    [grouped] = bodies(http_sink, "/hook")
    assert grouped["group"] == "route:K1"
    assert [a["site_id"] for a in grouped["alerts"]] == ["stop-a", "stop-b"]
    assert "add buses on route K1" in grouped["alerts"][0]["summary_en"]
    assert len(h.mqtt) == 2, "the MQTT topic carries one message per alert"


# Restart in each state: a new engine continues from the database.  Each case runs
# ``before`` on the first engine, closes it, runs ``after`` on a second one, and checks
# the transitions of ``after`` and what the receivers got in total.


def _pending(h: Harness, first: AlertEngine) -> None:
    h.count(45, T0)
    assert h.states(first, T0) == []


def _firing(h: Harness, first: AlertEngine) -> None:
    h.count(45, T0)
    assert h.states(first, T0) == ["firing"]


def _clearing(h: Harness, first: AlertEngine) -> None:
    _firing(h, first)
    h.count(20, minutes(0.5))
    assert h.states(first, minutes(0.5)) == []


def _acknowledged(h: Harness, first: AlertEngine) -> None:
    _firing(h, first)
    alert = firing_alert(h.conn, KEY)
    assert alert is not None
    acknowledge(h.conn, alert.id, "Li Wei", "bus 3 sent", at=minutes(1))


def _escalated(h: Harness, first: AlertEngine) -> None:
    _firing(h, first)
    h.count(45, minutes(5))
    assert h.states(first, minutes(5)) == []


def _resolved(h: Harness, first: AlertEngine) -> None:
    _firing(h, first)
    h.count(10, minutes(1))
    assert h.states(first, minutes(1)) == ["resolved"]


RESTART_CASES = [
    # (name, rule, before, at, count, expected transitions, hook events, duty events)
    ("pending timer survives", {"for_s": 60}, _pending, 1, 45, ["firing"], ["firing"], []),
    ("firing is not notified again", {}, _firing, 1, 45, [], ["firing"], []),
    ("firing still resolves", {}, _firing, 1, 10, ["resolved"], ["firing", "resolved"], []),
    (
        "keep-firing clock survives",
        {"keep_firing_for_s": 60},
        _clearing,
        1.5,
        20,
        ["resolved"],
        ["firing", "resolved"],
        [],
    ),
    ("acknowledged: no escalation", {}, _acknowledged, 6, 45, [], ["firing"], []),
    ("escalated once only", {}, _escalated, 7, 45, [], ["firing"], ["escalation"]),
    (
        "resolved can fire anew",
        {},
        _resolved,
        2,
        45,
        ["firing"],
        ["firing", "resolved", "firing"],
        [],
    ),
]


@pytest.mark.parametrize(
    ("rule", "before", "at", "count", "expected", "hook", "duty"),
    [pytest.param(*case[1:], id=case[0]) for case in RESTART_CASES],
)
def test_restart_in_each_state(
    harness_factory: Callable[..., Harness],
    http_sink: HttpSink,
    rule: dict[str, Any],
    before: Callable[[Harness, AlertEngine], None],
    at: float,
    count: int,
    expected: list[str],
    hook: list[str],
    duty: list[str],
) -> None:
    h = harness_factory(rule=rule)
    first = h.engine("first")
    before(h, first)
    assert first.flush()
    first.close()

    second = h.engine("second")
    h.count(count, minutes(at))
    transitions = second.tick(minutes(at))
    assert second.flush()

    assert [t.state for t in transitions] == expected
    if expected == ["firing"] and rule.get("for_s"):
        assert transitions[0].pending_since == T0, "the pending timer started before the restart"
    assert [b["event"] for b in bodies(http_sink, "/hook")] == hook
    assert [b["event"] for b in bodies(http_sink, "/duty")] == duty


def leave_queued_by_a_dead_engine(h: Harness, http_sink: HttpSink) -> None:
    """A firing notification the first engine could not deliver before it stopped."""
    http_sink.fail["/hook"] = 1_000_000
    first = h.engine("first")
    h.count(45, T0)
    first.tick(T0)
    http_sink.wait_for("/hook", 1)
    first.close()  # stops while the hook is failing: the row stays queued


def test_a_notification_queued_by_a_dead_engine_is_sent_by_the_next(
    harness_factory: Callable[..., Harness], http_sink: HttpSink
) -> None:
    h = harness_factory()
    leave_queued_by_a_dead_engine(h, http_sink)
    assert ("hook", "firing", "queued") in [n[:3] for n in h.notifications()]

    http_sink.fail["/hook"] = 0
    second = h.engine("second")
    assert second.tick(minutes(1)) == []
    assert second.flush()

    assert bodies(http_sink, "/hook")[-1]["event"] == "firing"
    assert ("hook", "firing", "sent") in [n[:3] for n in h.notifications()]


def test_a_stored_notification_that_is_not_the_contract_fails_alone(
    harness_factory: Callable[..., Harness], http_sink: HttpSink
) -> None:
    h = harness_factory()
    leave_queued_by_a_dead_engine(h, http_sink)
    # A row written by hand (or by a release whose payload the contract no longer reads).
    h.conn.execute(
        "INSERT INTO notifications (event, channel_id, channel_type, payload) "
        "VALUES ('firing', 'hook', 'webhook', %s)",
        ('{"schema": "crowdwatch.notification/1", "event": "firing"}',),
    )

    http_sink.fail["/hook"] = 0
    second = h.engine("second")
    second.tick(minutes(1))
    assert second.flush()

    rows = h.conn.execute(
        "SELECT state, last_error FROM notifications WHERE channel_id = 'hook' ORDER BY id"
    ).fetchall()
    assert [r[0] for r in rows] == ["sent", "failed"]
    assert rows[1][1].startswith("stored payload is not the notification contract: ")
    assert [b["event"] for b in bodies(http_sink, "/hook")][-1] == "firing"


def test_duplicate_and_out_of_order_count_messages(harness_factory: Callable[..., Harness]) -> None:
    h = harness_factory()
    engine = h.engine()
    engine.tick(T0)  # takes the lease
    crowded = count_message(count=45, ts=T0 + timedelta(seconds=10))
    late = count_message(count=5, ts=T0 + timedelta(seconds=5))
    calm = count_message(count=5, ts=T0 + timedelta(seconds=15))
    now = T0 + timedelta(seconds=16)

    assert [t.state for t in engine.on_counts([crowded], now)] == ["firing"]
    assert engine.on_counts([crowded], now) == [], "a redelivered message changes nothing"
    assert engine.on_counts([late], now) == [], "an older message does not clear the alert"
    assert [t.state for t in engine.on_counts([calm], now)] == ["resolved"]
    # A spike and the calm count after it, received in one batch (in any order): both count.
    spike = count_message(count=48, ts=T0 + timedelta(seconds=20))
    after = count_message(count=3, ts=T0 + timedelta(seconds=25))
    assert [t.state for t in engine.on_counts([after, spike], now)] == ["firing", "resolved"]
    assert engine.flush()
    assert [decode_alert(p).state for _, p in h.mqtt] == ["firing", "resolved"] * 2


def test_a_site_s_alert_messages_keep_their_order_on_its_mqtt_topic(
    harness_factory: Callable[..., Harness],
) -> None:
    # The first publication fails once and waits a second for its retry; the "resolved" of
    # that alert and the next alert of the same site, written meanwhile, must not overtake it.
    h = harness_factory(delivery={"attempts": 3, "backoff_s": 1.0, "max_backoff_s": 1.0})
    failed: list[bool] = []

    def publish(topic: str, payload: bytes) -> None:
        if not failed:
            failed.append(True)
            raise BrokerError("not acknowledged (test)")
        h.mqtt.append((topic, payload))

    engine = AlertEngine(h.config, h.db_url, publish, holder="a")
    h.engines.append(engine)
    for k, (crowd, calm) in enumerate(((45, 4), (47, 3))):
        at = T0 + timedelta(minutes=k)
        h.count(crowd, at)
        assert h.states(engine, at) == ["firing"]
        h.count(calm, at + timedelta(seconds=5))
        assert h.states(engine, at + timedelta(seconds=6)) == ["resolved"]
    assert engine.flush()
    assert failed == [True]
    sent = [decode_alert(p) for _, p in h.mqtt]
    assert [(m.state, m.ts - T0) for m in sent] == [
        ("firing", timedelta(0)),
        ("resolved", timedelta(seconds=6)),
        ("firing", timedelta(minutes=1)),
        ("resolved", timedelta(minutes=1, seconds=6)),
    ]


def test_a_count_written_only_to_the_database_is_caught_up_by_the_tick(
    harness_factory: Callable[..., Harness], db_url: str
) -> None:
    h = harness_factory()
    engine = h.engine()
    h.count(10, T0)
    assert h.states(engine, T0) == []
    at = T0 + timedelta(seconds=5)
    assert engine.on_counts([count_message(count=12, ts=at)], at) == []
    # Ingest stored a crowded count that never reached the engine over MQTT (its inbox was
    # full, the broker dropped it): the next tick finds it among the rows changed since.
    h.count(45, T0 + timedelta(seconds=10))
    assert h.states(engine, T0 + timedelta(seconds=11)) == ["firing"]
    assert engine.last_tick is not None and not engine.last_tick.full_read
    # A batch that was still being written when a tick read, and committed after it: the
    # tick's mark is the oldest transaction running then, so the next read still finds it.
    with psycopg.connect(db_url) as late:
        put_zone(late, "stop-b", "platform", 45, T0 + timedelta(seconds=12))
        assert h.states(engine, T0 + timedelta(seconds=13)) == []
        late.commit()
    assert h.states(engine, T0 + timedelta(seconds=14)) == ["firing"]


def test_a_tick_reads_and_evaluates_only_what_changed_or_is_due(
    harness_factory: Callable[..., Harness],
) -> None:
    h = harness_factory(more_sites=40)  # 42 cameras of one zone each
    engine = h.engine()
    sites = [s.id for s in h.config.sites]
    for site in sites:
        h.count(10, T0, site)
    put_status(h.conn, "stop-a", "cam1", "online", T0)
    engine.tick(T0)
    assert engine.last_tick == TickStats(
        full_read=True, zone_rows=42, camera_rows=1, zones_evaluated=42
    )

    engine.tick(T0 + timedelta(seconds=5))
    assert engine.last_tick == TickStats(False, 0, 0, 0), "nothing changed, nothing is due"

    # One zone changed behind the live path: its stamp and its whole row, and that zone.
    h.count(45, T0 + timedelta(seconds=8), "stop-07")
    assert h.states(engine, T0 + timedelta(seconds=10)) == ["firing"]
    assert engine.last_tick == TickStats(False, 2, 0, 1)
    # Its notification is written by a delivery thread. A read while that transaction is
    # open keeps an older mark and reads again, at the next tick, rows it has seen (by
    # design: the mark is the oldest transaction then running); the counts below are of a
    # database where nothing else is writing.
    assert engine.flush()

    # Counts the live path brought already: their stamps only, and no evaluation of them;
    # the firing zone is evaluated at every tick (its alert may clear).
    at = T0 + timedelta(seconds=12)
    engine.on_counts([count_message(site, count=11, ts=at) for site in sites[-20:]], at)
    for site in sites[-20:]:
        h.count(11, at, site)
    put_status(h.conn, "stop-b", "cam1", "online", at)  # not offline: changes no reading
    engine.tick(T0 + timedelta(seconds=15))
    assert engine.last_tick == TickStats(False, 20, 0, 1)

    # An offline report: that camera's zones (and the firing one).
    put_status(h.conn, "stop-00", "cam1", "offline", T0 + timedelta(seconds=16))
    engine.tick(T0 + timedelta(seconds=20))
    assert engine.last_tick == TickStats(False, 0, 1, 2)

    # Past stale_after_s without counts every camera is evaluated (its no-data seconds run).
    assert h.states(engine, T0 + timedelta(minutes=3)) == ["firing"] * 42
    assert engine.last_tick == TickStats(False, 0, 0, 42)


def test_offline_camera_fires_its_own_alert_and_inhibits_crowd_escalation(
    harness_factory: Callable[..., Harness], http_sink: HttpSink
) -> None:
    h = harness_factory()
    engine = h.engine()
    h.count(45, T0)
    assert h.states(engine, T0) == ["firing"]
    put_status(h.conn, "stop-a", "cam1", "offline", minutes(1))

    assert h.states(engine, minutes(1)) == ["firing"]  # no data for 60 s: camera-down
    assert h.states(engine, minutes(5.5)) == []  # the crowd alert's escalation is inhibited
    assert engine.flush()

    events = [(b["event"], b["alerts"][0]["alert_key"]) for b in bodies(http_sink, "/hook")]
    assert events == [("firing", KEY), ("firing", "stop-a/cam:cam1/camera-down")]
    assert bodies(http_sink, "/duty") == []
    assert {a.alert_key for a in active_alerts(h.conn)} == {KEY, "stop-a/cam:cam1/camera-down"}
    assert "no data for 1 min (offline)" in bodies(http_sink, "/hook")[1]["alerts"][0]["summary_en"]


@pytest.mark.parametrize("hold", ["silence", "mute-window"])
def test_held_back_alerts_are_recorded_and_notified_when_the_hold_ends(
    harness_factory: Callable[..., Harness], http_sink: HttpSink, hold: str
) -> None:
    # 10:00-10:30 local (02:00-02:30 UTC) is a mute window for the rule.
    h = harness_factory(
        rule={"mute_windows": ["morning"]} if hold == "mute-window" else {},
        mute_windows=[{"id": "morning", "start": "10:00", "end": "10:30"}],
    )
    engine = h.engine()
    if hold == "silence":
        silence = add_silence(h.conn, "Chen", minutes(60), site_id="stop-a", starts_at=T0)
    h.count(45, T0)
    assert h.states(engine, T0) == ["firing"]
    assert engine.flush()
    assert bodies(http_sink, "/hook") == []
    assert len(h.mqtt) == 1, "the MQTT feed still carries the state change"

    if hold == "silence":
        expire_silence(h.conn, silence.id, minutes(10))
        later = minutes(11)
    else:
        later = minutes(31)
    h.count(45, later)
    assert h.states(engine, later) == []
    assert engine.flush()

    assert [b["event"] for b in bodies(http_sink, "/hook")] == ["firing"]
    alert = firing_alert(h.conn, KEY)
    assert alert is not None
    kinds = [e.kind for e in alert_history(h.conn, alert.id)]
    assert kinds == ["fired", "suppressed", "notified"]


def test_escalation_then_acknowledgement_then_escalation_by_hand(
    harness_factory: Callable[..., Harness], http_sink: HttpSink
) -> None:
    h = harness_factory()
    engine = h.engine()
    for at in (0, 4.9, 5):
        h.count(45, minutes(at))
        engine.tick(minutes(at))
    assert engine.flush()
    [level1] = bodies(http_sink, "/duty")
    assert (level1["event"], level1["level"]) == ("escalation", 1)

    alert = firing_alert(h.conn, KEY)
    assert alert is not None and alert.escalation_level == 1
    acknowledge(h.conn, alert.id, "Li Wei", "bus 3 sent", at=minutes(6))
    h.count(45, minutes(20))
    engine.tick(minutes(20))
    assert engine.flush()
    assert len(bodies(http_sink, "/duty")) == 1, "acknowledged: no more timed escalation"

    escalate(h.conn, alert.id, "Li Wei", "need the duty officer", at=minutes(21))
    engine.tick(minutes(21))
    assert engine.flush()
    assert [b["level"] for b in bodies(http_sink, "/duty")] == [1, 2]
    history = [(e.kind, e.who) for e in alert_history(h.conn, alert.id)]
    assert history == [
        ("fired", "engine"),
        ("escalated", "engine"),
        ("acknowledged", "Li Wei"),
        ("escalated", "Li Wei"),
    ]


def test_failing_and_hanging_channels_are_retried_recorded_and_block_nothing(
    harness_factory: Callable[..., Harness], http_sink: HttpSink
) -> None:
    url = http_sink.url
    h = harness_factory(
        channels=[
            {"id": "flaky", "type": "webhook", "url": f"{url}/flaky", "timeout_s": 2},
            {"id": "hung", "type": "webhook", "url": f"{url}/hung", "timeout_s": 0.3},
            {"id": "fine", "type": "webhook", "url": f"{url}/fine", "timeout_s": 2},
        ],
        routes=[{"notify": ["hung", "flaky", "fine"]}],
    )
    http_sink.fail["/flaky"] = 2
    http_sink.hang.add("/hung")
    engine = h.engine()
    h.count(45, T0)

    assert h.states(engine, T0) == ["firing"]  # returns while the hung channel hangs
    # The fine channel is served although the hung one has not answered (it never does).
    assert len(http_sink.wait_for("/fine", 1)) == 1
    assert len(http_sink.wait_for("/hung", 1)) >= 1
    h.count(10, minutes(1))
    assert h.states(engine, minutes(1)) == ["resolved"], "evaluation goes on meanwhile"
    assert engine.flush(timeout=20)
    http_sink.release()

    rows = {(n[0], n[1]): n[2:] for n in h.notifications()}
    # Two answers of 500 (shared by the firing and resolved messages), then success.
    assert (rows[("flaky", "firing")][0], rows[("flaky", "resolved")][0]) == ("sent", "sent")
    assert rows[("flaky", "firing")][1] + rows[("flaky", "resolved")][1] == 4
    assert rows[("fine", "firing")] == ("sent", 1)
    assert rows[("hung", "firing")] == ("failed", 3)
    [(error,)] = h.conn.execute(
        "SELECT last_error FROM notifications WHERE channel_id = 'hung' AND event = 'firing'"
    ).fetchall()
    assert "timed out" in error
    [(alert_id,)] = h.conn.execute("SELECT id FROM alerts").fetchall()
    assert "delivery_failed" in [e.kind for e in alert_history(h.conn, alert_id)]


def test_active_and_standby_engines_never_notify_twice(
    harness_factory: Callable[..., Harness], http_sink: HttpSink
) -> None:
    h = harness_factory()
    active, standby = h.engine("active"), h.engine("standby")
    h.count(45, T0)

    assert h.states(active, T0) == ["firing"]
    assert h.states(standby, T0) == [] and not standby.is_active
    active.close()  # a clean stop lets the lease go at once
    h.count(45, minutes(1))
    assert h.states(standby, minutes(1)) == [] and standby.is_active
    h.count(10, minutes(2))
    assert h.states(standby, minutes(2)) == ["resolved"]
    assert standby.flush()

    assert [b["event"] for b in bodies(http_sink, "/hook")] == ["firing", "resolved"]


def test_count_published_over_mqtt_reaches_the_webhook_and_the_alerts_topic(
    db_url: str, mqtt_config: MqttConfig, http_sink: HttpSink
) -> None:
    config = engine_config(db_url, mqtt_config, http_sink.url)
    upgrade(db_url, config)
    received: list[AlertMessage] = []
    arrived = threading.Event()

    def on_alert(topic: str, payload: bytes) -> None:
        received.append(decode_alert(payload))
        arrived.set()

    listener = MqttClient(mqtt_config, client_id=f"test-alerts-{uuid.uuid4().hex[:8]}")
    listener.subscribe(alert_topic(mqtt_config.topic_prefix, "+"), on_alert)
    listener.connect()
    stop = threading.Event()
    worker = threading.Thread(target=run_alerts, args=(config, stop), name="alerts")
    worker.start()
    try:
        # Published until the engine, once active, picks one up (it subscribes at start).
        for _ in range(50):
            message = count_message(count=45)
            topic = camera_topic(mqtt_config.topic_prefix, "stop-a", "cam1", TopicKind.COUNTS)
            listener.publish(topic, encode(message))
            if arrived.wait(0.2):
                break
        [got] = http_sink.wait_for("/hook", 1)
    finally:
        stop.set()
        worker.join(timeout=20)
        listener.close()
    assert not worker.is_alive()
    assert [m.alert_key for m in received] == [KEY]
    assert got.body["alerts"][0]["alert_key"] == KEY


# K1 (30 seats) every 20 min from 09:00; the depot is 10 min away.  At 10:00, 45 waiting and
# no known arrival rate: the next bus (10:20) leaves 15 behind, after the 15 min target, so
# 2 extra buses (ceil(45/30)) at 10:10 clear the stop at 10 min; at the target the timetable
# alone would still leave all 45 waiting: 45 stranded avoided.
K1_TRANSIT = {
    "routes": [
        {
            "id": "K1",
            "bus_capacity": 30,
            "stops": ["stop-a"],
            "headways": [{"start": "09:00", "end": "12:00", "every_min": 20}],
            "extra_bus_lead_min": 10,
        }
    ],
    "target_min": 15,
    "horizon_min": 30,
}
K1_LINE_EN = (
    "Dispatch now: 2 extra K1 buses (at the stop by 10:10); clears in 10 min "
    "(not within 30 min without them), ~45 fewer stranded"
)


def test_a_bus_stop_alert_carries_the_dispatch_advice_to_every_channel(
    harness_factory: Callable[..., Harness], http_sink: HttpSink
) -> None:
    wecom = f"{http_sink.url}/cgi-bin/webhook/send?key=k"
    h = harness_factory(
        transit=K1_TRANSIT,
        channels=[
            {"id": "hook", "type": "webhook", "url": f"{http_sink.url}/hook", "timeout_s": 2},
            {"id": "wx", "type": "wecom", "url": wecom, "timeout_s": 2},
        ],
        routes=[{"departments": ["transport"], "notify": ["hook", "wx"]}],
    )
    engine = h.engine()
    h.count(45, T0)
    assert h.states(engine, T0) == ["firing"]
    assert engine.flush()
    [firing] = bodies(http_sink, "/hook")
    dispatch = firing["alerts"][0]["dispatch"]
    assert dispatch["routes"] == [
        {
            "route": "K1",
            "kind": "extra",
            "buses": 2,
            "arrive_by": "2026-10-01T02:10:00Z",
            "clear_min_without": None,
            "clear_min_with": 10.0,
            "stranded_avoided": 45,
        }
    ]
    assert (dispatch["waiting"], dispatch["arrival_rate_per_min"]) == (45, None)
    assert dispatch["text_en"] == K1_LINE_EN
    [robot] = bodies(http_sink, "/cgi-bin/webhook/send")
    lines = robot["text"]["content"].split("\n")
    assert lines[-1] == f"{dispatch['text_zh']} / {K1_LINE_EN}"

    def stored() -> list[Any]:
        return [r[0] for r in h.conn.execute("SELECT advice FROM dispatch_advice").fetchall()]

    assert [a["text_en"] for a in stored()] == [K1_LINE_EN]
    # The camera goes quiet (its no-data alert fires): the count turns stale and the page's
    # advice is withdrawn, buses are not sent on a guess.
    assert [t.key for t in engine.tick(minutes(5))] == ["stop-a/cam:cam1/camera-down"]
    assert stored() == []
    # Counts again, more people: the advice follows the count.  Rise since the 10:00 bus:
    # 13 in 6 min; at 10:16 58 + 10·13/6 = 79.7 wait for 30-seat buses: 3 of them.
    h.count(58, minutes(6))
    h.states(engine, minutes(6))
    [advice] = stored()
    assert (advice["waiting"], advice["arrival_rate_per_min"]) == (58, pytest.approx(13 / 6))
    assert advice["routes"][0]["buses"] == 3


def test_a_stop_without_transit_routes_gets_no_advice(
    harness_factory: Callable[..., Harness], http_sink: HttpSink
) -> None:
    h = harness_factory()
    engine = h.engine()
    h.count(45, T0)
    assert h.states(engine, T0) == ["firing"]
    assert engine.flush()
    [firing] = bodies(http_sink, "/hook")
    assert firing["alerts"][0]["dispatch"] is None
    assert h.conn.execute("SELECT count(*) FROM dispatch_advice").fetchone() == (0,)
