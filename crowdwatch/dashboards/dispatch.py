"""The dispatcher's API: log in, see the department's alerts, acknowledge and escalate them.

Endpoints (JSON; errors are ``{"error": ...}`` with 400/401/403/404/409/413/415/422)::

    POST /api/login                  {name, password} -> session cookie + {name, department, csrf}
                                     (+ a device cookie; 429 + Retry-After: see login_limits)
    POST /api/token                  {name, password} -> {token} for ``Authorization: Bearer``
    POST /api/logout                 ends the session on the server and clears the cookie
    GET  /api/me                     who is logged in, and the CSRF token
    GET  /api/dispatch/alerts        the department's firing alerts, each with its history
    GET  /api/dispatch/history       the department's alerts of the last ``hours`` (default 24)
    POST /api/alerts/{id}/acknowledge  {note}
    POST /api/alerts/{id}/escalate     {note}
    POST /api/alerts/{id}/dispatch     {route, buses, note}: buses sent (409: the route, one of
                                     the configured ones, does not serve this alert's stop)
    POST /api/alerts/{id}/decline      {reason}: no bus sent, and why

Every alert of a bus stop that ``transit`` routes serve carries ``dispatch``: the routes,
the newest recommendation and the decisions taken with their outcome (time to clear).

Writes go through :mod:`crowdwatch.analytics.actions` and
:mod:`crowdwatch.analytics.dispatch_actions`, which record who and when in ``alert_events``;
this module never writes alert state itself.  A cookie-authenticated write
needs ``X-CSRF-Token`` (see :mod:`crowdwatch.dashboards.sessions`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse

from crowdwatch.analytics.actions import acknowledge, alert_history, escalate, get_alert
from crowdwatch.analytics.dispatch_actions import (
    Decision,
    DispatchRecord,
    RouteNotAtStop,
    decide,
    dispatch_records,
)
from crowdwatch.contracts.config import CrowdwatchConfig, WebUser
from crowdwatch.contracts.notification import DispatchAdvice
from crowdwatch.dashboards.api_schema import (
    ACTION_DOCS,
    BODY_ERRORS,
    DECLINE_DOCS,
    DISPATCH_ALERTS_DOCS,
    DISPATCH_HISTORY_DOCS,
    LOGIN_DOCS,
    LOGOUT_DOCS,
    ME_DOCS,
    TOKEN_DOCS,
    NotedAlertOut,
    route_docs,
)
from crowdwatch.dashboards.bodies import (
    BodyError,
    DeclineBody,
    DispatchBody,
    LoginBody,
    NoteBody,
    dispatch_body,
    read_body,
)
from crowdwatch.dashboards.login_limits import LoginLimiter
from crowdwatch.dashboards.passwords import hash_password, verify_password
from crowdwatch.dashboards.sessions import DEVICE_TTL, AuthError, Session, SessionSigner
from crowdwatch.dashboards.snapshot import alert_department, alert_json, iso
from crowdwatch.storage.queries import AlertRow, active_alerts, recent_alerts

SESSION_COOKIE = "cw_session"
DEVICE_COOKIE = "cw_device"
CSRF_HEADER = "X-CSRF-Token"
HISTORY_LIMIT = 200

OpenDatabase = Callable[[], AbstractContextManager[psycopg.Connection]]
AlertId = Annotated[int, Path(ge=1, le=2**63 - 1, description="alerts.id")]

# Checked when the name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = hash_password("not a password", n=2**14)


def _no_store(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


def _sees(user: WebUser, department: str | None) -> bool:
    return user.department is None or department == user.department.value


def _session_json(session: Session) -> dict[str, Any]:
    user = session.user
    return {
        "name": user.name,
        "department": None if user.department is None else user.department.value,
        "csrf": session.csrf,
        "expires_at": iso(session.expires_at),
    }


def _served_by(config: CrowdwatchConfig, site_id: str) -> list[str]:
    transit = config.transit
    return [] if transit is None else [r.id for r in transit.routes_at(site_id)]


def _advised(advice: DispatchAdvice | None, route: str | None) -> int | None:
    """What the advice shown said: buses on the route sent on (declined: on every route)."""
    if advice is None:
        return None
    return sum(r.buses for r in advice.routes if route is None or r.route == route)


def dispatch_json(
    config: CrowdwatchConfig, alert: AlertRow, record: DispatchRecord | None
) -> dict[str, Any] | None:
    """The ``dispatch`` of an alert: ``None`` unless its stop has routes or it has a record."""
    routes = _served_by(config, alert.site_id)
    if not routes and record is None:
        return None
    advice = record.advice if record is not None else None
    decisions = record.decisions if record is not None else ()
    return {
        "routes": routes,
        "advice": None
        if advice is None
        else {
            "as_of": iso(advice.as_of),
            "waiting": advice.waiting,
            "arrival_rate_per_min": advice.arrival_rate_per_min,
            "target_min": advice.target_min,
            "extra_buses": advice.extra_buses,
            "routes": [
                r.model_dump(mode="json") | {"arrive_by": iso(r.arrive_by)} for r in advice.routes
            ],
            "text": {"zh": advice.text_zh, "en": advice.text_en},
        },
        "advice_at": iso(record.advice_at) if record is not None else None,
        "decisions": [
            {
                "id": d.id,
                "at": iso(d.at),
                "who": d.who,
                "action": d.action.value,
                "route": d.route,
                "buses": d.buses,
                "reason": d.reason,
                "recommended_buses": _advised(d.recommended, d.route),
                "cleared_at": iso(d.cleared_at),
                "time_to_clear_s": d.time_to_clear_s,
            }
            for d in decisions
        ],
    }


def dispatch_router(
    config: CrowdwatchConfig,
    signer: SessionSigner,
    database: OpenDatabase,
    limiter: LoginLimiter | None = None,
) -> APIRouter:
    """The dispatcher's routes.

    Args:
        config: the site config (users are in ``config.web.users``).
        signer: issues and checks session tokens.
        database: opens a short-lived autocommit connection (a context manager).
        limiter: failed-login throttle; a new :class:`LoginLimiter` (5 per 5 min) by default.

    Returns:
        A router to include in the app.
    """
    router = APIRouter()
    limits = limiter if limiter is not None else LoginLimiter()

    def authenticate(request: Request, *, write: bool) -> Session:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            # A bearer token is never sent by a browser on its own: no CSRF check needed.
            return signer.verify(header[7:].strip())
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            raise AuthError(401, "login required")
        session = signer.verify(cookie)
        if write:
            signer.check_csrf(session, request.headers.get(CSRF_HEADER))
        return session

    async def check_login(request: Request) -> WebUser:
        body = await read_body(request, LoginBody)
        address = request.client.host if request.client is not None else "unknown"
        device = signer.device_id(request.cookies.get(DEVICE_COOKIE), body.name)
        # Booked before the password check: concurrent guesses meet the limit, and a
        # throttled guess learns nothing, not even whether it was right.
        attempt = limits.reserve(body.name, address, device)
        user = signer.user(body.name)
        stored = user.password_hash if user is not None else _DUMMY_HASH
        matches = await asyncio.to_thread(verify_password, body.password, stored)
        if user is None or not matches:
            limits.failed(attempt)
            raise AuthError(401, "wrong name or password")
        limits.succeeded(attempt)
        return user

    def remember_device(request: Request, response: JSONResponse, user: WebUser) -> None:
        """Give the browser a device cookie for ``user`` (see login_limits) unless it has one."""
        if signer.device_id(request.cookies.get(DEVICE_COOKIE), user.name) is not None:
            return
        response.set_cookie(
            DEVICE_COOKIE,
            signer.issue_device(user),
            max_age=int(DEVICE_TTL.total_seconds()),
            path="/api",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    @router.post("/api/login", **LOGIN_DOCS)
    async def login(request: Request) -> JSONResponse:
        user = await check_login(request)
        token, session = signer.issue(user)
        response = _no_store(_session_json(session))
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=config.web.session_ttl_s,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        remember_device(request, response, user)
        return response

    @router.post("/api/token", **TOKEN_DOCS)
    async def token(request: Request) -> JSONResponse:
        user = await check_login(request)
        value, session = signer.issue(user)
        body = {"token": value, "token_type": "bearer", "expires_at": iso(session.expires_at)}
        response = _no_store(body)
        remember_device(request, response, user)
        return response

    @router.post("/api/logout", **LOGOUT_DOCS)
    def logout(request: Request) -> JSONResponse:
        # End the session on the server too: a copy of the cookie (or the bearer token)
        # must not outlive the logout.  Logging out without a valid session is still a 200.
        with contextlib.suppress(AuthError):
            signer.revoke(authenticate(request, write=False))
        response = _no_store({"logged_out": True})
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    @router.get("/api/me", **ME_DOCS)
    def me(request: Request) -> JSONResponse:
        return _no_store(_session_json(authenticate(request, write=False)))

    def noted(alert: AlertRow, record: DispatchRecord | None) -> dict[str, Any]:
        return alert_json(alert, config) | {
            "ack_note": alert.ack_note,
            "dispatch": dispatch_json(config, alert, record),
        }

    def department_alerts(user: WebUser) -> list[dict[str, Any]]:
        with database() as conn:
            rows = [a for a in active_alerts(conn) if _sees(user, alert_department(a, config))]
            records = dispatch_records(conn, [a.id for a in rows])
            out = []
            for alert in rows:
                item = noted(alert, records.get(alert.id))
                item["history"] = [
                    {"at": iso(e.at), "kind": e.kind, "who": e.who, "note": e.note}
                    for e in alert_history(conn, alert.id)
                ]
                out.append(item)
        return out

    @router.get("/api/dispatch/alerts", **DISPATCH_ALERTS_DOCS)
    async def dispatch_alerts(request: Request) -> JSONResponse:
        session = authenticate(request, write=False)
        alerts = await asyncio.to_thread(department_alerts, session.user)
        return _no_store({"user": _session_json(session), "alerts": alerts})

    def department_history(user: WebUser, hours: int) -> list[dict[str, Any]]:
        since = datetime.now(UTC) - timedelta(hours=hours)
        with database() as conn:
            rows = [
                a
                for a in recent_alerts(conn, HISTORY_LIMIT)
                if a.started_at >= since and _sees(user, alert_department(a, config))
            ]
            records = dispatch_records(conn, [a.id for a in rows])
        return [noted(a, records.get(a.id)) for a in rows]

    @router.get("/api/dispatch/history", **DISPATCH_HISTORY_DOCS)
    async def dispatch_history(
        request: Request, hours: Annotated[int, Query(ge=1, le=24 * 31)] = 24
    ) -> JSONResponse:
        session = authenticate(request, write=False)
        alerts = await asyncio.to_thread(department_history, session.user, hours)
        return _no_store({"hours": hours, "alerts": alerts})

    def visible_alert(conn: psycopg.Connection, user: WebUser, alert_id: int) -> AlertRow:
        alert = get_alert(conn, alert_id)
        department = alert_department(alert, config)
        if not _sees(user, department):
            raise AuthError(403, f"alert {alert_id} belongs to department {department!r}")
        return alert

    def answer(conn: psycopg.Connection, row: AlertRow) -> dict[str, Any]:
        return noted(row, dispatch_records(conn, [row.id]).get(row.id))

    def act(user: WebUser, alert_id: int, note: str, action: str) -> dict[str, Any]:
        with database() as conn:
            visible_alert(conn, user, alert_id)
            if action == "acknowledge":
                row = acknowledge(conn, alert_id, user.name, note)
            else:
                row = escalate(conn, alert_id, user.name, note)
            return answer(conn, row)

    async def action_route(request: Request, alert_id: int, action: str) -> JSONResponse:
        session = authenticate(request, write=True)
        body = await read_body(request, NoteBody, allow_empty=True)
        item = await asyncio.to_thread(act, session.user, alert_id, body.note.strip(), action)
        return _no_store(item)

    def record_decision(
        user: WebUser, alert_id: int, action: Decision, body: DispatchBody | DeclineBody
    ) -> dict[str, Any]:
        with database() as conn:
            alert = visible_alert(conn, user, alert_id)
            try:
                if isinstance(body, DispatchBody):
                    decide(
                        conn,
                        alert_id,
                        user.name,
                        action,
                        routes=_served_by(config, alert.site_id),
                        route=body.route,
                        buses=body.buses,
                        reason=body.note,
                    )
                else:
                    routes = _served_by(config, alert.site_id)
                    decide(conn, alert_id, user.name, action, routes=routes, reason=body.reason)
            except RouteNotAtStop as exc:
                # A configured route (the schema's enum), but not one of this stop's.
                raise BodyError(409, str(exc)) from None
            except ValueError as exc:
                raise BodyError(422, str(exc)) from None
            return answer(conn, get_alert(conn, alert_id))

    transit = config.transit
    dispatch_model = dispatch_body([r.id for r in transit.routes] if transit else [])
    dispatch_docs = route_docs(
        NotedAlertOut, *BODY_ERRORS, 401, 403, 404, 409, 503, body=dispatch_model
    )

    @router.post("/api/alerts/{alert_id}/dispatch", **dispatch_docs)
    async def dispatch_buses(request: Request, alert_id: AlertId) -> JSONResponse:
        session = authenticate(request, write=True)
        body = await read_body(request, dispatch_model)
        item = await asyncio.to_thread(
            record_decision, session.user, alert_id, Decision.DISPATCHED, body
        )
        return _no_store(item)

    @router.post("/api/alerts/{alert_id}/decline", **DECLINE_DOCS)
    async def decline_advice(request: Request, alert_id: AlertId) -> JSONResponse:
        session = authenticate(request, write=True)
        body = await read_body(request, DeclineBody)
        item = await asyncio.to_thread(
            record_decision, session.user, alert_id, Decision.DECLINED, body
        )
        return _no_store(item)

    @router.post("/api/alerts/{alert_id}/acknowledge", **ACTION_DOCS)
    async def acknowledge_alert(request: Request, alert_id: AlertId) -> JSONResponse:
        return await action_route(request, alert_id, "acknowledge")

    @router.post("/api/alerts/{alert_id}/escalate", **ACTION_DOCS)
    async def escalate_alert(request: Request, alert_id: AlertId) -> JSONResponse:
        return await action_route(request, alert_id, "escalate")

    return router
