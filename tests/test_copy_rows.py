"""Pre-formatted COPY text stores exactly what psycopg's own row adaptation stores.

Each message goes into a scratch copy of ``zone_counts``/``line_counts`` twice, once through
``Copy.write_row`` (the reference) and once as :mod:`crowdwatch.ingest.copy_rows` text, in a
real PostgreSQL; the stored rows must be equal column by column.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from factories import make_config

from crowdwatch.contracts.messages import CountMessage, CountMethod, LineCount, ZoneCount
from crowdwatch.contracts.metrics import zone_metric_columns
from crowdwatch.ingest import copy_rows
from crowdwatch.storage.migrate import upgrade

AT = datetime(2026, 8, 14, 10, 0, 0, 123456, tzinfo=UTC)


def _messages() -> list[CountMessage]:
    plain = CountMessage(
        site_id="stop-a",
        camera_id="cam1",
        ts=AT - timedelta(seconds=1),
        interval_s=5.0,
        frames=50,
        zones=[ZoneCount(zone_id="platform", count=3, count_max=4, count_mean=3.25)],
    )
    full = CountMessage(
        message_id="id\\with\\backslashes\\t",
        site_id="beach-1",
        camera_id="cam_2",
        ts=AT + timedelta(minutes=3, microseconds=7),
        interval_s=0.1,
        frames=1,
        zones=[
            ZoneCount(
                zone_id="z-0",
                count=100_000,
                count_max=100_000,
                count_mean=1 / 3,
                longest_wait_s=86_400.0,
                median_wait_s=0.0,
                density_per_m2=1e-9,
                method=CountMethod.DENSE,
                # Free text from the edge: every character COPY text must escape, NUL too.
                count_flag="implausible:\t1167 people\non 64 m² \\ 夜\r\x00 end",
                flagged_count=1167,
            ),
            ZoneCount(
                zone_id="z-1", count=0, count_max=0, count_mean=0.0, method=CountMethod.DETECT
            ),
        ],
        lines=[
            LineCount(line_id="gate", in_count=7, out_count=0),
            LineCount(line_id="exit_2", in_count=0, out_count=100_000),
        ],
    )
    return [plain, full]


def _reference_zone_rows(message: CountMessage) -> list[tuple[object, ...]]:
    return [
        (
            message.ts,
            message.site_id,
            message.camera_id,
            message.interval_s,
            message.message_id,
            AT,
            z.zone_id,
            None if z.method is None else z.method.value,
            *(getattr(z, column) for column in zone_metric_columns()),
            # PostgreSQL text holds no NUL: kept as the two characters \0, as in status details.
            None if z.count_flag is None else z.count_flag.replace("\x00", "\\0"),
            z.flagged_count,
        )
        for z in message.zones
    ]


def _reference_line_rows(message: CountMessage) -> list[tuple[object, ...]]:
    return [
        (
            message.ts,
            message.site_id,
            message.camera_id,
            x.line_id,
            x.in_count,
            x.out_count,
            message.message_id,
            AT,
        )
        for x in message.lines
    ]


@pytest.mark.parametrize(
    ("table", "columns"),
    [("zone_counts", copy_rows.ZONE_COLUMNS), ("line_counts", copy_rows.LINE_COLUMNS)],
)
def test_preformatted_rows_store_what_write_row_stores(
    db_url: str, table: str, columns: str
) -> None:
    upgrade(db_url, make_config())
    lines: list[str] = []
    reference: list[tuple[object, ...]] = []
    for message in _messages():
        if table == "zone_counts":
            copy_rows.zone_lines(message, AT, lines)
            reference += _reference_zone_rows(message)
        else:
            copy_rows.line_lines(message, AT, lines)
            reference += _reference_line_rows(message)
    assert len(lines) == len(reference)
    with psycopg.connect(db_url, autocommit=True) as conn, conn.cursor() as cur:
        for name in ("ours", "theirs"):
            cur.execute(f"CREATE TEMP TABLE {name} (LIKE {table})")
        with cur.copy(f"COPY ours ({columns}) FROM STDIN") as copy:
            copy.write("".join(lines))
        with cur.copy(f"COPY theirs ({columns}) FROM STDIN") as copy:
            for row in reference:
                copy.write_row(row)
        order = f"ORDER BY {columns}"
        ours = cur.execute(f"SELECT {columns} FROM ours {order}").fetchall()
        theirs = cur.execute(f"SELECT {columns} FROM theirs {order}").fetchall()
    assert ours == theirs
    assert len(ours) == len(reference)
