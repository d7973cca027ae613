"""Count messages as ``COPY ... FROM STDIN`` text, formatted once per message.

psycopg's ``Copy.write_row`` adapts every value of every row on its own (a type lookup and a
dumper call per value, then escaping); for a zone row that is 14 values, and a message's ts,
site, camera, interval, id and receive time are the same on each of its zone rows.  Here a
message's shared values are formatted once and each zone or line adds only its own, and a
batch goes to the server as one string: the same rows for a fraction of the CPU.

Text format (PostgreSQL ``COPY``): columns separated by a tab, rows ended by a newline,
``\\N`` for NULL, and a backslash, tab, newline or carriage return inside a value escaped.
Ids (site, camera, zone, line) match the config's id pattern (lower-case letters, digits,
``-`` and ``_``), which the contract enforces, so they need no escaping; the message id is
printable ASCII and may hold a backslash, so it is escaped.  Status messages (free text,
perhaps hostile) keep psycopg's own row adaptation in :mod:`crowdwatch.ingest.writer`.
"""

from __future__ import annotations

from datetime import datetime
from operator import attrgetter

from crowdwatch.contracts.messages import CountMessage
from crowdwatch.contracts.metrics import HELD_COUNT_COLUMNS, zone_metric_columns

NULL = "\\N"

_METRICS = zone_metric_columns()
ZONE_COLUMNS = (
    "ts, site_id, camera_id, interval_s, message_id, received_at, zone_id, method, "
    + ", ".join((*_METRICS, *HELD_COUNT_COLUMNS))
)
"""Per zone row: the message's values, then the zone's (its metrics as declared in
:mod:`crowdwatch.contracts.metrics`, in declaration order, then why its count was held back)."""

# One C-level call per zone for every metric's value (a tuple, in ZONE_COLUMNS order); each
# is written with repr, the shortest text that reads back as the same float (an int's digits).
_metric_values = attrgetter(*_METRICS)

LINE_COLUMNS = "ts, site_id, camera_id, line_id, in_count, out_count, message_id, received_at"

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _escaped(text: str) -> str:
    return text.translate(_ESCAPES) if "\\" in text else text


def _free_text(text: str) -> str:
    # A flag is free text from the edge (a sentence; any Unicode the contract lets through):
    # escaped in full, and NUL, which no PostgreSQL text holds, kept as the two characters
    # \0 (as the writer keeps a status detail).
    return text.replace("\x00", "\\0").translate(_ESCAPES)


def zone_lines(message: CountMessage, received_at: datetime, out: list[str]) -> None:
    """Append one COPY line per zone of ``message`` (columns :data:`ZONE_COLUMNS`) to ``out``.

    Args:
        message: a validated count message.
        received_at: when the ingest received it.
        out: the batch's lines so far.
    """
    head = (
        f"{message.ts.isoformat()}\t{message.site_id}\t{message.camera_id}\t"
        f"{message.interval_s!r}\t{_escaped(message.message_id)}\t{received_at.isoformat()}\t"
    )
    for z in message.zones:
        method = NULL if z.method is None else z.method.value
        values = "\t".join([NULL if v is None else repr(v) for v in _metric_values(z)])
        flag = NULL if z.count_flag is None else _free_text(z.count_flag)
        refused = NULL if z.flagged_count is None else repr(z.flagged_count)
        out.append(f"{head}{z.zone_id}\t{method}\t{values}\t{flag}\t{refused}\n")


def line_lines(message: CountMessage, received_at: datetime, out: list[str]) -> None:
    """Append one COPY line per counting line of ``message`` (columns :data:`LINE_COLUMNS`)."""
    if not message.lines:
        return
    head = f"{message.ts.isoformat()}\t{message.site_id}\t{message.camera_id}\t"
    tail = f"\t{_escaped(message.message_id)}\t{received_at.isoformat()}\n"
    for line in message.lines:
        out.append(f"{head}{line.line_id}\t{line.in_count}\t{line.out_count}{tail}")
