"""Bytes on disk per raw count row and per rollup row, for sizing a city's database.

Fills a fresh, migrated database (a private PostgreSQL, or ``--database-url``) with the
rows the ingest would write for ``--cameras`` cameras of ``--zones`` zones, one message per
camera every ``--interval`` seconds, until ``--rows`` zone rows exist (the ingest's own
COPY formatting, :mod:`crowdwatch.ingest.copy_rows`); refreshes the rollups as ingest does;
``VACUUM ANALYZE``; then prints the size of each table with its indexes, per row. The last
line is one JSON object.

    python benchmarks/storage_size.py --rows 1000000          # docs/scale.md's figures
    CROWDWATCH_PG_BINDIR=<PostgreSQL with TimescaleDB>/bin \
        python benchmarks/storage_size.py --rows 1000000 --compress

On a TimescaleDB server the schema is migrated for it and the table figures are the
uncompressed chunks.  ``--compress`` then compresses every raw chunk at once with the
settings of migration 3 (in production a job does it to chunks older than 2 days) and prints
``hypertable_compression_stats('zone_counts')`` before and after, with the time it took.

Counts follow a bounded random walk per zone (seeded), as a zone's count moves a few people
between messages: a sawtooth or constant would flatter the delta compression.
"""

from __future__ import annotations

import argparse
import json
import random
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
    rng = random.Random(0)
    counts = {(s.camera_id, z): rng.randrange(40) for s in specs for z in s.zone_ids}
    with psycopg.connect(db_url) as conn:
        for seq in range(rounds):
            ts = start + timedelta(seconds=seq * args.interval)
            for spec in specs:
                zones = []
                for z in spec.zone_ids:
                    n = min(80, max(0, counts[spec.camera_id, z] + rng.randint(-3, 3)))
                    counts[spec.camera_id, z] = n
                    zones.append(
                        ZoneCount(
                            zone_id=z,
                            count=n,
                            count_max=n + rng.randint(0, 3),
                            count_mean=round(max(0.0, n + rng.uniform(-1.5, 1.5)), 2),
                        )
                    )
                message = CountMessage(
                    site_id=spec.site_id,
                    camera_id=spec.camera_id,
                    ts=ts,
                    interval_s=args.interval,
                    frames=int(10 * args.interval),
                    zones=zones,
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


def _hypertable(conn: psycopg.Connection, table: str) -> str | None:
    """The hypertable holding ``table``'s rows on TimescaleDB; None on plain PostgreSQL."""
    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone() is None:
        return None
    row = conn.execute(
        "SELECT format('%%I.%%I', materialization_hypertable_schema, "
        "materialization_hypertable_name) FROM timescaledb_information.continuous_aggregates "
        "WHERE view_name = %s",
        (table,),
    ).fetchone()
    if row is not None:
        return str(row[0])
    row = conn.execute(
        "SELECT format('%%I.%%I', hypertable_schema, hypertable_name) "
        "FROM timescaledb_information.hypertables WHERE hypertable_name = %s",
        (table,),
    ).fetchone()
    return None if row is None else str(row[0])


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
            hypertable = _hypertable(conn, table)
            if hypertable is not None:
                # TimescaleDB: chunks inherit from the hypertable (a continuous aggregate
                # keeps its rows in one), so pg_partition_tree sees none of them.
                detailed = conn.execute(
                    "SELECT table_bytes + coalesce(toast_bytes, 0), index_bytes "
                    "FROM hypertable_detailed_size(%s::regclass)",
                    (hypertable,),
                ).fetchone()
                assert detailed is not None
                heap, index = int(detailed[0] or 0), int(detailed[1] or 0)
                parts = []
            for part in parts if hypertable is not None else parts or [table]:
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


def _compress(db_url: str) -> dict[str, Any] | None:
    """Compress every raw chunk now; TimescaleDB's figures before and after (None: plain path)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        if (
            conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
            is None
        ):
            return None
        began = time.monotonic()
        chunks = conn.execute(
            "SELECT count(compress_chunk(c, if_not_compressed => true)) "
            "FROM show_chunks('zone_counts') c"
        ).fetchone()
        took = time.monotonic() - began
        conn.execute("VACUUM ANALYZE")
        stats = conn.execute(
            "SELECT total_chunks, number_compressed_chunks, before_compression_total_bytes, "
            "after_compression_total_bytes FROM hypertable_compression_stats('zone_counts')"
        ).fetchone()
        (rows,) = conn.execute("SELECT count(*) FROM zone_counts").fetchone() or (0,)
    assert stats is not None and chunks is not None
    total, done, before, after = stats
    return {
        "chunks": total,
        "compressed_chunks": done,
        "rows": rows,
        "compress_s": round(took, 1),
        "before_bytes_per_row": round(before / rows, 1) if rows else None,
        "after_bytes_per_row": round(after / rows, 1) if rows else None,
        "ratio": round(before / after, 1) if after else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="zone rows to write")
    parser.add_argument("--cameras", type=int, default=250)
    parser.add_argument("--zones", type=int, default=4, help="zones per camera")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between messages")
    parser.add_argument("--database-url", help="admin URL of a PostgreSQL to use")
    parser.add_argument(
        "--compress",
        action="store_true",
        help="on TimescaleDB, compress every raw chunk and print the compression figures",
    )
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
            compressed = _compress(db_url) if args.compress else None
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
    if args.compress and compressed is None:
        print("--compress: this PostgreSQL has no TimescaleDB; nothing compressed")
    elif compressed is not None:
        print(
            f"zone_counts compressed ({compressed['compressed_chunks']} of "
            f"{compressed['chunks']} chunks, {compressed['compress_s']} s): "
            f"{compressed['before_bytes_per_row']} -> {compressed['after_bytes_per_row']} "
            f"bytes/row, {compressed['ratio']}x"
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
        "compression": compressed,
    }
    print(json.dumps(figures, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
