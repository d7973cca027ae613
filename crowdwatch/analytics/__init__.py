"""The alert engine: rules over the newest zone counts, recorded in PostgreSQL, sent over MQTT.

``run_alerts`` (in :mod:`crowdwatch.analytics.engine`) is the process entry point; the rule
evaluation itself (:mod:`crowdwatch.analytics.evaluator`) is pure and has no I/O.  What a
dispatcher does (acknowledge, escalate, read the history) is in
:mod:`crowdwatch.analytics.actions`; silences in :mod:`crowdwatch.analytics.silences`.
"""

from __future__ import annotations

from crowdwatch.analytics.engine import run_alerts

__all__ = ["run_alerts"]
