"""Line crossing: segment intersection, direction, hysteresis, cool-down, id switches."""

from __future__ import annotations

import numpy as np
import pytest

from crowdwatch.contracts.config import CountingLine, LocalizedName
from crowdwatch.contracts.errors import ConfigError
from crowdwatch.edge.lines import CrossingRules, LineCrossing

FRAME = (100, 100)
HEIGHT = 20.0  # box height of every person below: the teleport guard allows 40 px a step

Step = list[tuple[int, float, float]]  # one frame: (track id, anchor x, anchor y)


def gate(
    start: tuple[float, float] = (50, 10),
    end: tuple[float, float] = (50, 90),
    in_direction: tuple[float, float] = (1, 0),
) -> CountingLine:
    return CountingLine(
        id="gate",
        name=LocalizedName(zh="门", en="Gate"),
        start=start,
        end=end,
        in_direction=in_direction,
    )


def walk(*xs: float, track: int = 1, y: float = 50.0) -> list[Step]:
    return [[(track, x, y)] for x in xs]


def run(
    line: CountingLine,
    frames: list[Step],
    rules: CrossingRules | None = None,
    frame: tuple[int, int] = FRAME,
) -> tuple:
    crossing = LineCrossing(line, frame, rules=rules)
    for i, frame in enumerate(frames):
        anchors = np.array([(x, y) for _, x, y in frame], dtype=np.float64).reshape(-1, 2)
        ids = np.array([t for t, _, _ in frame], dtype=np.int64)
        crossing.update(anchors, ids, np.full(len(frame), HEIGHT), ts=i * 0.1)
    counts = crossing.take_counts()
    return counts.in_count, counts.out_count


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        pytest.param(walk(30, 35, 40, 45, 55, 60, 65), (1, 0), id="walks in"),
        pytest.param(walk(70, 65, 60, 55, 45, 40, 35), (0, 1), id="walks out"),
        pytest.param(walk(30, 40, 50, 40, 30), (0, 0), id="touches the line, turns back"),
        pytest.param(walk(30, 40, 50, 50, 60, 70), (1, 0), id="steps on the line, then over"),
        pytest.param(walk(30, 40, 48, 49, 48, 40, 30), (0, 0), id="approaches, never crosses"),
        pytest.param(
            walk(30, 40, 48, 52, 48, 52, 49, 51, 48, 52, 60, 70),
            (1, 0),
            id="lingers on the line, then goes in: once",
        ),
        pytest.param(
            walk(30, 40, 48, 52, 48, 52, 49, 51, 48, 40, 30),
            (0, 0),
            id="lingers on the line, then goes back: never",
        ),
        pytest.param(
            walk(30, 40, 60, 70, 60, 40, 30),
            (1, 1),
            id="goes in and comes back out",
        ),
        pytest.param(walk(20, 25, 62, 66), (1, 0), id="fast mover jumps across in one step"),
        pytest.param(walk(52, 60, 70), (0, 0), id="born past the line: no crossing"),
        pytest.param(
            walk(30, 40, 45, 55, 60, 70, 71, track=1) + walk(72, 75, track=2),
            (1, 0),
            id="id switch after the crossing: counted once",
        ),
        pytest.param(
            walk(30, 40, 45, track=1) + walk(47, 55, 60, 70, track=2),
            (0, 0),
            id="id switch next to the line: the new track never settled, not counted",
        ),
        pytest.param(
            [[(1, 30, 50), (2, 70, 50)], [(1, 40, 50), (2, 60, 50)], [(2, 40, 50), (1, 60, 50)]]
            + [[(2, 35, 50), (1, 65, 50)]] * 2,
            (1, 1),
            id="two people cross each other: one in, one out",
        ),
        pytest.param(
            walk(30, 40, 45, 55, 60, 70) + walk(70, 5, 5, 5),
            (1, 0),
            id="teleport (id swap across the picture) is not a crossing",
        ),
        pytest.param(
            walk(30, 40, 45, 55, 60, 70, y=95.0),
            (0, 0),
            id="passes beyond the end of the line segment",
        ),
        pytest.param(
            walk(30, 40, 45, 55, 60) + [[]] * 15,
            (1, 0),
            id="crosses and is lost on the far side",
        ),
        pytest.param(
            walk(30, 40, 45, 52) + [[]] * 15,
            (1, 0),
            id="crosses and is lost right behind the line (left the picture)",
        ),
    ],
)
def test_crossings(frames: list[Step], expected: tuple[int, int]) -> None:
    assert run(gate(), frames) == expected


def test_a_line_near_the_frame_edge_counts_people_leaving_the_picture() -> None:
    edge = gate(start=(98, 0), end=(98, 100))
    # Feet at 88, 93, 97 and then 99.5 (the box clipped by the frame edge), then gone.
    assert run(edge, walk(88, 93, 97, 99.5) + [[]] * 15) == (1, 0)


