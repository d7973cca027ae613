"""Accuracy and speed of the edge counter: ``crowdwatch count``, ``eval`` and ``bench edge``.

Reads the research data sets under ``CROWDWATCH_SHARED_DIR/data`` (never shipped with the
package) and runs the edge's own detector and zone code on them.
"""
