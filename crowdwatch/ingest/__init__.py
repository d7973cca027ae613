"""The ingest service: validate MQTT counts and status, write them to PostgreSQL in batches."""

from __future__ import annotations

from crowdwatch.ingest.metrics import IngestStats
from crowdwatch.ingest.service import IngestService, run_ingest

__all__ = ["IngestService", "IngestStats", "run_ingest"]