def test_cool_down_counts_one_track_once_per_direction() -> None:
    back_and_forth = walk(30, 40, 60, 70, 40, 30, 60, 70)
    assert run(gate(), back_and_forth, CrossingRules(cooldown_s=0.0)) == (2, 1)
    assert run(gate(), back_and_forth, CrossingRules(cooldown_s=5.0)) == (1, 1)


@pytest.mark.parametrize(
    ("in_direction", "expected"),
    [((1, 0), (1, 0)), ((-1, 0), (0, 1)), ((1, 1), (1, 0)), ((-3, 2), (0, 1))],
)
def test_direction_is_the_side_in_direction_points_to(
    in_direction: tuple[float, float], expected: tuple[int, int]
) -> None:
    assert run(gate(in_direction=in_direction), walk(30, 40, 60, 70)) == expected


def test_diagonal_line_and_vertical_walk() -> None:
    diagonal = gate(start=(10, 10), end=(90, 90), in_direction=(0, -1))
    up = [[(1, 70.0, y)] for y in (95, 85, 75, 60, 50, 40)]
    assert run(diagonal, up) == (1, 0)


def test_in_direction_along_the_line_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"in_direction .* runs along the line"):
        LineCrossing(gate(in_direction=(0, 1)), FRAME)


def test_line_is_scaled_to_the_real_frame_size() -> None:
    crossing = LineCrossing(gate(), FRAME, frame_size=(200, 200))
    assert crossing.start.tolist() == [100.0, 20.0]
    assert crossing.end.tolist() == [100.0, 180.0]


def test_unconfirmed_tracks_are_ignored_and_counts_reset_per_interval() -> None:
    crossing = LineCrossing(gate(), FRAME)
    for i, x in enumerate((30, 40, 60, 70)):
        crossing.update(np.array([[x, 50.0], [x, 60.0]]), np.array([-1, 3]), np.full(2, HEIGHT), i)
    assert crossing.take_counts().in_count == 1
    assert (crossing.take_counts().in_count, crossing.take_counts().out_count) == (0, 0)


# A 640x480 camera with a line 40 px from its right edge; "in" is into the picture (leftwards).
WIDE = (640, 480)
EDGE_LINE = gate(start=(600, 40), end=(600, 440), in_direction=(-1, 0))


def people(*steps: list[tuple[int, float]], y: float = 240.0) -> list[Step]:
    """Frames of several tracks: each step lists (track id, anchor x)."""
    return [[(track, x, y) for track, x in step] for step in steps]


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        pytest.param(
            walk(590, 580, 570, 560, 550), (1, 0), id="walks in, first seen past the line"
        ),
        pytest.param(walk(560, 570, 580, 590, 605) + [[]] * 15, (0, 1), id="walks out, lost"),
        pytest.param(walk(560, 570, 580, 590, 610, 620, 630), (0, 1), id="walks out, seen out"),
        pytest.param(walk(630, 620, 610, 590, 580, 570), (1, 0), id="walks in, seen in the strip"),
        pytest.param(
            walk(585, 590, 595, 610, 620) + [[]] * 15,
            (0, 1),
            id="first seen past the line walking towards it: leaves, counted out only",
        ),
        pytest.param(
            walk(598, 603, 597, 602, 598, 603) + [[]] * 15,
            (0, 0),
            id="first seen on the line, lingers there: never",
        ),
        pytest.param(
            walk(594, 590, 594, 590, 594) + [[]] * 15,
            (0, 0),
            id="first seen past the line, stays there: never",
        ),
        pytest.param(
            walk(590, 580, 570, 560, track=1) + walk(555, 545, 535, 525, track=2),
            (1, 0),
            id="id switch after entering: counted once",
        ),
        pytest.param(
            walk(630, 620, 610, 595, 585, track=1) + walk(580, 570, 560, 550, track=2),
            (1, 0),
            id="crossed from the strip, id switch past the line: counted once",
        ),
        pytest.param(
            walk(630, 620, 610, 595, track=1) + walk(590, 580, 570, 560, track=2) + [[]] * 15,
            (1, 0),
            id="crossed from the strip, lost behind the line, new id: counted once",
        ),
        pytest.param(
            walk(590, 580) + [[]] * 3 + walk(560, 550, 540),
            (1, 0),
            id="detection flickers after entering: counted once",
        ),
        pytest.param(
            walk(595, 590, 585, track=-1) + walk(580, 570, 560),
            (1, 0),
            id="unconfirmed while crossing, confirmed past the line: counted",
        ),
        pytest.param(
            people([(1, 590), (2, 592)], [(1, 580), (2, 582)], [(1, 570), (2, 572)]),
            (2, 0),
            id="two enter side by side: both counted",
        ),
        pytest.param(walk(530, 520, 510, 500), (0, 0), id="first seen far past the line: never"),
        pytest.param(
            walk(590, 580, 570, 560, y=470.0), (0, 0), id="first seen beyond the line's end: never"
        ),
    ],
)
def test_a_line_40_px_from_the_frame_edge_counts_both_directions(
    frames: list[Step], expected: tuple[int, int]
) -> None:
    assert run(EDGE_LINE, frames, frame=WIDE) == expected


