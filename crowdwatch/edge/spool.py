"""Store-and-forward: count messages the broker could not take wait on disk, then go in order.

While the broker is away (a publish raises :class:`BrokerError`: not connected, or no PUBACK
in time) the worker keeps counting and :class:`StoreAndForward` appends each count message
to a :class:`Spool`, a SQLite file in WAL mode, one per camera (``edge.spool.path``).  When
the broker takes a message again, the spool is replayed oldest first *before* the new
message, each row deleted only after the broker acknowledged it (QoS 1), so per-camera order
holds and nothing is deleted that the broker did not take.  A message whose PUBACK was lost
may reach the broker twice; its ``message_id`` makes ingest write it once.

Only counts are spooled.  Retained ``status`` and ``available`` messages say what is true
*now*: the next interval sends a fresh status, so an old one replayed later would only be
noise, and they go out directly or not at all.

The spool is bounded (``edge.spool.max_messages``): past the bound the oldest message is
dropped with a warning and counted.  A spool that cannot be written (a full disk, a folder
that cannot be created, a corrupt file) never stops counting: the error is logged, the
message counted as lost, and the camera's status detail says so (:meth:`StoreAndForward.health`).
A full disk (SQLite's ``SQLITE_FULL``: no space left, or the file's size limit) is logged
once as a warning naming the spool file, each message it costs is counted, and when space
returns the spool takes messages again and the warning says how many were lost meanwhile.
While the broker takes messages but the spool cannot be read or trimmed (on a full disk even
a delete may fail), new messages go straight to the broker ahead of the stuck backlog instead
of being lost: order gives way there, and ingest dates rows by ``ts`` and writes each
``message_id`` once (the head of the backlog may be sent again on each call until then).
"""

from __future__ import annotations

import enum
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from crowdwatch.contracts.config import SpoolConfig
from crowdwatch.contracts.errors import BrokerError, StorageError
from crowdwatch.edge.worker import Publish

logger = logging.getLogger(__name__)

FULL_REMINDER_EVERY = 100
"""While the spool stays full, a reminder warning after this many more lost messages."""

REPLAY_BATCH = 500
SLOW_FAILURE_S = 1.0
"""A refused publish that took this long waited out its PUBACK timeout: the link is dead
but the MQTT client has not noticed yet (it learns at its next keepalive, ~30 s)."""
QUIET_AFTER_SLOW_S = 15.0
"""After such a failure the broker is not tried again for this long.  Trying at every
interval would stall the camera's worker for the whole timeout per message (about one
count per 10 s instead of one a second, seen in tests/test_multi_host.py); meanwhile counts
go to the spool at once and are replayed, in order, at the first call after it."""
"""Most spooled messages replayed per publish call, so a long backlog never stalls counting
for long; the rest follow on the next calls (new messages queue behind them)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: replay order = append order
    topic   TEXT    NOT NULL,
    payload BLOB    NOT NULL,
    retain  INTEGER NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class SpooledMessage:
    """One message waiting in the spool; ``seq`` orders them and removes one."""

    seq: int
    topic: str
    payload: bytes
    retain: bool


class SpoolFullError(StorageError):
    """The spool could not take a message: its disk is full (or the file hit a size limit)."""


def spool_path(folder: str | Path, site_id: str, camera_id: str) -> Path:
    """The spool file of one camera: ``FOLDER/SITE_CAMERA.spool.sqlite``."""
    return Path(folder) / f"{site_id}_{camera_id}.spool.sqlite"


class Spool:
    """A bounded, durable FIFO of MQTT messages in one SQLite file (WAL, synchronous FULL).

    Used by one thread at a time (the camera's worker), though it may be opened in another.

    Args:
        path: the SQLite file; its folder is created when missing.
        max_messages: past this many, :meth:`append` drops the oldest.

    Raises:
        StorageError: the folder or file cannot be created, or the file is not a spool.
    """

    def __init__(self, path: Path, max_messages: int) -> None:
        if max_messages < 1:
            raise ValueError(f"max_messages must be at least 1, got {max_messages}")
        self.path = path
        self.max_messages = max_messages
        self.dropped = 0
        """Messages dropped because the bound was hit (since this object was opened)."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot open edge spool {path}: {exc}") from exc
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a power cut on the edge box must not lose what the spool said it kept.
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute(_SCHEMA)
            self._length = int(self._conn.execute("SELECT count(*) FROM outbox").fetchone()[0])
        except sqlite3.Error as exc:
            self._conn.close()
            raise StorageError(f"cannot use edge spool {path}: {exc}") from exc

    def __len__(self) -> int:
        return self._length

    def append(self, topic: str, payload: bytes, retain: bool) -> None:
        """Add a message at the end, dropping the oldest ones past ``max_messages``.

        Args:
            topic: the MQTT topic.
            payload: the encoded message.
            retain: its retain flag.

        Raises:
            StorageError: the write failed (e.g. the disk is full); the spool is unchanged.
        """
        excess = self._length + 1 - self.max_messages
        try:
            with self._transaction():
                if excess > 0:
                    self._conn.execute(
                        "DELETE FROM outbox WHERE seq IN "
                        "(SELECT seq FROM outbox ORDER BY seq LIMIT ?)",
                        (excess,),
                    )
                self._conn.execute(
                    "INSERT INTO outbox (topic, payload, retain) VALUES (?, ?, ?)",
                    (topic, payload, int(retain)),
                )
        except sqlite3.Error as exc:
            if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                raise SpoolFullError(
                    f"edge spool {self.path} is full (no space left on its disk): {exc}"
                ) from exc
            raise StorageError(f"cannot write edge spool {self.path}: {exc}") from exc
        if excess > 0:
            self.dropped += excess
            self._length -= excess
            logger.warning(
                "edge spool %s is full (%d messages): dropped the oldest, %d dropped so far",
                self.path,
                self.max_messages,
                self.dropped,
            )
        self._length += 1

    def peek(self, limit: int = 1) -> list[SpooledMessage]:
        """The oldest ``limit`` messages, oldest first (they stay in the spool).

        Raises:
            StorageError: the file cannot be read.
        """
        try:
            rows = self._conn.execute(
                "SELECT seq, topic, payload, retain FROM outbox ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read edge spool {self.path}: {exc}") from exc
        return [SpooledMessage(int(s), str(t), bytes(p), bool(r)) for s, t, p, r in rows]

    def remove(self, seq: int) -> None:
        """Delete one message (after the broker acknowledged it).

        Raises:
            StorageError: the delete failed.
        """
        try:
            deleted = self._conn.execute("DELETE FROM outbox WHERE seq = ?", (seq,)).rowcount
        except sqlite3.Error as exc:
            raise StorageError(f"cannot delete from edge spool {self.path}: {exc}") from exc
        self._length -= deleted

    def close(self) -> None:
        """Close the file (what it holds stays for the next start)."""
        self._conn.close()

    def _transaction(self) -> _Transaction:
        return _Transaction(self._conn)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on an error (autocommit connection)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self._conn.execute("COMMIT")
        elif self._conn.in_transaction:
            self._conn.execute("ROLLBACK")


