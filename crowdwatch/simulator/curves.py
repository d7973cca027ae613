"""How full each kind of site is over a public holiday, as a share of its capacity.

Each kind's curve (local time) is declared with the kind, in
:mod:`crowdwatch.contracts.site_kinds`; here it is bounded for the simulator.
"""

from __future__ import annotations

from crowdwatch.contracts.config import SiteKind
from crowdwatch.contracts.site_kinds import spec

MAX_OCCUPANCY = 1.1
"""No expected value exceeds this (noise and per-site variation may, as real crowds do)."""


def expected_occupancy(kind: SiteKind, local_hour: float) -> float:
    """The expected share of capacity in use at a local time of a holiday.

    Args:
        kind: the kind of site.
        local_hour: hours since local midnight, e.g. 13.5 for 13:30 (wraps modulo 24).

    Returns:
        A share of capacity in ``[0, MAX_OCCUPANCY]``.

    Example:
        >>> round(expected_occupancy(SiteKind.BEACH, 13.0), 2)
        0.91
    """
    hour = local_hour % 24.0
    return min(MAX_OCCUPANCY, max(0.0, spec(kind).curve(hour)))
