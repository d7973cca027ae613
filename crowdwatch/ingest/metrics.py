"""Counters of the ingest service, safe to update from paho's thread and the writer thread."""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class IngestStats:
    """A snapshot of the counters since the service started."""

    messages_in: int = 0
    """MQTT messages received (valid or not)."""
    rows_written: int = 0
    """Rows inserted into zone_counts, line_counts and camera_status (duplicates excluded)."""
    dead_letters: int = 0
    """Messages stored in dead_letters."""
    batches: int = 0
    """Transactions committed."""
    db_errors: int = 0
    """Failed attempts to write a batch (each is retried)."""
    last_batch_latency_s: float = 0.0
    """From the receipt of the batch's oldest message to its commit."""
    queued: int = 0
    """Messages waiting for the writer when the snapshot was taken."""

    def summary(self) -> str:
        return (
            f"in={self.messages_in} rows={self.rows_written} dead={self.dead_letters} "
            f"batches={self.batches} db_errors={self.db_errors} queued={self.queued} "
            f"last_batch_latency={self.last_batch_latency_s * 1000:.0f}ms"
        )


class IngestMetrics:
    """Thread-safe counters; read them with :meth:`snapshot`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats = IngestStats()

    def message_in(self) -> None:
        with self._lock:
            self._stats = replace(self._stats, messages_in=self._stats.messages_in + 1)

    def batch_written(self, rows: int, dead_letters: int, latency_s: float) -> None:
        with self._lock:
            s = self._stats
            self._stats = replace(
                s,
                rows_written=s.rows_written + rows,
                dead_letters=s.dead_letters + dead_letters,
                batches=s.batches + 1,
                last_batch_latency_s=latency_s,
            )

    def db_error(self) -> None:
        with self._lock:
            self._stats = replace(self._stats, db_errors=self._stats.db_errors + 1)

    def snapshot(self, queued: int = 0) -> IngestStats:
        with self._lock:
            return replace(self._stats, queued=queued)
