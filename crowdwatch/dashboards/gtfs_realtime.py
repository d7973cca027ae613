"""The GTFS-realtime feed other systems read: crowded stops and the extra buses sent to them.

Endpoints (protocol buffers, ``application/x-protobuf``, a full dataset each time)::

    GET /api/gtfs-rt        Service Alerts + trip updates of the added trips, ``NEW`` form
    GET /api/gtfs-rt/added  the same, the added trips in the older ``ADDED`` form

- **Service Alerts**: one per firing crowd alert at a stop that ``transit`` routes serve,
  informing the stop (its GTFS ``stop_id`` from ``transit.gtfs.stops``, else the site id) on
  each route; effect ``ADDITIONAL_SERVICE`` once a dispatcher confirmed extra buses, else
  ``OTHER_EFFECT``; header and description in Chinese and English (the advice's line).
- **Trip updates**: each bus a dispatcher confirmed ("dispatched N buses on R") is an added
  trip ``cw-<decision>-<n>`` on route R reaching the stop when the advice said (sent time plus
  the advice's lead; the route's ``extra_bus_lead_min`` without advice), kept until
  :data:`KEPT_AFTER_ARRIVAL` after that.  The spec replaces ``ADDED`` by ``NEW`` (an extra trip
  unrelated to the timetable; ``DUPLICATED`` needs a static trip to copy, which headway routes
  do not have); during the transition both forms are served, one per endpoint, so that no
  consumer sees the same bus twice.

The official bindings (``gtfs-realtime-bindings``) are an optional dependency
(``crowdwatch[gtfs-rt]``); without them the endpoints answer 501 with the line to install them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from crowdwatch.analytics.dispatch_actions import (
    Decision,
    DispatchDecision,
    dispatch_records,
    dispatched_since,
)
from crowdwatch.contracts.config import CrowdwatchConfig
from crowdwatch.contracts.notification import DispatchAdvice
from crowdwatch.dashboards.api_schema import GTFS_RT_DOCS
from crowdwatch.storage.queries import AlertRow, active_alerts

MEDIA_TYPE = "application/x-protobuf"
KEPT_AFTER_ARRIVAL = timedelta(minutes=10)
"""An added trip stays in the feed this long after its arrival at the stop."""
LOOKBACK = timedelta(hours=6)
"""Decisions older than this are not read (their buses arrived long ago)."""
INSTALL = (
    "the GTFS-realtime feed needs the gtfs-realtime-bindings package: "
    "pip install 'crowdwatch[gtfs-rt]'"
)

OpenDatabase = Callable[[], AbstractContextManager[psycopg.Connection]]


class TripForm(StrEnum):
    NEW = "new"
    """``schedule_relationship: NEW`` (current spec)"""
    ADDED = "added"
    """``schedule_relationship: ADDED`` (deprecated, still what most consumers read)"""


class BindingsMissingError(Exception):
    """``gtfs-realtime-bindings`` is not installed."""


def bindings() -> ModuleType:
    """The official ``gtfs_realtime_pb2`` module.

    Raises:
        BindingsMissingError: the package is not installed (the message says how to install it).
    """
    try:
        from google.transit import gtfs_realtime_pb2
    except ImportError as exc:
        raise BindingsMissingError(INSTALL) from exc
    return gtfs_realtime_pb2


@dataclass(frozen=True, slots=True)
class CrowdedStop:
    """A firing crowd alert at a served stop, its newest advice, whether buses were sent."""

    alert: AlertRow
    advice: DispatchAdvice | None
    buses_sent: bool


def _stop_ids(config: CrowdwatchConfig) -> dict[str, str]:
    """site id -> GTFS stop_id (the first one mapped to it; the site id where none is)."""
    transit = config.transit
    out: dict[str, str] = {}
    if transit is not None and transit.gtfs is not None:
        for stop_id, site in transit.gtfs.stops.items():
            out.setdefault(site, stop_id)
    return out


def _translated(field: Any, zh: str, en: str) -> None:
    for language, text in (("zh", zh), ("en", en)):
        translation = field.translation.add()
        translation.text = text
        translation.language = language


def _arrival(config: CrowdwatchConfig, decision: DispatchDecision) -> datetime:
    """When the buses of a decision reach the stop: the advice's lead from the sending time."""
    advice = decision.recommended
    if advice is not None:
        for route in advice.routes:
            if route.route == decision.route:
                return decision.at + (route.arrive_by - advice.as_of)
    transit = config.transit
    lead = next(
        (
            r.extra_bus_lead_min
            for r in (transit.routes if transit else [])
            if r.id == decision.route
        ),
        0.0,
    )
    return decision.at + timedelta(minutes=lead)


