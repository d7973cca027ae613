"""The GTFS-realtime feed, served for real and parsed back with the official bindings.

A crowded stop with a confirmed dispatch of 2 K1 buses, and one without: the feed carries a
Service Alert for each (ADDITIONAL_SERVICE once buses were sent) and the two added trips, in
the NEW form at ``/api/gtfs-rt`` and the older ADDED form at ``/api/gtfs-rt/added``; checked
against the spec's rules for what each message must hold.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from db_rows import alert_message, insert_firing
from factories import make_config
from web_server import Serve, web_config

from crowdwatch.analytics.dispatch_actions import Decision, decide, store_advice
from crowdwatch.contracts.config import CrowdwatchConfig
from crowdwatch.contracts.notification import DispatchAdvice
from crowdwatch.dashboards.gtfs_realtime import INSTALL, KEPT_AFTER_ARRIVAL, TripForm, feed_message
from crowdwatch.storage.migrate import upgrade

pb = pytest.importorskip("google.transit.gtfs_realtime_pb2")

LEAD = timedelta(minutes=12)


def transit_config(db_url: str) -> CrowdwatchConfig:
    raw: dict[str, Any] = web_config(db_url).model_dump(
        mode="json", by_alias=True, exclude_none=True
    )
    raw["transit"] = {
        "routes": [
            {
                "id": "K1",
                "bus_capacity": 80,
                "stops": ["stop-a", "stop-b"],
                "headways": [{"start": "00:00", "end": "24:00", "every_min": 10}],
                "extra_bus_lead_min": 20,
            }
        ],
        # stop-a is stop XW of the operator's GTFS; stop-b is not in it (its site id is used).
        "gtfs": {"path": "feeds/unused.zip", "stops": {"XW": "stop-a"}},
    }
    return make_config(raw)


def advice(now: datetime) -> DispatchAdvice:
    return DispatchAdvice.model_validate(
        {
            "as_of": now,
            "waiting": 120,
            "arrival_rate_per_min": 4.0,
            "target_min": 15,
            "routes": [
                {
                    "route": "K1",
                    "kind": "extra",
                    "buses": 2,
                    "arrive_by": now + LEAD,
                    "clear_min_without": None,
                    "clear_min_with": 12,
                    "stranded_avoided": 90,
                }
            ],
            "text_zh": "调度建议: 立即加派 K1 路 2 辆",
            "text_en": "Dispatch now: 2 extra K1 buses",
        }
    )


def parsed(body: bytes) -> Any:
    feed = pb.FeedMessage()
    feed.ParseFromString(body)
    return feed


def check_spec_rules(feed: Any, now: datetime) -> None:
    """What the GTFS-realtime reference requires of a feed like ours."""
    assert feed.header.gtfs_realtime_version == "2.0"
    assert feed.header.incrementality == pb.FeedHeader.FULL_DATASET
    assert 0 < feed.header.timestamp <= int(now.timestamp()) + 5
    ids = [e.id for e in feed.entity]
    assert len(ids) == len(set(ids)), "entity ids are unique"
    trip_ids = [e.trip_update.trip.trip_id for e in feed.entity if e.HasField("trip_update")]
    assert len(trip_ids) == len(set(trip_ids)), "a trip appears in one TripUpdate"
    for entity in feed.entity:
        kinds = [k for k in ("trip_update", "vehicle", "alert") if entity.HasField(k)]
        assert len(kinds) == 1, entity.id
        if entity.HasField("alert"):
            alert = entity.alert
            assert alert.informed_entity, "an alert informs at least one entity"
            for informed in alert.informed_entity:
                assert informed.route_id or informed.stop_id
            languages = {t.language for t in alert.header_text.translation}
            assert languages == {"zh", "en"} and all(t.text for t in alert.header_text.translation)
        else:
            update = entity.trip_update
            assert update.trip.trip_id and update.trip.route_id
            assert len(update.trip.start_date) == 8 and update.trip.start_time.count(":") == 2
            assert update.stop_time_update, "a trip update has at least one stop time update"
            for call in update.stop_time_update:
                assert call.stop_id and call.arrival.time > 0


@pytest.fixture
def served(db_url: str, serve: Serve) -> Any:
    config = transit_config(db_url)
    upgrade(db_url, config)
    now = datetime.now(UTC)
    with psycopg.connect(db_url, autocommit=True) as conn:
        sent = insert_firing(conn, alert_message("stop-a/platform/crowded", ts=now))
        waiting = insert_firing(conn, alert_message("stop-b/platform/crowded", ts=now))
        assert sent is not None and waiting is not None
        store_advice(conn, [(sent.id, advice(now))], now)
        decision = decide(
            conn, sent.id, "li", Decision.DISPATCHED, routes=["K1"], route="K1", buses=2, at=now
        )
    return serve(config), sent.id, waiting.id, decision


def test_the_feed_carries_the_crowded_stops_and_the_confirmed_trips(served: Any) -> None:
    http, sent_id, waiting_id, decision = served
    response = http.get("/api/gtfs-rt")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-protobuf"
    feed = parsed(response.content)
    check_spec_rules(feed, datetime.now(UTC))
    alerts = {e.id: e.alert for e in feed.entity if e.HasField("alert")}
    assert set(alerts) == {f"alert-{sent_id}", f"alert-{waiting_id}"}
    helped, crowded = alerts[f"alert-{sent_id}"], alerts[f"alert-{waiting_id}"]
    assert helped.effect == pb.Alert.ADDITIONAL_SERVICE
    assert crowded.effect == pb.Alert.OTHER_EFFECT
    assert [(i.route_id, i.stop_id) for i in helped.informed_entity] == [("K1", "XW")]
    assert [(i.route_id, i.stop_id) for i in crowded.informed_entity] == [("K1", "stop-b")]
    assert {t.language: t.text for t in helped.description_text.translation} == {
        "zh": "调度建议: 立即加派 K1 路 2 辆",
        "en": "Dispatch now: 2 extra K1 buses",
    }
    trips = [e.trip_update for e in feed.entity if e.HasField("trip_update")]
    assert [t.trip.trip_id for t in trips] == [f"cw-{decision.id}-1", f"cw-{decision.id}-2"]
    for trip in trips:
        assert trip.trip.schedule_relationship == pb.TripDescriptor.NEW
        assert trip.trip.route_id == "K1"
        assert trip.trip_properties.trip_id == trip.trip.trip_id
        [call] = trip.stop_time_update
        # Sent at the decision, there after the advice's lead (12 min, not the config's 20).
        assert (call.stop_id, call.arrival.time) == ("XW", int((decision.at + LEAD).timestamp()))

    legacy = parsed(http.get("/api/gtfs-rt/added").content)
    check_spec_rules(legacy, datetime.now(UTC))
    old = [e.trip_update for e in legacy.entity if e.HasField("trip_update")]
    assert [t.trip.trip_id for t in old] == [t.trip.trip_id for t in trips]
    assert {t.trip.schedule_relationship for t in old} == {pb.TripDescriptor.ADDED}
    assert not any(t.HasField("trip_properties") for t in old)


def test_an_added_trip_leaves_the_feed_after_it_arrived(served: Any) -> None:
    decision = served[3]
    config = transit_config("postgresql://unused")
    arrival = decision.at + LEAD
    for now, kept in [(arrival + KEPT_AFTER_ARRIVAL, 2), (arrival + KEPT_AFTER_ARRIVAL * 1.1, 0)]:
        feed = parsed(feed_message(config, [], [("stop-a", decision)], now, TripForm.NEW))
        assert len(feed.entity) == kept


def test_without_the_bindings_the_feed_says_what_to_install(
    served: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    http = served[0]
    monkeypatch.setitem(sys.modules, "google.transit", None)
    monkeypatch.setitem(sys.modules, "google.transit.gtfs_realtime_pb2", None)
    response = http.get("/api/gtfs-rt")
    assert (response.status_code, response.json()) == (501, {"error": INSTALL})
    assert INSTALL == (
        "the GTFS-realtime feed needs the gtfs-realtime-bindings package: "
        "pip install 'crowdwatch[gtfs-rt]'"
    )
