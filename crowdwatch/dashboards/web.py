"""The web server: the live JSON API, the phone page, the wall and the dispatcher page.

Endpoints (all JSON errors are ``{"error": ...}``; never a 500 for bad input)::

    GET /                      the phone page for field staff (no login)
    GET /wall                  the built-in wall, 1920x1080 (no login)
    GET /dispatch              the dispatcher page (logs in through the API below)
    GET /api/stream            Server-Sent Events: the full state on connect, then changes
    GET /api/state             the same state once (the pages' fallback when SSE fails)
    GET /api/sites             every configured site with its zones, count, status, trend
    GET /api/sites/{site_id}   one site (404 naming the id when unknown)
    GET /api/sites/{site_id}/series?minutes=60[&zone=ID]   counts over the last minutes
    GET /api/alerts            firing alerts, newest first
    GET /healthz               200 when the database answers, 503 otherwise
    GET /reports/daily/{day}   the daily index report (and .png .pdf .csv .xlsx; JSON under
                               /api/reports/daily/{day}): see :mod:`crowdwatch.dashboards.report_pages`
    ... and the dispatcher's API: see :mod:`crowdwatch.dashboards.dispatch`.

``GET /openapi.json`` declares every body and response (:mod:`crowdwatch.dashboards.api_schema`);
every response carries ``X-Content-Type-Options: nosniff``; a 503 says "database unavailable"
and nothing more (the log has the reason with passwords masked).  Slow, idle and surplus
connections are handled by :mod:`crowdwatch.dashboards.connections`.

Every database read opens its own short-lived connection: an outage then heals without a
pool to reset, and the live stream (:mod:`crowdwatch.dashboards.live`) makes one read per
poll for every listener together.  A database that is away is a 503 with a JSON error.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import psycopg
import uvicorn
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crowdwatch.contracts.config import CrowdwatchConfig
from crowdwatch.contracts.errors import AlertNotActive, AlertNotFound, ConfigError, StorageError
from crowdwatch.contracts.metrics import aggregates
from crowdwatch.dashboards.api_schema import (
    ALERTS_DOCS,
    HEALTH_DOCS,
    PAGE_DOCS,
    SERIES_DOCS,
    SITE_DOCS,
    SITES_DOCS,
    STATE_DOCS,
    STREAM_DOCS,
    EventStreamResponse,
)
from crowdwatch.dashboards.bodies import ECHO_CHARS, BodyError, preview
from crowdwatch.dashboards.connections import (
    MAX_HEADER_BYTES,
    AcceptStormFilter,
    guarded_protocol,
    open_files_budget,
)
from crowdwatch.dashboards.dispatch import dispatch_router
from crowdwatch.dashboards.forecast_band import forecast_router
from crowdwatch.dashboards.gtfs_realtime import gtfs_realtime_router
from crowdwatch.dashboards.live import LiveHub
from crowdwatch.dashboards.pages import Page
from crowdwatch.dashboards.report_pages import reports_router
from crowdwatch.dashboards.road_levels import RoadLevelMemory
from crowdwatch.dashboards.sessions import AuthError, SessionSigner, load_secret
from crowdwatch.dashboards.snapshot import (
    Snapshot,
    alert_json,
    iso,
    read_snapshot,
    site_json,
)
from crowdwatch.storage.db import connect, redact_dsn
from crowdwatch.storage.queries import SeriesPoint, active_alerts, site_series, zone_series

logger = logging.getLogger(__name__)

_API_AGGREGATES = [(a.api, a.name) for a in aggregates() if a.api is not None]
"""(API field, SeriesPoint field) of every aggregate the metrics' declaration exposes."""


def series_point_json(point: SeriesPoint) -> dict[str, Any]:
    """One series point as the API sends it (``SeriesPointOut``): its time and each exposed
    aggregate, fractions to two decimals."""
    body: dict[str, Any] = {"ts": iso(point.ts)}
    for field, name in _API_AGGREGATES:
        value = getattr(point, name)
        body[field] = round(value, 2) if isinstance(value, float) else value
    return body


DB_TIMEOUT_S = 3.0
"""A request waits at most this long for the database before answering 503."""

__all__ = ["alert_json", "create_app", "run_web", "site_json"]


class SiteNotFoundError(LookupError):
    """A request named a site (or a zone of a site) the config does not have."""