def feed_message(
    config: CrowdwatchConfig,
    stops: Sequence[CrowdedStop],
    sent: Sequence[tuple[str, DispatchDecision]],
    now: datetime,
    form: TripForm,
) -> bytes:
    """The serialized ``FeedMessage`` (pure: rows in, bytes out).

    Args:
        config: the site config (``transit`` routes and GTFS stop ids, the time zone).
        stops: the firing crowd alerts at served stops.
        sent: confirmed dispatches with their stop's site id.
        now: the feed's timestamp; trips that arrived over :data:`KEPT_AFTER_ARRIVAL` ago
            are left out.
        form: ``NEW`` or ``ADDED`` for the added trips.

    Raises:
        BindingsMissingError: ``gtfs-realtime-bindings`` is not installed.
    """
    pb = bindings()
    tz = ZoneInfo(config.district.timezone)
    stop_ids = _stop_ids(config)
    feed = pb.FeedMessage()
    feed.header.gtfs_realtime_version = "2.0"
    feed.header.incrementality = pb.FeedHeader.FULL_DATASET
    feed.header.timestamp = int(now.timestamp())
    transit = config.transit
    for stop in stops:
        alert = stop.alert
        routes = [r.id for r in transit.routes_at(alert.site_id)] if transit else []
        entity = feed.entity.add()
        entity.id = f"alert-{alert.id}"
        message = entity.alert
        period = message.active_period.add()
        period.start = int(alert.started_at.timestamp())
        for route in routes:
            informed = message.informed_entity.add()
            informed.route_id = route
            informed.stop_id = stop_ids.get(alert.site_id, alert.site_id)
        message.cause = pb.Alert.OTHER_CAUSE
        message.effect = pb.Alert.ADDITIONAL_SERVICE if stop.buses_sent else pb.Alert.OTHER_EFFECT
        _translated(message.header_text, alert.summary_zh, alert.summary_en)
        if stop.advice is not None:
            _translated(message.description_text, stop.advice.text_zh, stop.advice.text_en)
    relationship = pb.TripDescriptor.NEW if form is TripForm.NEW else pb.TripDescriptor.ADDED
    for site_id, decision in sent:
        arrival = _arrival(config, decision)
        if arrival + KEPT_AFTER_ARRIVAL < now or decision.route is None:
            continue
        local = decision.at.astimezone(tz)
        for n in range(1, (decision.buses or 0) + 1):
            trip_id = f"cw-{decision.id}-{n}"
            entity = feed.entity.add()
            entity.id = f"trip-{decision.id}-{n}"
            update = entity.trip_update
            update.trip.trip_id = trip_id
            update.trip.route_id = decision.route
            update.trip.start_date = local.strftime("%Y%m%d")
            update.trip.start_time = local.strftime("%H:%M:%S")
            update.trip.schedule_relationship = relationship
            update.timestamp = int(decision.at.timestamp())
            if form is TripForm.NEW:
                update.trip_properties.trip_id = trip_id
                update.trip_properties.start_date = update.trip.start_date
                update.trip_properties.start_time = update.trip.start_time
            call = update.stop_time_update.add()
            call.stop_id = stop_ids.get(site_id, site_id)
            call.arrival.time = int(arrival.timestamp())
            call.schedule_relationship = pb.TripUpdate.StopTimeUpdate.SCHEDULED
    return bytes(feed.SerializeToString())


def _read(
    config: CrowdwatchConfig, database: OpenDatabase, now: datetime
) -> tuple[list[CrowdedStop], list[tuple[str, DispatchDecision]]]:
    transit = config.transit
    served = {s for r in transit.routes for s in r.stops} if transit else set()
    with database() as conn:
        alerts = [a for a in active_alerts(conn) if a.site_id in served]
        records = dispatch_records(conn, [a.id for a in alerts])
        sent = dispatched_since(conn, now - LOOKBACK)
    stops = []
    for alert in alerts:
        record = records.get(alert.id)
        decided = record.decisions if record is not None else ()
        stops.append(
            CrowdedStop(
                alert,
                record.advice if record is not None else None,
                any(d.action is Decision.DISPATCHED for d in decided),
            )
        )
    return stops, sent


def gtfs_realtime_router(config: CrowdwatchConfig, database: OpenDatabase) -> APIRouter:
    """The two feed endpoints (see the module doc)."""
    router = APIRouter()

    async def serve(form: TripForm) -> Response:
        try:
            bindings()
        except BindingsMissingError as exc:
            return JSONResponse({"error": str(exc)}, status_code=501)
        now = datetime.now(UTC)
        stops, sent = await asyncio.to_thread(_read, config, database, now)
        body = feed_message(config, stops, sent, now, form)
        return Response(body, media_type=MEDIA_TYPE, headers={"Cache-Control": "no-store"})

    @router.get("/api/gtfs-rt", **GTFS_RT_DOCS)
    async def feed_new() -> Response:
        return await serve(TripForm.NEW)

    @router.get("/api/gtfs-rt/added", **GTFS_RT_DOCS)
    async def feed_added() -> Response:
        return await serve(TripForm.ADDED)

    return router
