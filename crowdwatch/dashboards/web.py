"""The web server: a JSON API of live site counts and a phone page for field staff.

Endpoints::

    GET /                      the phone page (static HTML that polls /api/sites)
    GET /api/sites             every configured site with its zones, count and status
    GET /api/sites/{site_id}   one site (404 naming the id when unknown)
    GET /api/alerts            firing alerts, newest first
    GET /healthz               200 when the database answers, 503 otherwise

Every request opens its own short-lived connection: the page polls every few seconds, a
connection costs a few milliseconds on the district's network, and an outage then heals
without a pool to reset.  A database that is away is a 503 with a JSON error, never a 500.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import psycopg
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse

from crowdwatch.analytics.readings import SiteReading, ZoneReading, site_readings, zone_readings
from crowdwatch.contracts.config import CrowdwatchConfig
from crowdwatch.contracts.errors import StorageError
from crowdwatch.storage.db import connect
from crowdwatch.storage.queries import (
    AlertRow,
    active_alerts,
    latest_camera_status,
    latest_zone_counts,
)

logger = logging.getLogger(__name__)

DB_TIMEOUT_S = 3.0
"""A request waits at most this long for the database before answering 503."""


class SiteNotFoundError(LookupError):
    """A request named a site the config does not have."""


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _age(age_s: float | None) -> float | None:
    return None if age_s is None else round(age_s, 1)


def _ratio(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def zone_json(reading: ZoneReading) -> dict[str, Any]:
    """One zone of ``/api/sites``."""
    return {
        "zone_id": reading.zone.id,
        "camera_id": reading.camera_id,
        "name": {"zh": reading.zone.name.zh, "en": reading.zone.name.en},
        "capacity": reading.capacity,
        "count": reading.count,
        "occupancy": _ratio(reading.occupancy),
        "status": reading.status.value,
        "ts": _iso(reading.ts),
        "age_s": _age(reading.age_s),
    }


def site_json(reading: SiteReading) -> dict[str, Any]:
    """One site of ``/api/sites``."""
    site = reading.site
    return {
        "id": site.id,
        "kind": site.kind.value,
        "name": {"zh": site.name.zh, "en": site.name.en},
        "location": {"lat": site.location.lat, "lon": site.location.lon},
        "capacity": site.capacity,
        "department": site.department.value,
        "count": reading.count,
        "occupancy": _ratio(reading.occupancy),
        "status": reading.status.value,
        "ts": _iso(reading.ts),
        "age_s": _age(reading.age_s),
        "zones": [zone_json(z) for z in reading.zones],
    }


def alert_json(alert: AlertRow) -> dict[str, Any]:
    """One alert of ``/api/alerts``."""
    return {
        "id": alert.id,
        "alert_key": alert.alert_key,
        "site_id": alert.site_id,
        "zone_id": alert.zone_id,
        "rule_id": alert.rule_id,
        "severity": alert.severity,
        "state": alert.state,
        "value": alert.value,
        "threshold": alert.threshold,
        "started_at": _iso(alert.started_at),
        "resolved_at": _iso(alert.resolved_at),
        "summary": {"zh": alert.summary_zh, "en": alert.summary_en},
    }


def _phone_page() -> str:
    return (
        resources.files("crowdwatch.dashboards")
        .joinpath("static/phone.html")
        .read_text(encoding="utf-8")
    )


def create_app(config: CrowdwatchConfig, db_url: str) -> FastAPI:
    """The FastAPI application of the dashboard.

    Args:
        config: the site config (every site is listed, even one without data).
        db_url: libpq URL of the crowdwatch database.

    Returns:
        The application; serve it with uvicorn (see :func:`run_web`).
    """
    app = FastAPI(title="crowdwatch", version="1", docs_url=None, redoc_url=None)
    page = _phone_page()

    @contextmanager
    def database() -> Iterator[psycopg.Connection]:
        conn = connect(db_url, autocommit=True, timeout_s=DB_TIMEOUT_S)
        try:
            yield conn
        finally:
            conn.close()

    def read_sites() -> list[SiteReading]:
        with database() as conn:
            zones, cameras = latest_zone_counts(conn), latest_camera_status(conn)
        now = datetime.now(UTC)
        return site_readings(zone_readings(config, zones, cameras, now), config)

    @app.exception_handler(StorageError)
    def _storage_down(request: Request, exc: StorageError) -> JSONResponse:
        logger.warning("%s %s: database unavailable: %s", request.method, request.url.path, exc)
        return JSONResponse(
            status_code=503,
            content={"error": "database unavailable", "detail": str(exc)},
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(SiteNotFoundError)
    def _unknown_site(request: Request, exc: SiteNotFoundError) -> JSONResponse:
        return JSONResponse(status_code=404, content={"error": f"unknown site {exc.args[0]!r}"})

    @app.get("/", response_class=HTMLResponse)
    def phone_page() -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    @app.get("/api/sites")
    def sites() -> JSONResponse:
        body = [site_json(r) for r in read_sites()]
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    @app.get("/api/sites/{site_id}")
    def one_site(site_id: str) -> JSONResponse:
        if site_id not in {s.id for s in config.sites}:
            raise SiteNotFoundError(site_id)
        reading = next(r for r in read_sites() if r.site.id == site_id)
        return JSONResponse(site_json(reading), headers={"Cache-Control": "no-store"})

    @app.get("/api/alerts")
    def alerts() -> JSONResponse:
        with database() as conn:
            rows = active_alerts(conn)
        return JSONResponse([alert_json(a) for a in rows], headers={"Cache-Control": "no-store"})

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        try:
            with database() as conn:
                conn.execute("SELECT 1")
        except (StorageError, psycopg.Error) as exc:
            return JSONResponse(
                status_code=503,
                content={
                    "status": "error",
                    "database": "down",
                    "error": "database unavailable",
                    "detail": str(exc),
                },
            )
        return JSONResponse({"status": "ok", "database": "ok"})

    return app


def run_web(
    config: CrowdwatchConfig,
    host: str,
    port: int,
    stop: threading.Event | None = None,
    *,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the dashboard until ``stop`` is set (or Ctrl-C when ``stop`` is None).

    Args:
        config: the site config; the database URL comes from ``config.database``.
        host: address to listen on.
        port: TCP port; 0 picks a free one (the URL is logged).
        stop: set it to shut the server down.
        on_ready: called with the base URL (``http://host:port/``) once listening.

    Raises:
        ConfigError: no database URL is configured.
        OSError: the address cannot be bound.
    """
    app = create_app(config, config.database.resolved_url())
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    bound_port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_config=None, access_log=False, timeout_graceful_shutdown=2)
    )
    shown_host = f"[{host}]" if family == socket.AF_INET6 else host
    url = f"http://{shown_host}:{bound_port}/"
    try:
        asyncio.run(_serve(server, sock, url, stop, on_ready))
    finally:
        sock.close()
        logger.info("web dashboard stopped")


async def _serve(
    server: uvicorn.Server,
    sock: socket.socket,
    url: str,
    stop: threading.Event | None,
    on_ready: Callable[[str], None] | None,
) -> None:
    """Run uvicorn on ``sock``; announce ``url`` once listening; exit when ``stop`` is set."""
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    announced = False
    while not serving.done():
        if not announced and server.started:
            announced = True
            logger.info("web dashboard at %s", url)
            if on_ready is not None:
                on_ready(url)
        if stop is not None and stop.is_set():
            server.should_exit = True
        # Polling a threading.Event from the loop: 0.1 s of shutdown latency, no extra thread.
        await asyncio.wait({serving}, timeout=0.1)
    serving.result()
