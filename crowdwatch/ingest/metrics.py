"""Counters of the ingest service, safe to update from paho's thread and the writer thread.

Read them three ways: :meth:`IngestMetrics.snapshot` (in process), :func:`prometheus_text`
(the ``/metrics`` endpoint of :mod:`crowdwatch.ingest.exposition`), and
:func:`stats_message` (the retained MQTT message on ``{prefix}/v1/_ingest/{worker}/stats``).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from crowdwatch.contracts.messages import IngestStatsMessage, utc_now

LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
"""Upper bounds of the batch latency histogram (seconds)."""


@dataclass(frozen=True, slots=True)
class IngestStats:
    """A snapshot of the counters since the service started."""

    messages_in: int = 0
    """MQTT messages received (valid or not; a redelivery counts again)."""
    rows_written: int = 0
    """Rows inserted into zone_counts, line_counts and camera_status (duplicates excluded)."""
    dead_letters: int = 0
    """Messages stored in dead_letters."""
    batches: int = 0
    """Transactions committed."""
    db_errors: int = 0
    """Failed attempts to write a batch (each is retried)."""
    acked: int = 0
    """Messages acknowledged to the broker after their batch committed."""
    last_batch_latency_s: float = 0.0
    """From the receipt of the batch's oldest message to its commit."""
    latency_sum_s: float = 0.0
    """Sum of every batch latency (Prometheus histogram ``_sum``)."""
    latency_buckets: tuple[int, ...] = (0,) * len(LATENCY_BUCKETS_S)
    """Batches with latency <= each of :data:`LATENCY_BUCKETS_S` (cumulative)."""
    newest_ts_written: datetime | None = None
    """Newest ``ts`` of a count or status message committed so far."""
    queued: int = 0
    """Messages waiting for the writer when the snapshot was taken."""
    clock_skew_s: tuple[tuple[str, str, float], ...] = ()
    """(site, camera, receive time minus ts): each edge clock's offset, negative when ahead
    (see :mod:`crowdwatch.ingest.clock`)."""
    taken_at: datetime | None = None

    @property
    def lag_s(self) -> float | None:
        """Snapshot time minus the newest ``ts`` written (None before the first row)."""
        if self.newest_ts_written is None or self.taken_at is None:
            return None
        return (self.taken_at - self.newest_ts_written).total_seconds()

    def summary(self) -> str:
        lag = "-" if self.lag_s is None else f"{self.lag_s:.1f}s"
        return (
            f"in={self.messages_in} rows={self.rows_written} dead={self.dead_letters} "
            f"batches={self.batches} db_errors={self.db_errors} queued={self.queued} "
            f"last_batch_latency={self.last_batch_latency_s * 1000:.0f}ms lag={lag}"
        )


