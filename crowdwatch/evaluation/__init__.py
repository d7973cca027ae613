"""Accuracy and speed of the edge counters: ``crowdwatch count``, ``eval``, ``bench edge|dense``.

Reads the research data sets under ``CROWDWATCH_SHARED_DIR/data`` (never shipped with the
package) and runs the edge's own detector, crowd counter (density map) and zone code on them.
"""
