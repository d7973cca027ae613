"""The alert engine and what the dispatcher does with alerts.

Nothing is imported here on purpose: the web process imports
:mod:`crowdwatch.analytics.actions` (acknowledge, escalate, history) and
:mod:`crowdwatch.analytics.silences`, and must not load the engine with them (import-linter
keeps it so).  The process entry point is :func:`crowdwatch.analytics.engine.run_alerts`; the
rule evaluation (:mod:`crowdwatch.analytics.evaluator`) and the notification planner
(:mod:`crowdwatch.analytics.planner`) are pure and have no I/O.
"""
