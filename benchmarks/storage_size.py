"""Bytes on disk per raw count row and per rollup row, for sizing a city's database.

Fills a fresh, migrated database (a private PostgreSQL, or ``--database-url``) with the
rows the ingest would write for ``--cameras`` cameras of ``--zones`` zones, one message per
camera every ``--interval`` seconds, until ``--rows`` zone rows exist (the ingest's own
COPY formatting, :mod:`crowdwatch.ingest.copy_rows`); refreshes the rollups as ingest does;
``VACUUM ANALYZE``; then prints the size of each table with its indexes, per row. The last
line is one JSON object.

    python benchmarks/storage_size.py --rows 1000000          # docs/scale.md's figures

Plain PostgreSQL path only as written: on a TimescaleDB server the schema is migrated for it
and the figures are the uncompressed chunks (compression is a job that runs after 2 days;
``hypertable_compression_stats('zone_counts')`` gives its result there).
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from crowdwatch.bench._load import bench_district, camera_specs
from crowdwatch.contracts.config import MqttConfig
from crowdwatch.contracts.messages import CountMessage, ZoneCount
from crowdwatch.devservices import start_pg_server
from crowdwatch.ingest import copy_rows
from crowdwatch.storage.rollups import refresh_rollups

TABLES = ("zone_counts", "zone_counts_1m", "zone_counts_15m", "zone_counts_1h")
BATCH_MESSAGES = 5000


def _fill(db_url: str, args: argparse.Namespace) -> int:
    """COPY the rows in; returns the number of zone rows."""
    config = bench_district(args.cameras, args.zones, MqttConfig(), db_url)
    from crowdwatch.storage.migrate import upgrade

    upgrade(db_url, config)
    specs = camera_specs(config)
    rounds = -(-args.rows // (len(specs) * args.zones))
    # Ends a minute ago so every rollup bucket but the current one is complete.
    start = datetime.now(UTC) - timedelta(seconds=rounds * args.interval + 60)
    lines: list[str] = []
    rows = 0
    with psycopg.connect(db_url) as conn:
        for seq in range(rounds):
            ts = start + timedelta(seconds=seq * args.interval)
            for spec in specs:
                message = CountMessage(
                    site_id=spec.site_id,
                    camera_id=spec.camera_id,
                    ts=ts,
                    interval_s=args.interval,
                    frames=int(10 * args.interval),
                    zones=[
                        ZoneCount(
                            zone_id=z,
                            count=(seq + i) % 40,
                            count_max=(seq + i) % 40 + 2,
                            count_mean=((seq + i) % 40) + 0.5,
                        )
                        for i, z in enumerate(spec.zone_ids)
                    ],
                )
                copy_rows.zone_lines(message, ts + timedelta(milliseconds=300), lines)
                if len(lines) >= BATCH_MESSAGES * args.zones:
                    rows += _copy(conn, lines)
        rows += _copy(conn, lines)
    return rows


def _copy(conn: psycopg.Connection, lines: list[str]) -> int:
    if not lines:
        return 0
    with (
        conn.cursor() as cur,
        cur.copy(f"COPY zone_counts ({copy_rows.ZONE_COLUMNS}) FROM STDIN") as c,
    ):
        c.write("".join(lines))
    conn.commit()
    n = len(lines)
    lines.clear()
    return n


def _sizes(db_url: str) -> dict[str, dict[str, float]]:
    """Per table: rows, bytes of heap+TOAST, of indexes, in all, and per row."""
    out: dict[str, dict[str, float]] = {}
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        for table in TABLES:
            rows = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            # A partitioned table (or hypertable) has no storage of its own: sum its parts.
            parts = [
                r[0]
                for r in conn.execute(
                    "SELECT relid::regclass::text FROM pg_partition_tree(%s::regclass) "
                    "WHERE isleaf",
                    (table,),
                )
            ]
            heap = index = 0
            for part in parts or [table]:
                size = conn.execute(
                    "SELECT pg_table_size(%s::regclass), pg_indexes_size(%s::regclass)",
                    (part, part),
                ).fetchone()
                assert size is not None
                heap += size[0]
                index += size[1]
            n = rows[0] if rows else 0
            out[table] = {
                "rows": n,
                "table_mb": round(heap / 2**20, 1),
                "index_mb": round(index / 2**20, 1),
                "bytes_per_row": round((heap + index) / n, 1) if n else 0.0,
                "index_bytes_per_row": round(index / n, 1) if n else 0.0,
            }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="zone rows to write")
    parser.add_argument("--cameras", type=int, default=250)
    parser.add_argument("--zones", type=int, default=4, help="zones per camera")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between messages")
    parser.add_argument("--database-url", help="admin URL of a PostgreSQL to use")
    args = parser.parse_args()
    pg = start_pg_server(args.database_url)
    try:
        db_url = pg.create_database()
        try:
            began = time.monotonic()
            rows = _fill(db_url, args)
            filled_s = time.monotonic() - began
            began = time.monotonic()
            with psycopg.connect(db_url, autocommit=True) as conn:
                refreshed = refresh_rollups(conn)
            refresh_s = time.monotonic() - began
            sizes = _sizes(db_url)
        finally:
            pg.drop_database(db_url)
    finally:
        pg.close()
    print(f"refresh of {rows:,} raw rows into the rollups: {refresh_s:.1f} s")
    for table, s in sizes.items():
        print(
            f"{table}: {s['rows']:,} rows, {s['table_mb']} MB table + {s['index_mb']} MB "
            f"indexes = {s['bytes_per_row']} bytes/row"
        )
    figures: dict[str, Any] = {
        "benchmark": "storage_size",
        "rows_written": rows,
        "fill_s": round(filled_s, 1),
        "zones": args.cameras * args.zones,
        "interval_s": args.interval,
        "refresh": str(refreshed),
        # One refresh of every minute written: the rollups' cost per raw row.
        "refresh_s": round(refresh_s, 1),
        "refresh_raw_rows_per_s": round(rows / refresh_s) if refresh_s else None,
        "tables": sizes,
    }
    print(json.dumps(figures, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
