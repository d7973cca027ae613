"""How full each kind of site is over a public holiday, as a share of its capacity.

Shapes drawn from how a coastal district fills on a golden-week day (local time)::

    beach        dawn ~3%, rising from 9, plateau 80-95% from 11 to 16, down by 19
    bus_stop     arrivals ~9-11 (moderate), the big evening queue home 16-19
    road         inbound morning peak ~9:30, outbound evening peak ~17:30
    scenic_spot  afternoon peak ~15:30, a smaller sunset bump

Sums of smooth bumps (logistic edges and Gaussians) keep the curves continuous, so a
compressed-time demo never jumps.
"""

from __future__ import annotations

import math

from crowdwatch.contracts.config import SiteKind

MAX_OCCUPANCY = 1.1
"""No expected value exceeds this (noise and per-site variation may, as real crowds do)."""


def _bump(hour: float, centre: float, width: float) -> float:
    return math.exp(-0.5 * ((hour - centre) / width) ** 2)


def _rise(hour: float, centre: float, width: float) -> float:
    return 1.0 / (1.0 + math.exp(-(hour - centre) / width))


def _beach(h: float) -> float:
    plateau = _rise(h, 9.8, 0.6) * _rise(-h, -17.6, 0.7)
    return 0.03 + 0.85 * plateau + 0.05 * _bump(h, 14.0, 1.5)


def _bus_stop(h: float) -> float:
    arrivals = 0.35 * _bump(h, 10.0, 0.9)
    midday = 0.12 * _bump(h, 13.5, 2.5)
    queue_home = 0.9 * _bump(h, 17.5, 1.2)
    return 0.03 + arrivals + midday + queue_home


def _road(h: float) -> float:
    inbound = 0.7 * _bump(h, 9.5, 1.1)
    daytime = 0.3 * _bump(h, 13.5, 3.0)
    outbound = 0.8 * _bump(h, 17.6, 1.2)
    return 0.05 + inbound + daytime + outbound


def _scenic_spot(h: float) -> float:
    return 0.04 + 0.75 * _bump(h, 15.5, 2.0) + 0.15 * _bump(h, 18.6, 0.6)


_CURVES = {
    SiteKind.BEACH: _beach,
    SiteKind.BUS_STOP: _bus_stop,
    SiteKind.ROAD: _road,
    SiteKind.SCENIC_SPOT: _scenic_spot,
}


def expected_occupancy(kind: SiteKind, local_hour: float) -> float:
    """The expected share of capacity in use at a local time of a holiday.

    Args:
        kind: the kind of site.
        local_hour: hours since local midnight, e.g. 13.5 for 13:30 (wraps modulo 24).

    Returns:
        A share of capacity in ``[0, MAX_OCCUPANCY]``.

    Example:
        >>> round(expected_occupancy(SiteKind.BEACH, 13.0), 2)
        0.92
    """
    hour = local_hour % 24.0
    return min(MAX_OCCUPANCY, max(0.0, _CURVES[kind](hour)))
