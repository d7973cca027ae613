"""The district simulator: every ``source: simulated`` camera publishes holiday-shaped counts.

Entry point: :func:`crowdwatch.simulator.service.run_simulator`; the curves are in
:mod:`crowdwatch.simulator.curves` (:func:`expected_occupancy`).
"""

from __future__ import annotations

from crowdwatch.simulator.curves import expected_occupancy
from crowdwatch.simulator.service import run_simulator

__all__ = ["expected_occupancy", "run_simulator"]
