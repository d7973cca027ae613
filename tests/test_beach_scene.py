"""Composite beach scenes for training: every pasted person keeps its point, nothing else gets one."""

from __future__ import annotations

import random

import numpy as np

from crowdwatch.training.beach_scene import beach_scene, cut_group, head_sizes
from crowdwatch.training.head_points import PointImage

GREEN = (0, 255, 0)
"""People are painted pure green: no sand, sea, umbrella shadow or towel edge is that colour."""


def _crowd(mask: np.ndarray | None = None) -> PointImage:
    image = np.zeros((300, 400, 3), np.uint8)
    image[:] = GREEN
    points = np.array([[x, y] for x in range(20, 400, 24) for y in range(20, 300, 40)], np.float32)
    return PointImage("synthetic", "crowd", image, points, mask)


def test_head_sizes_follow_the_gap_to_neighbours_and_cap_loners() -> None:
    grid = np.array([[x, y] for x in range(0, 100, 10) for y in range(0, 100, 10)], np.float32)
    sizes = head_sizes(grid)
    assert np.all(sizes >= 8.0) and np.all(sizes <= 0.8 * 14.2)  # 0.8x the 10-14 px gaps
    lonely = head_sizes(np.vstack([grid, [[1000.0, 1000.0]]]).astype(np.float32))
    assert lonely[-1] <= 1.5 * np.median(lonely) + 3.0  # not the 1,000 px gap
    assert head_sizes(np.zeros((1, 2), np.float32)).shape == (1,)


def test_a_cut_group_has_a_person_at_each_point_and_only_the_heads_in_its_window() -> None:
    sample = _crowd()
    for seed in range(20):
        group = cut_group(sample, random.Random(seed))
        assert group is not None and len(group.points) >= 1
        height, width = group.alpha.shape
        cols, rows = group.points[:, 0].astype(int), group.points[:, 1].astype(int)
        assert np.all((cols >= 0) & (cols < width) & (rows >= 0) & (rows < height))
        assert np.all(group.alpha[rows, cols] > 0.5)  # each head is cut out opaque
        assert group.alpha.max() <= 1.0 and group.alpha.min() >= 0.0


def test_no_group_is_cut_where_the_region_of_interest_leaves_heads_unmarked() -> None:
    outside = np.zeros((300, 400), bool)
    assert all(cut_group(_crowd(outside), random.Random(s)) is None for s in range(10))
    empty = PointImage("synthetic", "none", _crowd().image, np.zeros((0, 2), np.float32))
    assert cut_group(empty, random.Random(0)) is None


def test_every_visible_point_of_a_beach_scene_sits_on_a_pasted_person() -> None:
    samples = [_crowd()]
    total = 0
    for seed in range(80):
        image, points = beach_scene(256, samples, random.Random(seed))
        assert image.shape == (256, 256, 3) and image.dtype == np.uint8
        assert np.all((points >= 0) & (points < 256))
        pixels = image[points[:, 1].astype(int), points[:, 0].astype(int)].astype(int)
        green = (pixels[:, 1] > pixels[:, 0] + 40) & (pixels[:, 1] > pixels[:, 2] + 40)
        assert green.all(), f"seed {seed}: {np.count_nonzero(~green)} points on no person"
        total += len(points)
    assert total > 50  # the scenes do hold people


def test_a_beach_scene_is_drawn_from_its_seed() -> None:
    first = beach_scene(128, [_crowd()], random.Random(7))
    again = beach_scene(128, [_crowd()], random.Random(7))
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