class StoreAndForward:
    """A ``publish(topic, payload, retain)`` that spools count messages the broker refused.

    Args:
        publish: the direct publish (raises BrokerError when the broker did not take it).
        spool: where refused messages wait; ``None`` when it could not be opened.
        spool_error: why there is no spool (said in :meth:`health`).

    Calls never raise for non-retained messages; retained ones go out directly and raise
    BrokerError as ``publish`` does (they are not spooled: only the latest matters).
    """

    def __init__(
        self,
        publish: Publish,
        spool: Spool | None,
        *,
        spool_error: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._publish = publish
        self._clock = clock
        self._quiet_until = float("-inf")  # no broker attempts before this (a dead link)
        self.spool = spool
        self._error = spool_error
        self.lost = 0
        """Messages neither published nor spooled (no usable spool, or a full one)."""
        self._broker_away = False
        self._lost_while_full: int | None = None  # None: the spool is not full

    def __call__(self, topic: str, payload: bytes, retain: bool) -> None:
        if retain:
            # Status and availability: not spooled, but held to the same quiet time, or each
            # interval's status would wait out the timeout on a dead link all the same.
            if self._clock() < self._quiet_until:
                raise BrokerError(
                    f"broker unreachable (a publish timed out less than "
                    f"{QUIET_AFTER_SLOW_S:g} s ago): message on {topic} not sent"
                )
            started = self._clock()
            try:
                self._publish(topic, payload, retain)
            except BrokerError:
                self._note_failure(started)
                raise
            return
        backlog = self._replay()
        # STUCK: the spool cannot be read or trimmed (a full disk); a broker that takes
        # messages gets the new one directly rather than have it lost behind the backlog.
        if backlog is not _Backlog.WAITING and self._publish_now(topic, payload):
            return
        self._keep(topic, payload, retain)

    def health(self) -> str:
        """A line for the status detail: backlog, drops, losses, spool errors; "" when all is well."""
        parts = []
        if self.spool is not None and len(self.spool):
            parts.append(f"{len(self.spool)} messages spooled for the broker")
        if self.spool is not None and self.spool.dropped:
            parts.append(
                f"{self.spool.dropped} oldest dropped at the bound of {self.spool.max_messages}"
            )
        if self.lost:
            parts.append(f"{self.lost} messages lost")
        if self._error:
            parts.append(f"spool error: {self._error}")
        return "; ".join(parts)

    def close(self) -> None:
        """Close the spool (what is left replays at the next start)."""
        if self.spool is not None:
            self.spool.close()

    def _publish_now(self, topic: str, payload: bytes) -> bool:
        started = self._clock()
        if started < self._quiet_until:
            return False
        try:
            self._publish(topic, payload, False)
        except BrokerError as exc:
            if not self._broker_away:
                logger.warning("broker away (%s): spooling count messages", exc)
            self._broker_away = True
            self._note_failure(started)
            return False
        return True

    def _note_failure(self, started: float) -> None:
        if self._clock() - started >= SLOW_FAILURE_S:
            self._quiet_until = self._clock() + QUIET_AFTER_SLOW_S

    def _replay(self) -> _Backlog:
        """Send what the spool holds, oldest first; what is left of the backlog then."""
        if self.spool is None or not len(self.spool):
            return _Backlog.EMPTY
        try:
            backlog = self.spool.peek(REPLAY_BATCH)
            for message in backlog:
                if not self._publish_now(message.topic, message.payload):
                    return _Backlog.WAITING
                self.spool.remove(message.seq)
        except StorageError as exc:
            self._fail(exc)
            return _Backlog.STUCK
        if self._broker_away and not len(self.spool):
            logger.info("broker back: spool %s replayed", self.spool.path)
            self._broker_away = False
        return _Backlog.WAITING if len(self.spool) else _Backlog.EMPTY

    def _keep(self, topic: str, payload: bytes, retain: bool) -> None:
        if self.spool is None:
            self.lost += 1
            logger.error(
                "no usable edge spool (%s): message on %s lost, %d so far",
                self._error,
                topic,
                self.lost,
            )
            return
        try:
            self.spool.append(topic, payload, retain)
        except SpoolFullError as exc:
            self.lost += 1
            self._error = str(exc)
            self._full(exc)
            return
        except StorageError as exc:
            self.lost += 1
            self._fail(exc)
            logger.error("message on %s lost, %d so far", topic, self.lost)
            return
        if self._lost_while_full is not None:
            logger.warning(
                "edge spool %s takes messages again: %d count messages were lost while it was full",
                self.spool.path,
                self._lost_while_full,
            )
            self._lost_while_full = None
        self._error = None

    def _full(self, exc: SpoolFullError) -> None:
        """Warn once when the spool fills up, then every FULL_REMINDER_EVERY lost messages."""
        if self._lost_while_full is None:
            self._lost_while_full = 0
            logger.warning(
                "%s; counting goes on, but count messages the broker cannot take are lost "
                "(and counted) until space returns",
                exc,
            )
        self._lost_while_full += 1
        if self._lost_while_full % FULL_REMINDER_EVERY == 0:
            assert self.spool is not None
            logger.warning(
                "edge spool %s still full: %d count messages lost since it filled up",
                self.spool.path,
                self._lost_while_full,
            )

    def _fail(self, exc: StorageError) -> None:
        logger.error("edge spool failed: %s", exc)
        self._error = str(exc)


class _Backlog(enum.Enum):
    """What is left in the spool after a replay attempt."""

    EMPTY = "empty"
    """nothing: new messages go straight to the broker"""
    WAITING = "waiting"
    """messages the broker did not take yet: new ones queue behind them"""
    STUCK = "stuck"
    """the spool cannot be read or trimmed: new ones go to the broker if it takes them"""


def open_store_and_forward(
    publish: Publish, config: SpoolConfig | None, site_id: str, camera_id: str
) -> StoreAndForward:
    """Wrap a camera's publish with its spool (``edge.spool``).

    Never raises: a spool that cannot be opened is logged and reported in :meth:`health`,
    and counting goes on (messages the broker refuses are then lost).

    Args:
        publish: the direct publish of the camera's MQTT connection.
        config: ``edge.spool``; ``None``: no spool (refused messages are lost, as counted).
        site_id: the camera's site.
        camera_id: the camera.

    Returns:
        The store-and-forward publish; close it when the worker has stopped.
    """
    if config is None:
        return StoreAndForward(publish, None, spool_error="edge.spool is not configured")
    path = spool_path(config.path, site_id, camera_id)
    try:
        spool = Spool(path, config.max_messages)
    except StorageError as exc:
        logger.error("camera %s/%s: %s; counting goes on without it", site_id, camera_id, exc)
        return StoreAndForward(publish, None, spool_error=str(exc))
    if len(spool):
        logger.info("camera %s/%s: %d spooled messages to replay", site_id, camera_id, len(spool))
    return StoreAndForward(publish, spool)