def test_without_the_id_switch_guard_a_switch_past_an_edge_line_would_count_twice() -> None:
    # The guard is what keeps the case above at one: with no hand-off window the second id,
    # first seen past the line and walking in, passes for a second person entering.
    frames = walk(630, 620, 610, 595, 585, track=1) + walk(580, 570, 560, 550, track=2)
    assert run(EDGE_LINE, frames, CrossingRules(handoff_s=0.0), frame=WIDE) == (2, 0)


def test_an_edge_line_counts_entries_whichever_side_is_in() -> None:
    leaving_is_in = gate(start=(600, 40), end=(600, 440), in_direction=(1, 0))
    assert run(leaving_is_in, walk(590, 580, 570, 560), frame=WIDE) == (0, 1)
    assert run(leaving_is_in, walk(560, 570, 580, 590, 605) + [[]] * 15, frame=WIDE) == (1, 0)


def test_a_line_near_the_bottom_edge_counts_vehicles_coming_up_into_the_picture() -> None:
    kerb = gate(start=(0, 440), end=(640, 440), in_direction=(0, -1))
    up = [[(1, 300.0, y)] for y in (432, 420, 408, 396)]
    assert run(kerb, up, frame=WIDE) == (1, 0)


def test_a_line_in_the_middle_of_the_picture_has_no_edge_strip() -> None:
    middle = gate(start=(320, 40), end=(320, 440), in_direction=(-1, 0))
    assert run(middle, walk(310, 300, 290, 280), frame=WIDE) == (0, 0)


# --- lines by class: COCO ids of the classes below
CAR, BUS, TRUCK = 2, 5, 7
CROSSES = (30, 35, 40, 45, 55, 60, 65)  # one clean crossing "in"


def run_classes(line: CountingLine, tracks: dict[int, list[int]]) -> tuple[int, int]:
    """Each track crosses :data:`CROSSES` (side by side), with the class given per frame."""
    crossing = LineCrossing(line, FRAME)
    for i, x in enumerate(CROSSES):
        ids = np.array(sorted(tracks), dtype=np.int64)
        anchors = np.array([(x, 20.0 + 15 * n) for n in range(len(ids))], dtype=np.float64)
        classes = np.array([tracks[t][i] for t in sorted(tracks)], dtype=np.int64)
        crossing.update(anchors, ids, np.full(len(ids), HEIGHT), i * 0.1, classes)
    counts = crossing.take_counts()
    return counts.in_count, counts.out_count


def classed(*classes: str) -> CountingLine:
    return CountingLine.model_validate({**gate().model_dump(), "classes": list(classes) or None})


BUS_ALL = [BUS] * len(CROSSES)
CAR_ALL = [CAR] * len(CROSSES)


@pytest.mark.parametrize(
    ("line", "tracks", "expected"),
    [
        pytest.param(classed("bus"), {1: BUS_ALL}, (1, 0), id="bus line counts a bus"),
        pytest.param(classed("bus"), {1: CAR_ALL}, (0, 0), id="bus line ignores a car"),
        pytest.param(classed("bus"), {1: BUS_ALL, 2: CAR_ALL}, (1, 0), id="bus line, both"),
        pytest.param(classed(), {1: BUS_ALL, 2: CAR_ALL}, (2, 0), id="no classes counts all"),
        pytest.param(classed("car", "bus"), {1: BUS_ALL, 2: CAR_ALL}, (2, 0), id="car and bus"),
        # A truck the detector calls a bus only in the frame the crossing completes in (the
        # 6th, index 5): its majority is truck, so the bus line does not count it ...
        pytest.param(
            classed("bus"), {1: [TRUCK] * 5 + [BUS] + [TRUCK]}, (0, 0), id="flicker to bus"
        ),
        # ... and a bus called a truck in that frame still counts as a bus.
        pytest.param(
            classed("bus"), {1: [BUS] * 5 + [TRUCK] + [BUS]}, (1, 0), id="flicker from bus"
        ),
        pytest.param(
            classed("truck"), {1: [BUS] * 5 + [TRUCK] + [BUS]}, (0, 0), id="minority truck"
        ),
        # Equal votes: the latest class decides (bus, bus, bus, truck, truck, truck at the
        # crossing frame: 3 to 3, the latest is truck).
        pytest.param(
            classed("truck"), {1: [BUS] * 3 + [TRUCK] * 3 + [TRUCK]}, (1, 0), id="tie, latest"
        ),
    ],
)
def test_a_line_with_classes_counts_only_their_tracks_by_majority_class(
    line: CountingLine, tracks: dict[int, list[int]], expected: tuple[int, int]
) -> None:
    assert run_classes(line, tracks) == expected


def test_a_line_with_classes_needs_the_boxes_classes() -> None:
    crossing = LineCrossing(classed("bus"), FRAME)
    with pytest.raises(ValueError, match="class_id"):
        crossing.update(np.array([[30.0, 50.0]]), np.array([1]), np.array([HEIGHT]), 0.0)
