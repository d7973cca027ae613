"""Panel options and field settings per panel type, as Grafana 11 expects them.

Each function returns the ``options`` (or ``fieldConfig.defaults.custom``) object of one
panel type with every property Grafana's schema requires, so the tests can validate it
against the schema generated from ``@grafana/schema`` for that type
(``schema/panels/TYPE.options.schema.json``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from crowdwatch.dashboards.grafana.model import JsonObject, Threshold

GREEN, YELLOW, ORANGE, RED, GREY = "green", "#EAB839", "orange", "red", "#8e8e8e"

OCCUPANCY_STEPS = (Threshold(None, GREEN), Threshold(0.6, YELLOW), Threshold(0.85, RED))
"""Share of capacity: green, then yellow from 60 %, red from 85 % (the default alert rule
fires at 0.85 and clears at 0.6 in ``configs/district.example.yaml``)."""


def thresholds(steps: Sequence[Threshold]) -> JsonObject:
    """``fieldConfig.defaults.thresholds`` with absolute steps.

    Args:
        steps: the first step's value must be ``None`` (the base colour).

    Returns:
        The thresholds object.
    """
    if not steps or steps[0].value is not None:
        raise ValueError("expected a base step (value None) first")
    return {"mode": "absolute", "steps": [s.to_json() for s in steps]}


def _reduce(fields: str, *, each_row: bool) -> JsonObject:
    # values=True draws one gauge/stat per row (one per site); else one per field.
    return {"values": each_row, "calcs": ["lastNotNull"], "fields": fields, "limit": 100}


def gauge_options(fields: str, *, each_row: bool = True) -> JsonObject:
    """Options of a ``gauge`` panel.

    Args:
        fields: regex of the value field (e.g. ``/^occupancy$/``).
        each_row: one gauge per row of the result.

    Returns:
        The options object.
    """
    return {
        "reduceOptions": _reduce(fields, each_row=each_row),
        "orientation": "auto",
        "showThresholdLabels": False,
        "showThresholdMarkers": True,
        "sizing": "auto",
        "minVizHeight": 75,
        "minVizWidth": 75,
        "text": {"titleSize": 16, "valueSize": 28},
    }


def stat_options(fields: str = "", *, each_row: bool = False, graph: bool = False) -> JsonObject:
    """Options of a ``stat`` panel (big coloured number).

    Args:
        fields: regex of the value field; empty for every numeric field.
        each_row: one number per row.
        graph: draw the sparkline behind the number.

    Returns:
        The options object.
    """
    return {
        "reduceOptions": _reduce(fields, each_row=each_row),
        "colorMode": "background",
        "graphMode": "area" if graph else "none",
        "justifyMode": "center",
        "orientation": "auto",
        "textMode": "value_and_name",
        "wideLayout": True,
        "showPercentChange": False,
        "percentChangeColorMode": "standard",
    }


def table_options(sort_by: str = "", *, descending: bool = True) -> JsonObject:
    """Options of a ``table`` panel.

    Args:
        sort_by: display name of the column to sort by; empty for the query's order.
        descending: sort direction.

    Returns:
        The options object.
    """
    options: JsonObject = {
        "showHeader": True,
        "cellHeight": "md",
        "frameIndex": 0,
        "footer": {"show": False, "reducer": ["sum"], "countRows": False},
    }
    if sort_by:
        options["sortBy"] = [{"displayName": sort_by, "desc": descending}]
    return options


def table_custom() -> JsonObject:
    """``fieldConfig.defaults.custom`` of a table (every field the schema requires)."""
    return {"align": "auto", "cellOptions": {"type": "auto"}, "inspect": False}


def timeseries_options() -> JsonObject:
    """Options of a ``timeseries`` panel: legend below with last and max, shared tooltip."""
    return {
        "legend": {
            "showLegend": True,
            "displayMode": "list",
            "placement": "bottom",
            "calcs": ["lastNotNull", "max"],
        },
        "tooltip": {"mode": "multi", "sort": "desc"},
    }


def timeseries_custom(*, dashed: bool = False) -> JsonObject:
    """``custom`` field settings of a time series line (dashed for a reference series)."""
    custom: JsonObject = {
        "drawStyle": "line",
        "lineWidth": 2,
        "fillOpacity": 0 if dashed else 10,
        "showPoints": "never",
        "spanNulls": False,
        "lineInterpolation": "smooth",
    }
    if dashed:
        custom["lineStyle"] = {"fill": "dash", "dash": [10, 10]}
    return custom


def geomap_options(
    *, lat: float, lon: float, zoom: float, color_field: str, size_field: str, text_field: str
) -> JsonObject:
    """Options of a ``geomap`` panel: one marker per row at its lat/lon columns.

    Args:
        lat: initial view centre, latitude.
        lon: initial view centre, longitude.
        zoom: initial zoom (13: a few kilometres across).
        color_field: numeric column the marker colour follows (through the thresholds).
        size_field: numeric column the marker size follows.
        text_field: column shown as the marker label.

    Returns:
        The options object.
    """
    layer_config: dict[str, Any] = {
        "showLegend": True,
        "style": {
            "color": {"field": color_field, "fixed": "dark-green"},
            "opacity": 0.8,
            "size": {"field": size_field, "fixed": 8, "min": 8, "max": 30},
            "symbol": {"fixed": "img/icons/marker/circle.svg", "mode": "fixed"},
            "text": {"field": text_field, "mode": "field"},
            "textConfig": {"fontSize": 12, "offsetY": -18, "textAlign": "center"},
        },
    }
    return {
        "view": {"id": "coords", "lat": lat, "lon": lon, "zoom": zoom, "allLayers": True},
        "controls": {"showZoom": True, "mouseWheelZoom": False, "showAttribution": True},
        "basemap": {"type": "default", "name": "basemap", "config": {}},
        "layers": [
            {
                "type": "markers",
                "name": "sites",
                "config": layer_config,
                "location": {"mode": "coords", "latitude": "lat", "longitude": "lon"},
                "tooltip": True,
            }
        ],
        "tooltip": {"mode": "details"},
    }
