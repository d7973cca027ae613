"""A simple forecast a dispatcher can check in their head: where will this zone be in H minutes?

Two ingredients, blended:

1. **The recent trend.**  A least-squares straight line through the zone's counts over the
   rule's ``window_s`` (default 10 min) gives a rate in people per minute; the trend forecast
   is ``count_now + rate * H``.  At least 3 samples spanning a third of the window are needed,
   otherwise there is no trend (and no forecast).
2. **The reference holiday.**  Where ``alerts.reference_days`` lists a past holiday and the
   1-minute rollups still hold it, the zone's mean count around the same local time on that
   day (``ref_now``) and H minutes later (``ref_then``) say how the crowd grew then; applied
   as a ratio to today's count, ``count_now * ref_then / ref_now`` is the holiday forecast.

The forecast is the mean of the two (the trend alone without a reference), never below zero.
Its value for a ``forecast_occupancy`` rule is ``forecast / capacity``: with ``fire_at: 1.0``
the rule fires when the zone is forecast to be full within H minutes.  The alert text says
what went in: "forecast 100% in 15 min (trend +12/10 min, last holiday +30%)".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class ReferenceTrend:
    """The reference holiday around the same local time."""

    now_mean: float
    """mean count around the same local time as now"""
    then_mean: float
    """mean count around the same local time H minutes later"""


@dataclass(frozen=True, slots=True)
class Forecast:
    """A zone's expected count ``horizon_min`` minutes ahead, with what went into it."""

    count_now: int
    horizon_min: float
    rate_per_min: float
    """the recent trend, people per minute"""
    trend_count: float
    reference_count: float | None
    """the holiday forecast, when a reference day had data"""
    expected: float
    capacity: int

    @property
    def occupancy(self) -> float:
        """Expected share of capacity at the horizon."""
        return self.expected / self.capacity

    @property
    def minutes_to_full(self) -> float | None:
        """Minutes until capacity at the blended rate; ``None`` when not rising."""
        rate = (self.expected - self.count_now) / self.horizon_min
        if self.count_now >= self.capacity:
            return 0.0
        if rate <= 0:
            return None
        return (self.capacity - self.count_now) / rate


def trend_rate(samples: Sequence[tuple[datetime, int]], window_s: float) -> float | None:
    """People per minute: the slope of a least-squares line through ``samples``.

    Args:
        samples: ``(ts, count)`` oldest first, over the window.
        window_s: the window the samples should cover.

    Returns:
        The slope, or ``None`` with fewer than 3 samples or less than a third of the window.
    """
    if len(samples) < 3:
        return None
    t0 = samples[0][0]
    xs = [(ts - t0).total_seconds() / 60 for ts, _ in samples]
    if xs[-1] * 60 < window_s / 3:
        return None
    ys = [float(c) for _, c in samples]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    if var == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var


def forecast(
    samples: Sequence[tuple[datetime, int]],
    count_now: int,
    capacity: int,
    horizon_min: float,
    window_s: float,
    reference: ReferenceTrend | None = None,
) -> Forecast | None:
    """Blend the recent trend with the reference holiday (see the module docstring).

    Args:
        samples: the zone's recent ``(ts, count)``, oldest first.
        count_now: the newest count.
        capacity: the zone's capacity.
        horizon_min: minutes ahead.
        window_s: the trend window.
        reference: the reference holiday around this local time, if any.

    Returns:
        The forecast, or ``None`` without a trend.

    Example:
        >>> from datetime import UTC, datetime, timedelta
        >>> t = datetime(2026, 10, 1, tzinfo=UTC)
        >>> ramp = [(t + timedelta(minutes=m), 40 + 2 * m) for m in range(11)]
        >>> f = forecast(ramp, 60, 100, 15, 600)
        >>> round(f.expected), round(f.occupancy, 2)
        (90, 0.9)
    """
    rate = trend_rate(samples, window_s)
    if rate is None:
        return None
    trend_count = max(0.0, count_now + rate * horizon_min)
    reference_count = None
    if reference is not None and reference.now_mean > 0:
        reference_count = count_now * reference.then_mean / reference.now_mean
    expected = trend_count if reference_count is None else (trend_count + reference_count) / 2
    return Forecast(
        count_now=count_now,
        horizon_min=horizon_min,
        rate_per_min=rate,
        trend_count=trend_count,
        reference_count=reference_count,
        expected=expected,
        capacity=capacity,
    )
