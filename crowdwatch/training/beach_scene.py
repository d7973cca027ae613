"""Composite beach scenes: people cut from the crowd training images, shrunk onto generated sand.

A beach webcam sees people 5-8 px tall in scattered groups, lying, standing or swimming, with
umbrellas and towels between them and empty sand all around (``../shared/BRIEF.md``). None of
the training sets look like that: ShanghaiTech and Mall are streets and a mall, packed edge to
edge. Here each crop is a generated beach (:mod:`crowdwatch.training.textures`: sand, often with
the sea behind it) with groups of people pasted on it, their head points carried along, and
umbrellas and towels as things that are not people.

A group is a window of a training image around one of its heads. Only the people whose heads are
in the window are cut out (an ellipse for the head and one below it for the body, sized from the
distance to their neighbours), so every pasted person has its point and no point lacks a person.
Groups are shrunk so heads are 2-12 px, smaller towards the top (perspective), some turned on
their side (people lying down), each with a cast shadow.

Everything comes from the training images and a seed: ``beach_webcam_a`` is never read here.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from crowdwatch.training.head_points import PointImage
from crowdwatch.training.textures import ground_texture

Image = NDArray[np.uint8]
Points = NDArray[np.float32]

HEAD_PX = (2.0, 12.0)
"""Head size range (px) of pasted people at the bottom of a crop; smaller towards the top."""


@dataclass(frozen=True, slots=True)
class Group:
    """People cut from a training image: colour, opacity in [0, 1] and their head points."""

    image: NDArray[np.float32]
    alpha: NDArray[np.float32]
    points: Points
    head: float
    """Median head size (px) of the group, which sets how much it is shrunk."""


def head_sizes(points: Points) -> NDArray[np.float32]:
    """Head size per point: 0.8x the mean distance to its three nearest neighbours.

    In a packed crowd neighbouring heads almost touch, so the gap is about a head (the rule behind
    geometry-adaptive density kernels). A lone person has far neighbours, so sizes are capped at
    1.5x the image's median.
    """
    if len(points) < 2:
        return np.full(len(points), 12.0, dtype=np.float32)
    from scipy.spatial import cKDTree

    neighbours = min(3, len(points) - 1)
    gaps, _ = cKDTree(points).query(points, k=neighbours + 1)
    sizes = 0.8 * np.asarray(gaps)[:, 1:].mean(axis=1)
    return np.asarray(np.clip(sizes, 3.0, 1.5 * np.median(sizes) + 3.0), dtype=np.float32)


def cut_group(sample: PointImage, rng: random.Random) -> Group | None:
    """The people around one random head of ``sample``, or None if that window is unusable."""
    points = sample.points
    if not len(points):
        return None
    sizes = head_sizes(points)
    centre = rng.randrange(len(points))
    side = sizes[centre] * rng.uniform(2.0, 12.0)
    height, width = sample.image.shape[:2]
    x0 = int(np.clip(points[centre, 0] - side * rng.uniform(0.2, 0.8), 0, width - 1))
    y0 = int(np.clip(points[centre, 1] - side * rng.uniform(0.2, 0.5), 0, height - 1))
    x1, y1 = min(width, x0 + int(side) + 1), min(height, y0 + int(side * 1.5) + 1)
    if sample.mask is not None and not sample.mask[y0:y1, x0:x1].all():
        return None  # Mall marks only people inside its region: outside it heads lack points
    inside = (points[:, 0] >= x0) & (points[:, 0] < x1) & (points[:, 1] >= y0) & (points[:, 1] < y1)
    chosen, chosen_sizes = points[inside] - np.array([x0, y0], np.float32), sizes[inside]
    alpha = np.zeros((y1 - y0, x1 - x0), dtype=np.float32)
    for (x, y), size in zip(chosen, chosen_sizes, strict=True):
        centre_px = (round(float(x)), round(float(y)))
        cv2.circle(alpha, centre_px, max(1, round(0.6 * size)), 1.0, -1)
        body = (round(float(x)), round(float(y + 1.5 * size)))
        axes = (max(1, round(0.5 * size)), max(1, round(1.2 * size)))
        cv2.ellipse(alpha, body, axes, 0.0, 0.0, 360.0, 1.0, -1)
    head = float(np.median(chosen_sizes))
    alpha = np.asarray(cv2.GaussianBlur(alpha, (0, 0), max(0.5, 0.15 * head)), np.float32)
    patch = sample.image[y0:y1, x0:x1].astype(np.float32)
    return Group(patch, alpha, chosen.astype(np.float32), head)


def _shrink(group: Group, scale: float, lying: bool) -> Group:
    height, width = group.alpha.shape
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    image = np.asarray(cv2.resize(group.image, size, interpolation=cv2.INTER_AREA), np.float32)
    alpha = np.asarray(cv2.resize(group.alpha, size, interpolation=cv2.INTER_AREA), np.float32)
    # Kept inside the shrunk patch: its side is rounded, the points are not.
    points = np.minimum(group.points * np.float32(scale), np.array(size, np.float32) - 1e-3)
    if lying:  # a quarter turn: heads side by side become people lying in a row
        image, alpha = np.rot90(image).copy(), np.rot90(alpha).copy()
        # Pixel i of a row becomes row width-1-i: the continuous coordinate x becomes width - x.
        points = np.stack(
            [points[:, 1], np.minimum(size[0] - points[:, 0], size[0] - 1e-3)], axis=1
        )
    return Group(image, alpha, points.astype(np.float32), group.head * scale)


def _umbrella(canvas: NDArray[np.float32], rng: random.Random, radius: float) -> None:
    """A beach umbrella seen from above and aside: striped ellipse and its shadow."""
    height, width = canvas.shape[:2]
    centre = (rng.uniform(0, width), rng.uniform(0, height))
    axes = (max(2, round(radius)), max(2, round(radius * rng.uniform(0.4, 1.0))))
    shade = np.zeros((height, width), dtype=np.float32)
    shadow = (round(centre[0] + radius * 0.6), round(centre[1] + radius * 0.5))
    cv2.ellipse(shade, shadow, axes, 0.0, 0.0, 360.0, 0.45, -1, cv2.LINE_AA)
    canvas *= 1.0 - shade[:, :, None]
    colours = [tuple(rng.uniform(20, 255) for _ in range(3)) for _ in range(2)]
    stripes = rng.choice([1, 4, 6, 8])
    pivot = (round(centre[0]), round(centre[1]))
    for k in range(stripes):
        start, end = 360.0 * k / stripes, 360.0 * (k + 1) / stripes
        cv2.ellipse(canvas, pivot, axes, 0.0, start, end, colours[k % 2], -1, cv2.LINE_AA)


def _towel(canvas: NDArray[np.float32], rng: random.Random, length: float) -> None:
    height, width = canvas.shape[:2]
    box = (
        (rng.uniform(0, width), rng.uniform(0, height)),
        (length, length * rng.uniform(0.35, 0.6)),
        rng.uniform(0, 180),
    )
    corners = cv2.boxPoints(box).astype(np.int32)
    colour = tuple(rng.uniform(20, 255) for _ in range(3))
    cv2.fillPoly(canvas, [corners], colour, cv2.LINE_AA)


def _background(size: int, rng: random.Random) -> NDArray[np.float32]:
    """Sand, often with the sea behind it along a wavy shoreline."""
    seed = np.random.default_rng(rng.getrandbits(63))
    canvas = ground_texture(size, size, seed, "sand").astype(np.float32)
    if rng.random() < 0.5:
        sea = ground_texture(size, size, seed, "water").astype(np.float32)
        level = rng.uniform(0.1, 0.6) * size
        xs = np.arange(size, dtype=np.float32)
        shore = level + 0.04 * size * np.sin(xs / rng.uniform(10, 60) + rng.uniform(0, 6))
        rows = np.arange(size, dtype=np.float32)[:, None]
        wet = np.clip((shore[None, :] - rows) / 3.0 + 0.5, 0.0, 1.0)[:, :, None]
        canvas = canvas * (1.0 - wet) + sea * wet
    return canvas


def beach_scene(size: int, samples: list[PointImage], rng: random.Random) -> tuple[Image, Points]:
    """A ``size`` x ``size`` beach with people pasted on it and their head points (x, y)."""
    canvas = _background(size, rng)
    for _ in range(rng.randint(0, 6)):
        if rng.random() < 0.5:
            _umbrella(canvas, rng, rng.uniform(4, 30))
        else:
            _towel(canvas, rng, rng.uniform(6, 36))
    sun = (rng.uniform(-1, 1), rng.uniform(0.2, 1.0))  # shadow direction; long when the sun is low
    reach = rng.uniform(0.5, 3.0)
    kept: list[Points] = []
    for _ in range(rng.randint(1, 14)):
        group = cut_group(rng.choice(samples), rng)
        if group is None or not len(group.points):
            continue
        y = rng.uniform(0, size)
        head = math.exp(rng.uniform(*map(math.log, HEAD_PX))) * (0.45 + 0.55 * y / size)
        pasted = _shrink(group, min(1.0, head / group.head), rng.random() < 0.25)
        left, top = round(rng.uniform(-0.2, 1.0) * size), round(y) - pasted.alpha.shape[0]
        _paste(canvas, pasted, left, top, sun, reach)
        # A group pasted over earlier people hides them: their points go with them.
        kept = [earlier[~_covered(earlier, pasted, left, top)] for earlier in kept]
        kept.append(np.asarray(pasted.points + np.array([left, top], np.float32), np.float32))
    points = np.concatenate(kept) if kept else np.zeros((0, 2), np.float32)
    return np.clip(canvas, 0, 255).astype(np.uint8), _visible(points, size)


def _covered(points: Points, group: Group, left: int, top: int) -> NDArray[np.bool_]:
    """Which ``points`` lie under the mostly opaque part of ``group`` pasted at ``left, top``."""
    col = np.floor(points[:, 0]).astype(int) - left
    row = np.floor(points[:, 1]).astype(int) - top
    height, width = group.alpha.shape
    inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
    covered = np.zeros(len(points), dtype=bool)
    covered[inside] = group.alpha[row[inside], col[inside]] > 0.5
    return covered


def _paste(
    canvas: NDArray[np.float32],
    group: Group,
    left: int,
    top: int,
    sun: tuple[float, float],
    reach: float,
) -> None:
    """Blend ``group`` and its shadow onto ``canvas`` with its top-left corner at ``left, top``."""
    shift = (round(sun[0] * reach * group.head), round(sun[1] * reach * group.head))
    _blend(canvas, np.zeros_like(group.image), 0.4 * group.alpha, left + shift[0], top + shift[1])
    _blend(canvas, group.image, group.alpha, left, top)


def _blend(
    canvas: NDArray[np.float32],
    image: NDArray[np.float32],
    alpha: NDArray[np.float32],
    left: int,
    top: int,
) -> None:
    size_y, size_x = canvas.shape[:2]
    y0, x0 = max(0, top), max(0, left)
    y1, x1 = min(size_y, top + alpha.shape[0]), min(size_x, left + alpha.shape[1])
    if y0 >= y1 or x0 >= x1:
        return
    a = alpha[y0 - top : y1 - top, x0 - left : x1 - left, None]
    part = image[y0 - top : y1 - top, x0 - left : x1 - left]
    canvas[y0:y1, x0:x1] = canvas[y0:y1, x0:x1] * (1.0 - a) + part * a


def _visible(points: Points, size: int) -> Points:
    keep = (points[:, 0] >= 0) & (points[:, 0] < size) & (points[:, 1] >= 0) & (points[:, 1] < size)
    return np.asarray(points[keep], dtype=np.float32)
