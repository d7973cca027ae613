"""Expand a panel's SQL the way Grafana does before it reaches PostgreSQL.

Grafana turns a raw-SQL query into plain SQL in two steps, and so does :func:`expand`:

1. Template variables (in the browser, ``templateSrv.replace``): ``${name:sqlstring}``
   becomes the value as a quoted SQL literal with single quotes doubled; ``${name}`` and
   ``$name`` become the bare value (what the PostgreSQL data source does for a single-value
   variable; a multi-value or "All" variable would be quoted and comma-joined, and the
   crowdwatch dashboards have none).
2. Macros (in the data source's backend, ``pkg/tsdb/grafana-postgresql-datasource``):
   ``$__timeFrom()`` and ``$__timeTo()`` become the range's ends as quoted RFC 3339 UTC
   instants (``'2026-10-01T02:00:00Z'``, whole seconds), and ``$__timeFilter(col)`` becomes
   ``col BETWEEN 'from' AND 'to'``.

Anything else that looks like a macro or a variable is an error here (Grafana would send
it through unchanged and PostgreSQL would fail on it), so a test that runs the expanded
statement proves the panel's text is complete.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime

_VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(?!__)(\w+)")
_MACRO = re.compile(r"\$__(\w+)\(([^)]*)\)")


def _rfc3339(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError(f"expected a timezone-aware instant, got {at.isoformat()}")
    return at.astimezone(UTC).replace(microsecond=0).strftime("'%Y-%m-%dT%H:%M:%SZ'")


def _sqlstring(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def expand(
    sql: str, time_from: datetime, time_to: datetime, variables: Mapping[str, str] | None = None
) -> str:
    """The SQL Grafana would send to PostgreSQL for this range and these variable values.

    Args:
        sql: a panel's raw SQL with Grafana macros and variables.
        time_from: the dashboard range's start (timezone-aware).
        time_to: the range's end (timezone-aware).
        variables: variable name -> current value.

    Returns:
        Plain SQL.

    Raises:
        ValueError: a variable without a value, an unknown format or an unknown macro.
    """
    values = variables or {}

    def variable(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        fmt = match.group(2)
        if name not in values:
            raise ValueError(f"no value for dashboard variable ${name}")
        if fmt is None or fmt == "raw":
            return values[name]
        if fmt == "sqlstring":
            return _sqlstring(values[name])
        raise ValueError(f"unsupported variable format {fmt!r} in ${{{name}:{fmt}}}")

    start, end = _rfc3339(time_from), _rfc3339(time_to)

    def macro(match: re.Match[str]) -> str:
        name, argument = match.group(1), match.group(2).strip()
        if name == "timeFrom":
            return start
        if name == "timeTo":
            return end
        if name == "timeFilter":
            return f"{argument} BETWEEN {start} AND {end}"
        raise ValueError(f"unsupported Grafana macro $__{name}()")

    return _MACRO.sub(macro, _VARIABLE.sub(variable, sql))
