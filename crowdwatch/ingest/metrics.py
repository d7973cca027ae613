"""Counters of the ingest service, safe to update from paho's thread and the writer thread.

Read them three ways: :meth:`IngestMetrics.snapshot` (in process), :func:`prometheus_text`
(the ``/metrics`` endpoint of :mod:`crowdwatch.ingest.exposition`), and
:func:`stats_message` (the retained MQTT message on ``{prefix}/v1/_ingest/{worker}/stats``).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

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
        # Counted apart from the snapshot: message_in runs on paho's thread for every
        # message, where a dataclasses.replace of the whole snapshot costs as much as the
        # rest of the receive path; it is folded in by snapshot().
        self._messages_in = 0

    def message_in(self) -> None:
        with self._lock:
            self._messages_in += 1

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
            return replace(
                self._stats,
                messages_in=self._messages_in,
                queued=queued,
                clock_skew_s=skews,
                taken_at=utc_now(),
            )


CLOCK_SKEW_METRIC = "crowdwatch_ingest_clock_skew_seconds"
"""One series per camera: the only metric whose size grows with the district."""


def prometheus_text(stats: IngestStats, worker: str, names: Iterable[str] | None = None) -> str:
    """The Prometheus text exposition of one snapshot, written by ``prometheus_client``.

    The counters live in :class:`IngestMetrics` (one lock, one immutable snapshot that the
    MQTT stats message shares), so they are handed to ``prometheus_client`` as a custom
    collector rather than as its own ``Counter`` objects; the library does the format
    (escaping, ``NaN``, histogram buckets), which we wrote by hand before.

    Args:
        stats: a snapshot from :meth:`IngestMetrics.snapshot`.
        worker: value of the ``worker`` label.
        names: only these samples (Prometheus' ``/metrics?name[]=...``); None: all.

    Returns:
        The body of a ``/metrics`` response (text format 0.0.4).
    """
    # A collector without describe() is kept by name only with this flag, and a restricted
    # registry sees only the collectors it keeps.
    registry = CollectorRegistry(auto_describe=False, support_collectors_without_names=True)
    registry.register(_SnapshotCollector(stats, worker))
    if names is not None:
        return generate_latest(registry.restricted_registry(names)).decode("utf-8")
    return generate_latest(registry).decode("utf-8")


class _SnapshotCollector(Collector):
    """One snapshot as metric families (the names are the ones dashboards already use)."""

    def __init__(self, stats: IngestStats, worker: str) -> None:
        self._stats = stats
        self._worker = worker

    def collect(self) -> Iterator[Metric]:
        s, labels, worker = self._stats, ["worker"], [self._worker]
        counters = (
            ("crowdwatch_ingest_messages", "MQTT messages received.", s.messages_in),
            (
                "crowdwatch_ingest_rows_written",
                "Raw rows inserted (duplicates excluded).",
                s.rows_written,
            ),
            ("crowdwatch_ingest_dead_letters", "Messages stored in dead_letters.", s.dead_letters),
            ("crowdwatch_ingest_batches", "Batches committed.", s.batches),
            ("crowdwatch_ingest_db_errors", "Failed batch writes.", s.db_errors),
            (
                "crowdwatch_ingest_acked",
                "Messages acknowledged to the broker after commit.",
                s.acked,
            ),
        )
        for name, help_text, value in counters:
            counter = CounterMetricFamily(name, help_text, labels=labels)
            counter.add_metric(worker, value)
            yield counter
        queued = GaugeMetricFamily(
            "crowdwatch_ingest_queued", "Messages received, not committed.", labels=labels
        )
        queued.add_metric(worker, s.queued)
        yield queued
        lag = GaugeMetricFamily(
            "crowdwatch_ingest_lag_seconds",
            "Now minus the newest ts written (NaN before the first row).",
            labels=labels,
        )
        lag.add_metric(worker, math.nan if s.lag_s is None else s.lag_s)
        yield lag
        latency = HistogramMetricFamily(
            "crowdwatch_ingest_batch_latency_seconds",
            "Receipt of a batch's oldest message to its commit.",
            labels=labels,
        )
        buckets = [
            (f"{bound:g}", float(n))
            for bound, n in zip(LATENCY_BUCKETS_S, s.latency_buckets, strict=True)
        ]
        latency.add_metric(worker, [*buckets, ("+Inf", float(s.batches))], s.latency_sum_s)
        yield latency
        skew = GaugeMetricFamily(
            CLOCK_SKEW_METRIC,
            "Receive time minus message ts per camera, the smallest over the last minute: "
            "the edge clock's offset (negative: ahead).",
            labels=["worker", "site", "camera"],
        )
        for site, camera, seconds in s.clock_skew_s:
            skew.add_metric([self._worker, site, camera], seconds)
        yield skew


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
