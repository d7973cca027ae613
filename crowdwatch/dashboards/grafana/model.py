"""Typed builders for Grafana dashboards: panels, SQL targets, variables, dashboards.

Every dashboard is built from these frozen values and turned into Grafana's JSON model
(schemaVersion 39, Grafana 11) by ``to_json``, so no JSON is written by hand and every
panel states which columns its SQL must return (``SqlTarget.columns``): the tests run each
target against a real database and check them.  The JSON is validated against the schema
generated from ``@grafana/schema`` (see ``schema/README.md``).

Panel options are plain mappings built by the small per-type functions in
:mod:`crowdwatch.dashboards.grafana.options` (validated against each panel type's own
generated schema in the tests).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

SCHEMA_VERSION = 39
"""Dashboard JSON schema version of Grafana 11.0; later 11.x releases migrate it on load."""

DATASOURCE_TYPE = "grafana-postgresql-datasource"
"""Grafana 11's id of the built-in PostgreSQL data source (``postgres`` is an old alias)."""

JsonObject = dict[str, Any]
QueryFormat = Literal["table", "time_series"]
PanelType = Literal["geomap", "gauge", "table", "timeseries", "stat", "text"]


@dataclass(frozen=True, slots=True)
class DataSourceRef:
    """Which data source a panel or variable queries (by uid, stable across instances)."""

    uid: str
    type: str = DATASOURCE_TYPE

    def to_json(self) -> JsonObject:
        return {"type": self.type, "uid": self.uid}


@dataclass(frozen=True, slots=True)
class GridPos:
    """Place on the 24-column dashboard grid (height in rows of 30 px)."""

    x: int
    y: int
    w: int
    h: int

    def __post_init__(self) -> None:
        if not (self.x >= 0 and self.w > 0 and self.x + self.w <= 24 and self.h > 0):
            raise ValueError(f"expected a panel inside the 24-column grid, got {self}")

    def to_json(self) -> JsonObject:
        return {"x": self.x, "y": self.y, "w": self.w, "h": self.h}


@dataclass(frozen=True, slots=True)
class SqlTarget:
    """One raw-SQL query of a panel, and the columns the panel reads from its result.

    ``sql`` may use Grafana's macros (``$__timeFrom()``, ``$__timeTo()``) and the dashboard's
    variables (``${site:sqlstring}``); :mod:`crowdwatch.dashboards.grafana.macros` expands
    them the way Grafana does.
    """

    ref_id: str
    sql: str
    columns: tuple[str, ...]
    """Columns the panel needs (time series: ``time`` first); the tests check the result."""
    format: QueryFormat = "table"

    def to_json(self, datasource: DataSourceRef) -> JsonObject:
        return {
            "refId": self.ref_id,
            "datasource": datasource.to_json(),
            "editorMode": "code",
            "format": self.format,
            "rawQuery": True,
            "rawSql": self.sql.strip(),
        }


@dataclass(frozen=True, slots=True)
class Threshold:
    """A colour from ``value`` upwards (``None``: the base colour below every step)."""

    value: float | None
    color: str

    def to_json(self) -> JsonObject:
        return {"value": self.value, "color": self.color}


@dataclass(frozen=True, slots=True)
class FieldOverride:
    """Settings for the fields whose name matches ``field_name``."""

    field_name: str
    properties: Mapping[str, Any]

    def to_json(self) -> JsonObject:
        return {
            "matcher": {"id": "byName", "options": self.field_name},
            "properties": [{"id": k, "value": v} for k, v in self.properties.items()],
        }


@dataclass(frozen=True, slots=True)
class Panel:
    """A panel: its type, title, place, queries, options and field defaults."""

    type: PanelType
    title: str
    grid: GridPos
    targets: tuple[SqlTarget, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    """``fieldConfig.defaults`` (unit, thresholds, min/max, links, custom...)."""
    overrides: tuple[FieldOverride, ...] = ()
    description: str = ""
    transformations: tuple[Mapping[str, Any], ...] = ()

    def to_json(self, panel_id: int, datasource: DataSourceRef) -> JsonObject:
        panel: JsonObject = {
            "id": panel_id,
            "type": self.type,
            "title": self.title,
            "gridPos": self.grid.to_json(),
            "options": dict(self.options),
            "fieldConfig": {
                "defaults": dict(self.defaults),
                "overrides": [o.to_json() for o in self.overrides],
            },
        }
        if self.description:
            panel["description"] = self.description
        if self.targets:
            panel["datasource"] = datasource.to_json()
            panel["targets"] = [t.to_json(datasource) for t in self.targets]
        if self.transformations:
            panel["transformations"] = [dict(t) for t in self.transformations]
        return panel


@dataclass(frozen=True, slots=True)
class QueryVariable:
    """A dashboard variable whose choices come from SQL (``__value``/``__text`` columns)."""

    name: str
    label: str
    sql: str
    description: str = ""
    allow_custom: bool = False
    """Let the user type a value that is not in the list (e.g. any past date)."""

    def to_json(self, datasource: DataSourceRef) -> JsonObject:
        return {
            "name": self.name,
            "label": self.label,
            "description": self.description,
            "type": "query",
            "datasource": datasource.to_json(),
            "query": self.sql.strip(),
            # 1 = on dashboard load: new sites and days appear without editing the dashboard.
            "refresh": 1,
            "sort": 0,
            "multi": False,
            "includeAll": False,
            "allowCustomValue": self.allow_custom,
            "options": [],
            "hide": 0,
        }


@dataclass(frozen=True, slots=True)
class Link:
    """A link in the dashboard header, to the dashboards with ``tag`` or to ``url``."""

    title: str
    tag: str = ""
    url: str = ""

    def to_json(self) -> JsonObject:
        return {
            "title": self.title,
            "type": "dashboards" if self.tag else "link",
            "tags": [self.tag] if self.tag else [],
            "url": self.url,
            "asDropdown": False,
            "icon": "external link",
            "includeVars": False,
            "keepTime": True,
            "targetBlank": False,
            "tooltip": "",
        }


@dataclass(frozen=True, slots=True)
class Dashboard:
    """A whole dashboard; ``to_json`` gives Grafana's JSON model."""

    uid: str
    title: str
    panels: tuple[Panel, ...]
    tags: tuple[str, ...] = ()
    variables: tuple[QueryVariable, ...] = ()
    links: tuple[Link, ...] = ()
    description: str = ""
    refresh: str = "10s"
    time_from: str = "now-6h"
    timezone: str = "browser"

    def targets(self) -> list[tuple[Panel, SqlTarget]]:
        """Every (panel, target) pair, in panel order."""
        return [(p, t) for p in self.panels for t in p.targets]

    def to_json(self, datasource: DataSourceRef) -> JsonObject:
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": list(self.tags),
            "timezone": self.timezone,
            "editable": True,
            "graphTooltip": 1,
            "refresh": self.refresh,
            "schemaVersion": SCHEMA_VERSION,
            "time": {"from": self.time_from, "to": "now"},
            "timepicker": {"refresh_intervals": ["10s", "30s", "1m", "5m", "15m"]},
            "fiscalYearStartMonth": 0,
            "liveNow": False,
            "annotations": {"list": []},
            "links": [link.to_json() for link in self.links],
            "templating": {"list": [v.to_json(datasource) for v in self.variables]},
            "panels": _numbered(self.panels, datasource),
        }


def _numbered(panels: Sequence[Panel], datasource: DataSourceRef) -> list[JsonObject]:
    # Panel ids only need to be unique within a dashboard; position order keeps them stable.
    return [p.to_json(i, datasource) for i, p in enumerate(panels, start=1)]