class NoSniffMiddleware:
    """``X-Content-Type-Options: nosniff`` on every response: no browser reads JSON as HTML.

    Pure ASGI rather than ``BaseHTTPMiddleware``, which would buffer the live stream.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_nosniff(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
            await send(message)

        await self.app(scope, receive, send_nosniff)


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message, **extra})


def create_app(config: CrowdwatchConfig, db_url: str) -> FastAPI:
    """The FastAPI application of the dashboard.

    Args:
        config: the site config (every site is listed, even one without data; dispatchers
            are ``config.web.users``).
        db_url: libpq URL of the crowdwatch database.

    Returns:
        The application; serve it with uvicorn (see :func:`run_web`).  ``app.state.live``
        is its :class:`LiveHub`; call its ``close()`` to end open streams before stopping.

    Raises:
        ConfigError: ``CROWDWATCH_WEB_SECRET`` is set but too short.
    """

    @contextmanager
    def database() -> Iterator[psycopg.Connection]:
        conn = connect(db_url, autocommit=True, timeout_s=DB_TIMEOUT_S)
        try:
            yield conn
        finally:
            conn.close()

    # The pages' road colours, held with hysteresis across reads (one memory per process).
    road_levels = RoadLevelMemory()

    def snapshot(now: datetime) -> Snapshot:
        with database() as conn:
            return read_snapshot(conn, config, now, road_levels)

    live = LiveHub(config, snapshot, config.web.live_poll_s, config.web.heartbeat_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(live.run(), name="live-hub")
        try:
            yield
        finally:
            live.close()
            await task

    app = FastAPI(title="crowdwatch", version="1", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.live = live
    # JSON of 50 sites is ~40 KB and compresses ~10x; the SSE stream compresses itself.
    app.add_middleware(GZipMiddleware, minimum_size=500)
    app.add_middleware(NoSniffMiddleware)
    pages = {name: Page.load(name) for name in ("phone", "wall", "dispatch")}
    signer = SessionSigner(config.web, load_secret(warn=bool(config.web.users)))
    app.include_router(dispatch_router(config, signer, database))
    app.include_router(gtfs_realtime_router(config, database))
    app.include_router(reports_router(config, database))
    app.include_router(forecast_router(config, database))
    site_ids = {s.id for s in config.sites}

    @app.exception_handler(StorageError)
    def _storage_down(request: Request, exc: StorageError) -> JSONResponse:
        logger.warning(
            "%s %s: database unavailable: %s",
            request.method,
            request.url.path,
            redact_dsn(str(exc)),
        )
        # No detail to the client: connection errors name hosts, users and (in some DSN forms)
        # passwords; the log has the redacted reason.
        response = _error(503, "database unavailable")
        response.headers["Retry-After"] = "5"
        return response

    @app.exception_handler(SiteNotFoundError)
    def _unknown_site(request: Request, exc: SiteNotFoundError) -> JSONResponse:
        return _error(404, str(exc.args[0]))

    @app.exception_handler(AuthError)
    def _refused(request: Request, exc: AuthError) -> JSONResponse:
        logger.info("%s %s refused: %s", request.method, request.url.path, exc)
        response = _error(exc.status, str(exc))
        if exc.retry_after_s is not None:
            response.headers["Retry-After"] = str(exc.retry_after_s)
        return response

    @app.exception_handler(BodyError)
    def _bad_body(request: Request, exc: BodyError) -> JSONResponse:
        return _error(exc.status, str(exc))

    @app.exception_handler(RequestValidationError)
    def _bad_parameter(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default is {"detail": [...]} quoting the whole input; the API's errors are
        # {"error": "..."} and quote at most a short prefix.
        problems = "; ".join(
            f"{'.'.join(str(p)[:ECHO_CHARS] for p in e['loc'])}: {e['msg']}"
            for e in exc.errors()[:5]
        )
        return _error(422, problems or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # Unknown paths (404) and wrong methods (405) answer in the API's error shape too.
        headers = dict(exc.headers or {})
        if exc.status_code in (204, 304):
            return Response(status_code=exc.status_code, headers=headers)
        message = "not found" if exc.status_code == 404 else str(exc.detail)[:200]
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(AlertNotFound)
    def _no_alert(request: Request, exc: AlertNotFound) -> JSONResponse:
        return _error(404, str(exc))

    @app.exception_handler(AlertNotActive)
    def _not_firing(request: Request, exc: AlertNotActive) -> JSONResponse:
        return _error(409, str(exc))

    def require_site(site_id: str) -> None:
        if site_id not in site_ids:
            raise SiteNotFoundError(f"unknown site {preview(site_id)}")

    @app.get("/", **PAGE_DOCS)
    def phone_page(request: Request) -> Response:
        return pages["phone"].respond(request)

    @app.get("/wall", **PAGE_DOCS)
    def wall_page(request: Request) -> Response:
        return pages["wall"].respond(request)

    @app.get("/dispatch", **PAGE_DOCS)
    def dispatch_page(request: Request) -> Response:
        return pages["dispatch"].respond(request)

    @app.get("/api/stream", **STREAM_DOCS)
    async def stream(request: Request) -> EventStreamResponse:
        gzip = "gzip" in request.headers.get("accept-encoding", "")
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        if gzip:
            headers |= {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
        return EventStreamResponse(live.events(gzip=gzip), headers=headers)

    @app.get("/api/state", **STATE_DOCS)
    async def state() -> Response:
        # Rendered once per state, not per request: at 20,000 zones the JSON is megabytes.
        state, body = await live.current_body()
        status = 200 if state["database"]["ok"] else 503
        return Response(
            body,
            status_code=status,
            media_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    def read_sites(site_id: str | None = None) -> Snapshot:
        with database() as conn:
            return read_snapshot(conn, config, datetime.now(UTC), road_levels, site_id=site_id)

    @app.get("/api/sites", **SITES_DOCS)
    def sites() -> JSONResponse:
        snap = read_sites()
        body = [site_json(r, snap.zone_rows, snap.earlier, snap.road_levels) for r in snap.sites]
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    @app.get("/api/sites/{site_id}", **SITE_DOCS)
    def one_site(site_id: str) -> JSONResponse:
        require_site(site_id)
        snap = read_sites(site_id)
        [reading] = snap.sites
        body = site_json(reading, snap.zone_rows, snap.earlier, snap.road_levels)
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    @app.get("/api/sites/{site_id}/series", **SERIES_DOCS)
    def series(
        site_id: str,
        minutes: Annotated[int, Query(ge=1, le=60 * 24 * 31)] = 60,
        zone: Annotated[str | None, Query(max_length=64)] = None,
    ) -> JSONResponse:
        require_site(site_id)
        site = config.site(site_id)
        if zone is not None and zone not in {
            z.id for _, c in [(site, c) for c in site.cameras] for z in c.zones
        }:
            raise SiteNotFoundError(f"unknown zone {preview(zone)} of site {site_id!r}")
        end = datetime.now(UTC)
        start = end - timedelta(minutes=minutes)
        with database() as conn:
            if zone is None:
                found = site_series(conn, site_id, start, end)
            else:
                found = zone_series(conn, site_id, zone, start, end)
        body = {
            "site_id": site_id,
            "zone_id": zone,
            "start": iso(start),
            "end": iso(end),
            "resolution": found.resolution.value,
            # No rows in the range is an empty list, never zeros: no data is not "nobody".
            "points": [series_point_json(p) for p in found.points],
        }
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    @app.get("/api/alerts", **ALERTS_DOCS)
    def alerts() -> JSONResponse:
        with database() as conn:
            rows = active_alerts(conn)
        body = [alert_json(a, config) for a in rows]
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    @app.get("/healthz", **HEALTH_DOCS)
    def healthz() -> JSONResponse:
        try:
            with database() as conn:
                conn.execute("SELECT 1")
        except (StorageError, psycopg.Error) as exc:
            logger.warning("GET /healthz: database unavailable: %s", redact_dsn(str(exc)))
            return JSONResponse(
                status_code=503,
                content={"status": "error", "database": "down", "error": "database unavailable"},
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
        config: the site config; the database URL is ``database.web_url``, else ``database.url``.
        host: address to listen on.
        port: TCP port; 0 picks a free one (the URL is logged).
        stop: set it to shut the server down.
        on_ready: called with the base URL (``http://host:port/``) once listening.

    Raises:
        ConfigError: no database URL is configured, or the address cannot be bound.
    """
    app = create_app(config, config.database.url_for("web"))
    live: LiveHub = app.state.live
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; stop what uses it, or "
            "set web.port or --port (0: a free port)"
        ) from exc
    bound_port = sock.getsockname()[1]
    web = config.web
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=2,
            # Idle and slow clients: see crowdwatch.dashboards.connections.
            http=guarded_protocol(open_files_budget(web.max_connections), web.request_timeout_s),
            timeout_keep_alive=web.keep_alive_s,
            h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        )
    )
    shown_host = f"[{host}]" if family == socket.AF_INET6 else host
    url = f"http://{shown_host}:{bound_port}/"
    storm = AcceptStormFilter()
    logging.getLogger("asyncio").addFilter(storm)
    try:
        asyncio.run(_serve(server, sock, url, stop, on_ready, live))
    finally:
        logging.getLogger("asyncio").removeFilter(storm)
        sock.close()
        logger.info("web dashboard stopped")


async def _serve(
    server: uvicorn.Server,
    sock: socket.socket,
    url: str,
    stop: threading.Event | None,
    on_ready: Callable[[str], None] | None,
    live: LiveHub,
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
            # End the open streams first: uvicorn waits for running responses to finish.
            live.close()
            server.should_exit = True
        # Polling a threading.Event from the loop: 0.1 s of shutdown latency, no extra thread.
        await asyncio.wait({serving}, timeout=0.1)
    serving.result()
