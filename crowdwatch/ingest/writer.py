"""Write a batch of validated messages to PostgreSQL in one transaction.

Per batch: ``COPY`` the rows into session-private staging tables, then
``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` into the raw tables (the message id is in
every primary key, so a redelivered message inserts nothing), then move ``zone_latest`` and
``camera_latest_status`` forward, never backwards: a late or out-of-order message is stored
but does not replace a newer "latest".  What counts as newer is the ``ts`` but never later
than the receive time (:func:`~crowdwatch.contracts.messages.as_of`), and the latest rows
carry that time: a message stamped minutes ahead cannot stay "latest" over the true ones
that follow it (a zone frozen on the pages and alerts).  Dead letters are written in the
same transaction: the first :data:`~crowdwatch.ingest.validate.KEPT_PAYLOAD_BYTES` of the
payload, its size and SHA-256, and the reason.

Errors come in two kinds.  A lost connection (or a server shutting down) raises
:class:`StorageError`; the caller reconnects and retries the same batch.  A statement the
database refuses for one message's data (a value the contract let through but a column does
not take) would fail the batch forever, so the batch is retried message by message and the
refused ones become dead letters.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from crowdwatch.contracts.errors import StorageError
from crowdwatch.contracts.messages import CountMessage, clipped
from crowdwatch.contracts.metrics import HELD_COUNT_COLUMNS, zone_metric_columns
from crowdwatch.ingest import copy_rows
from crowdwatch.ingest.validate import KEPT_PAYLOAD_BYTES, Accepted, Rejected
from crowdwatch.storage.db import connect

logger = logging.getLogger(__name__)

Item = Accepted | Rejected

_ZONE_COLS = copy_rows.ZONE_COLUMNS
_LINE_COLS = copy_rows.LINE_COLUMNS
_STATUS_COLS = (
    "ts, site_id, camera_id, state, fps, inference_ms, dropped_frames, detail, message_id,"
    " received_at"
)

# ON COMMIT DELETE ROWS: the staging tables live as long as the connection and are empty
# at the start of every batch, also after a rolled-back one.
_CREATE_STAGING = (
    "CREATE TEMP TABLE IF NOT EXISTS stage_zone_counts"
    " (LIKE zone_counts INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
    "CREATE TEMP TABLE IF NOT EXISTS stage_line_counts"
    " (LIKE line_counts INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
    "CREATE TEMP TABLE IF NOT EXISTS stage_camera_status"
    " (LIKE camera_status INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
)

_INSERT_RAW = (
    f"INSERT INTO zone_counts ({_ZONE_COLS}) SELECT {_ZONE_COLS} FROM stage_zone_counts"
    " ON CONFLICT DO NOTHING",
    f"INSERT INTO line_counts ({_LINE_COLS}) SELECT {_LINE_COLS} FROM stage_line_counts"
    " ON CONFLICT DO NOTHING",
    f"INSERT INTO camera_status ({_STATUS_COLS}) SELECT {_STATUS_COLS} FROM stage_camera_status"
    " ON CONFLICT DO NOTHING",
)

# The zone's own values: its method, every metric (crowdwatch.contracts.metrics) and why its
# count was held back; a newer message without a flag clears the flag of the one before.
_ZONE_VALUES = ("method", *zone_metric_columns(), *HELD_COUNT_COLUMNS)

# DISTINCT ON: one candidate per key, or ON CONFLICT DO UPDATE would touch a row twice.
_UPSERT_ZONE_LATEST = f"""
INSERT INTO zone_latest (site_id, zone_id, camera_id, ts, {", ".join(_ZONE_VALUES)})
SELECT DISTINCT ON (site_id, zone_id)
       site_id, zone_id, camera_id, least(ts, received_at), {", ".join(_ZONE_VALUES)}
FROM stage_zone_counts
ORDER BY site_id, zone_id, least(ts, received_at) DESC, ts DESC, message_id
ON CONFLICT (site_id, zone_id) DO UPDATE SET
    camera_id = EXCLUDED.camera_id, ts = EXCLUDED.ts,
    {", ".join(f"{c} = EXCLUDED.{c}" for c in _ZONE_VALUES)}
WHERE zone_latest.ts < EXCLUDED.ts
"""

_UPSERT_CAMERA_LATEST = """
INSERT INTO camera_latest_status
    (site_id, camera_id, ts, state, fps, inference_ms, dropped_frames, detail)
SELECT DISTINCT ON (site_id, camera_id)
       site_id, camera_id, least(ts, received_at), state, fps, inference_ms, dropped_frames,
       detail
FROM stage_camera_status
ORDER BY site_id, camera_id, least(ts, received_at) DESC, ts DESC, message_id
ON CONFLICT (site_id, camera_id) DO UPDATE SET
    ts = EXCLUDED.ts, state = EXCLUDED.state, fps = EXCLUDED.fps,
    inference_ms = EXCLUDED.inference_ms, dropped_frames = EXCLUDED.dropped_frames,
    detail = EXCLUDED.detail
