"""Who hears of an alert, when not, and which alerts travel together.

- **Routes** (``alerts.routes``) match an alert by its site's department and its severity
  (empty lists match all); every matching route notifies its channels.
- **Escalation**: a route's ``escalation`` steps are the next contacts and, last, the duty
  officer; level *n* notifies step *n* (a level past the last step notifies the last).
- **Mute windows** (``alerts.mute_windows``, local time of ``district.timezone``, may wrap
  midnight) named by a rule or a route hold back people notifications, e.g. outside a bus
  stop's operating hours; **silences** (a person, for a while) do the same; an offline
  camera **inhibits** the crowd alerts of its zones.  Held-back alerts are still recorded.
- **Grouping**: one message per bus route (``group_by: route``; a stop without routes groups
  by its site), per site (a beach and its sections) or per zone, per channel, per evaluation.
"""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

from crowdwatch.contracts.channels import AlertChannel
from crowdwatch.contracts.config import (
    AlertRoute,
    AlertsConfig,
    EscalationStep,
    MuteWindow,
    Site,
)
from crowdwatch.contracts.site_kinds import bus_routes


def _hhmm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def in_mute_window(window: MuteWindow, at: datetime, tz: str) -> bool:
    """Whether ``at`` falls in ``window`` (local time in ``tz``).

    A window whose end is before its start wraps midnight (``23:00``-``06:00``); its
    ``weekdays`` are those of the evening it starts.

    Example:
        >>> from datetime import UTC
        >>> night = MuteWindow(id="night", start="23:00", end="06:00")
        >>> in_mute_window(night, datetime(2026, 10, 1, 20, 0, tzinfo=UTC), "Asia/Shanghai")
        True
    """
    local = at.astimezone(ZoneInfo(tz))
    start, end, now = _hhmm(window.start), _hhmm(window.end), local.time()
    if start == end:
        inside, weekday = True, local.isoweekday()
    elif start < end:
        inside, weekday = start <= now < end, local.isoweekday()
    elif now >= start:
        inside, weekday = True, local.isoweekday()
    else:
        inside, weekday = now < end, (local.isoweekday() + 5) % 7 + 1  # the day before
    return inside and (not window.weekdays or weekday in window.weekdays)


def matching_routes(alerts: AlertsConfig, department: str, severity: str) -> list[AlertRoute]:
    """The routes an alert of this department and severity goes to, in config order."""
    return [
        r
        for r in alerts.routes
        if (not r.departments or department in r.departments)
        and (not r.severities or severity in r.severities)
    ]


def escalation_step(route: AlertRoute, level: int) -> EscalationStep | None:
    """The step that escalation ``level`` (1 = first escalation) notifies, if the route has any."""
    if not route.escalation or level < 1:
        return None
    return route.escalation[min(level, len(route.escalation)) - 1]


def group_key(group_by: str, site: Site, zone_id: str | None, alert_key: str) -> str:
    """What notifications group an alert by.

    Example:
        >>> from crowdwatch.contracts.config import Site  # doctest: +SKIP
        >>> group_key("route", stop_with_routes_k1, "platform", "...")  # doctest: +SKIP
        'route:K1'
    """
    routes = bus_routes(site)
    if group_by == "route" and routes:
        return "route:" + ",".join(routes)
    if group_by in ("route", "site"):
        return f"site:{site.id}"
    return f"alert:{alert_key}"


def muted_by(alerts: AlertsConfig, names: list[str], at: datetime, tz: str) -> str | None:
    """The first of the named mute windows that is open at ``at``, if any."""
    windows = {w.id: w for w in alerts.mute_windows}
    for name in names:
        window = windows.get(name)
        if window is not None and in_mute_window(window, at, tz):
            return name
    return None


def channels_by_id(alerts: AlertsConfig) -> dict[str, AlertChannel]:
    """The configured channels by id."""
    return {c.id: c for c in alerts.channels}