class IngestMetrics:
    """Thread-safe counters; read them with :meth:`snapshot`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats = IngestStats()

    def message_in(self) -> None:
        with self._lock:
            self._stats = replace(self._stats, messages_in=self._stats.messages_in + 1)

    def batch_written(
        self, rows: int, dead_letters: int, latency_s: float, newest_ts: datetime | None
    ) -> None:
        """Count one committed batch.

        Args:
            rows: raw rows inserted.
            dead_letters: dead letters stored.
            latency_s: receipt of its oldest message to commit.
            newest_ts: newest message ``ts`` in it (None: only dead letters).
        """
        with self._lock:
            s = self._stats
            newest = s.newest_ts_written
            if newest_ts is not None and (newest is None or newest_ts > newest):
                newest = newest_ts
            self._stats = replace(
                s,
                rows_written=s.rows_written + rows,
                dead_letters=s.dead_letters + dead_letters,
                batches=s.batches + 1,
                last_batch_latency_s=latency_s,
                latency_sum_s=s.latency_sum_s + latency_s,
                latency_buckets=tuple(
                    n + (latency_s <= bound)
                    for n, bound in zip(s.latency_buckets, LATENCY_BUCKETS_S, strict=True)
                ),
                newest_ts_written=newest,
            )

    def acked(self, messages: int) -> None:
        with self._lock:
            self._stats = replace(self._stats, acked=self._stats.acked + messages)

    def db_error(self) -> None:
        with self._lock:
            self._stats = replace(self._stats, db_errors=self._stats.db_errors + 1)

    def snapshot(
        self, queued: int = 0, clock_skew: Mapping[tuple[str, str], float] | None = None
    ) -> IngestStats:
        """The counters now, with the queue length and the clock skews measured elsewhere."""
        skews = tuple((site, cam, s) for (site, cam), s in sorted((clock_skew or {}).items()))
        with self._lock:
            return replace(self._stats, queued=queued, clock_skew_s=skews, taken_at=utc_now())


def prometheus_text(stats: IngestStats, worker: str) -> str:
    """The Prometheus text exposition (format 0.0.4) of one snapshot.

    Args:
        stats: a snapshot from :meth:`IngestMetrics.snapshot`.
        worker: value of the ``worker`` label.

    Returns:
        The body of a ``/metrics`` response.
    """
    label = '{worker="%s"}' % _escape(worker)  # noqa: UP031
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, value: float | None) -> None:
        lines.extend(
            (
                f"# HELP {name} {help_text}",
                f"# TYPE {name} {kind}",
                f"{name}{label} {_number(value)}",
            )
        )

    metric(
        "crowdwatch_ingest_messages_total", "counter", "MQTT messages received.", stats.messages_in
    )
    metric(
        "crowdwatch_ingest_rows_written_total",
        "counter",
        "Raw rows inserted (duplicates excluded).",
        stats.rows_written,
    )
    metric(
        "crowdwatch_ingest_dead_letters_total",
        "counter",
        "Messages stored in dead_letters.",
        stats.dead_letters,
    )
    metric("crowdwatch_ingest_batches_total", "counter", "Batches committed.", stats.batches)
    metric("crowdwatch_ingest_db_errors_total", "counter", "Failed batch writes.", stats.db_errors)
    metric(
        "crowdwatch_ingest_acked_total",
        "counter",
        "Messages acknowledged to the broker after commit.",
        stats.acked,
    )
    metric("crowdwatch_ingest_queued", "gauge", "Messages received, not committed.", stats.queued)
    lag = stats.lag_s
    metric(
        "crowdwatch_ingest_lag_seconds",
        "gauge",
        "Now minus the newest ts written (NaN before the first row).",
        lag,
    )
    name = "crowdwatch_ingest_batch_latency_seconds"
    lines.append(f"# HELP {name} Receipt of a batch's oldest message to its commit.")
    lines.append(f"# TYPE {name} histogram")
    inner = label[1:-1]
    for bound, count in zip(LATENCY_BUCKETS_S, stats.latency_buckets, strict=True):
        lines.append(f'{name}_bucket{{{inner},le="{bound:g}"}} {count}')
    lines.append(f'{name}_bucket{{{inner},le="+Inf"}} {stats.batches}')
    lines.append(f"{name}_sum{label} {_number(stats.latency_sum_s)}")
    lines.append(f"{name}_count{label} {stats.batches}")
    name = "crowdwatch_ingest_clock_skew_seconds"
    lines.append(
        f"# HELP {name} Receive time minus message ts per camera, the smallest over the last "
        "minute: the edge clock's offset (negative: ahead)."
    )
    lines.append(f"# TYPE {name} gauge")
    for site, camera, skew in stats.clock_skew_s:
        where = f'{inner},site="{_escape(site)}",camera="{_escape(camera)}"'
        lines.append(f"{name}{{{where}}} {_number(skew)}")
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    """A Prometheus label value (backslash and double quote escaped)."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _number(value: float | None) -> str:
    if value is None:
        return "NaN"
    if isinstance(value, int):
        return str(value)  # exact: %g would round a large counter
    return repr(float(value))


def stats_message(stats: IngestStats, worker: str, *, stopped: bool = False) -> IngestStatsMessage:
    """The MQTT stats message of one snapshot.

    Args:
        stats: a snapshot from :meth:`IngestMetrics.snapshot`.
        worker: the worker's name (as in the topic).
        stopped: the last message, published at a clean stop.

    Returns:
        The message to publish retained on ``ingest_stats_topic(prefix, worker)``.
    """
    return IngestStatsMessage(
        worker=worker,
        ts=stats.taken_at or utc_now(),
        state="stopped" if stopped else "running",
        messages_in=stats.messages_in,
        rows_written=stats.rows_written,
        dead_letters=stats.dead_letters,
        batches=stats.batches,
        db_errors=stats.db_errors,
        queued=stats.queued,
        last_batch_latency_s=stats.last_batch_latency_s,
        newest_ts_written=stats.newest_ts_written,
        lag_s=stats.lag_s,
    )