WHERE camera_latest_status.ts < EXCLUDED.ts
"""


@dataclass(frozen=True, slots=True)
class BatchResult:
    rows_written: int
    """Raw rows inserted (duplicates of earlier messages not counted)."""
    dead_letters: int


def _is_connection_error(exc: psycopg.Error) -> bool:
    # OperationalError covers lost connections, shutdowns, deadlocks and serialization
    # failures: all worth retrying as they are.  Anything else is about the data.
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)


def _text(value: str) -> str:
    # PostgreSQL text cannot hold NUL nor a lone surrogate (not UTF-8); a reason quoting a
    # hostile payload might hold either.
    escaped = value.replace("\x00", "\\0")
    return escaped.encode("utf-8", "backslashreplace").decode("utf-8")


class BatchWriter:
    """One connection that writes batches; reconnects lazily after a failure.

    Args:
        url: libpq URL of a migrated database.
    """

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: psycopg.Connection | None = None

    def write(self, batch: Sequence[Item]) -> BatchResult:
        """Write every item of ``batch`` in one transaction.

        Args:
            batch: accepted messages and dead letters.

        Returns:
            How many raw rows and dead letters were written.

        Raises:
            StorageError: the database is unreachable or the connection broke; nothing of
                the batch was committed, so writing it again is safe.
        """
        try:
            return self._write(batch)
        except psycopg.Error as exc:
            if _is_connection_error(exc):
                self.close()
                raise StorageError(f"cannot write batch: {exc}") from exc
            logger.warning("database refused a batch (%s); writing it message by message", exc)
        return self._write_one_by_one(batch)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            conn = connect(self._url, autocommit=True)
            try:
                for statement in _CREATE_STAGING:
                    conn.execute(statement)
            except psycopg.Error:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _write(self, batch: Sequence[Item]) -> BatchResult:
        conn = self._connection()
        accepted = [i for i in batch if isinstance(i, Accepted)]
        rejected = [i for i in batch if isinstance(i, Rejected)]
        with conn.transaction(), conn.cursor() as cur:
            rows = self._stage_and_insert(cur, accepted)
            if rejected:
                with cur.copy(
                    "COPY dead_letters (received_at, topic, payload, payload_bytes,"
                    " payload_sha256, reason) FROM STDIN"
                ) as copy:
                    for item in rejected:
                        env = item.envelope
                        copy.write_row(
                            (
                                env.received_at,
                                _text(clipped(env.topic, 200)),
                                env.payload[:KEPT_PAYLOAD_BYTES],
                                env.size,
                                env.sha256(),
                                _text(clipped(item.reason)),
                            )
                        )
        return BatchResult(rows_written=rows, dead_letters=len(rejected))

    def _stage_and_insert(
        self,
        cur: psycopg.Cursor[tuple[object, ...]],
        accepted: Sequence[Accepted],
    ) -> int:
        zone_lines: list[str] = []
        line_lines: list[str] = []
        status_rows: list[tuple[object, ...]] = []
        for item in accepted:
            msg, at = item.message, item.envelope.received_at
            if isinstance(msg, CountMessage):
                copy_rows.zone_lines(msg, at, zone_lines)
                copy_rows.line_lines(msg, at, line_lines)
            else:
                status_rows.append(
                    (
                        msg.ts,
                        msg.site_id,
                        msg.camera_id,
                        msg.state.value,
                        msg.fps,
                        msg.inference_ms,
                        msg.dropped_frames,
                        _text(msg.detail),
                        msg.message_id,
                        at,
                    )
                )
        written = 0
        no_rows: list[tuple[object, ...]] = []
        staged: tuple[tuple[str, str, list[str], list[tuple[object, ...]]], ...] = (
            ("stage_zone_counts", _ZONE_COLS, zone_lines, no_rows),
            ("stage_line_counts", _LINE_COLS, line_lines, no_rows),
            ("stage_camera_status", _STATUS_COLS, [], status_rows),
        )
        for (table, cols, lines, rows), insert in zip(staged, _INSERT_RAW, strict=True):
            if not lines and not rows:
                continue
            with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                if lines:
                    # Pre-formatted (crowdwatch.ingest.copy_rows): one write for the batch.
                    copy.write("".join(lines))
                for row in rows:
                    copy.write_row(row)
            cur.execute(insert)
            written += max(cur.rowcount, 0)
        if zone_lines:
            cur.execute(_UPSERT_ZONE_LATEST)
        if status_rows:
            cur.execute(_UPSERT_CAMERA_LATEST)
        return written

    def _write_one_by_one(self, batch: Sequence[Item]) -> BatchResult:
        rows = dead = 0
        refused: list[Item] = []
        for item in batch:
            try:
                result = self._write([item])
                rows += result.rows_written
                dead += result.dead_letters
            except psycopg.Error as exc:
                if _is_connection_error(exc):
                    self.close()
                    raise StorageError(f"cannot write batch: {exc}") from exc
                if isinstance(item, Rejected):
                    # Not even the dead letter fits: nothing left to store it in.
                    logger.error("cannot store dead letter from %s: %s", item.envelope.topic, exc)
                    continue
                reason = f"database refused the message: {str(exc).strip()}"
                refused.append(Rejected(item.envelope, reason))
        try:
            if refused:
                dead += self._write(refused).dead_letters
        except psycopg.Error as exc:
            self.close()
            raise StorageError(f"cannot write dead letters: {exc}") from exc
        return BatchResult(rows_written=rows, dead_letters=dead)
