"""Interval accumulation: last, max and mean per zone, explicit zeros, no data is no message."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from crowdwatch.contracts.messages import decode_counts, encode
from crowdwatch.edge.interval import IntervalCounts

TS = datetime(2026, 10, 1, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        # (count, count_max, count_mean) of platform, then kerb
        ([{"platform": 4, "kerb": 0}], [(4, 4, 4.0), (0, 0, 0.0)]),
        (
            [{"platform": 2, "kerb": 1}, {"platform": 6, "kerb": 0}, {"platform": 1, "kerb": 0}],
            [(1, 6, 3.0), (0, 1, 0.333)],
        ),
        ([{"platform": 0, "kerb": 0}] * 3, [(0, 0, 0.0), (0, 0, 0.0)]),
    ],
    ids=["one-frame", "last-max-mean", "nobody"],
)
def test_interval_message(
    frames: list[dict[str, int]], expected: list[tuple[int, int, float]]
) -> None:
    counts = IntervalCounts("stop-a", "cam1", ["platform", "kerb"])
    for frame in frames:
        counts.add(frame)
    message = counts.finish(TS, interval_s=5.0)
    assert message is not None
    decoded = decode_counts(encode(message))
    assert decoded.frames == len(frames)
    assert decoded.lines == []
    assert [(z.zone_id, z.count, z.count_max, z.count_mean) for z in decoded.zones] == [
        ("platform", *expected[0]),
        ("kerb", *expected[1]),
    ]


def test_no_analysed_frame_is_no_message_not_zero() -> None:
    counts = IntervalCounts("stop-a", "cam1", ["platform"])
    assert counts.finish(TS, interval_s=5.0) is None


def test_finish_starts_a_fresh_interval() -> None:
    counts = IntervalCounts("stop-a", "cam1", ["platform"])
    counts.add({"platform": 9})
    assert counts.finish(TS, interval_s=5.0) is not None
    counts.add({"platform": 1})
    second = counts.finish(TS, interval_s=5.0)
    assert second is not None
    assert (second.frames, second.zones[0].count_max) == (1, 1)


def test_a_frame_missing_a_zone_is_a_bug() -> None:
    counts = IntervalCounts("stop-a", "cam1", ["platform", "kerb"])
    with pytest.raises(KeyError, match="kerb"):
        counts.add({"platform": 1})


def test_density_at_the_end_and_at_the_peak_of_the_interval() -> None:
    counts = IntervalCounts("beach-1", "cam1", ["sand", "water"])
    for frame in ({"sand": 20, "water": 2}, {"sand": 50, "water": 4}, {"sand": 30, "water": 0}):
        counts.add(frame)
    message = counts.finish(TS, interval_s=5.0, areas_m2={"sand": 100.0, "water": 40.0})
    assert message is not None
    decoded = decode_counts(encode(message))
    assert [(z.density_per_m2, z.peak_density_per_m2) for z in decoded.zones] == [
        (0.3, 0.5),
        (0.0, 0.1),
    ]
    uncalibrated = IntervalCounts("beach-1", "cam1", ["sand"])
    uncalibrated.add({"sand": 5})
    plain = uncalibrated.finish(TS, interval_s=5.0)
    assert plain is not None and plain.zones[0].peak_density_per_m2 is None
