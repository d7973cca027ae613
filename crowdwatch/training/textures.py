"""Empty ground textures, drawn procedurally, as hard negatives for the crowd counter.

The first counter (trained on street, mall and web crowd photos only) read trampled beach sand as
the packed heads of ShanghaiTech A: footprints are small, dark, round and many, like heads far
away. None of its training images had a square metre of empty sand, water or foliage in them.
These textures have no people, so their target is zero: sand with footprints and debris, gravel,
water with waves and glints, foliage, paving and rock, at random scales, with a perspective
gradient (marks shrink towards the top) and webcam JPEG compression.

They are drawn from a seed, not read from any data set: nothing here comes from the evaluation
images (``beach_webcam_a`` is never read by training).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
from numpy.typing import NDArray

Image = NDArray[np.uint8]
Rng = np.random.Generator


def _noise(
    height: int, width: int, rng: Rng, octaves: int = 4, base: int = 4
) -> NDArray[np.float32]:
    """Fractal value noise in about [-1, 1]: coarse blobs plus finer detail."""
    total = np.zeros((height, width), dtype=np.float32)
    amplitude, norm = 1.0, 0.0
    for octave in range(octaves):
        cells = base * 2**octave
        grid = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
        layer = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        total += amplitude * layer
        norm += amplitude
        amplitude *= 0.55
    return np.asarray(np.clip(total / norm, -2.5, 2.5) / 2.5, dtype=np.float32)


def _tint(
    base_bgr: tuple[float, float, float], shading: NDArray[np.float32], depth: float
) -> NDArray[np.float32]:
    colour = np.asarray(base_bgr, dtype=np.float32)
    return colour[None, None, :] * (1.0 + depth * shading[:, :, None])


def _marks(
    canvas: NDArray[np.float32],
    rng: Rng,
    count: int,
    radius: tuple[float, float],
    shade: tuple[float, float],
    relief: bool,
) -> None:
    """Small elliptical marks (footprints, pebbles, leaves), smaller towards the top (perspective)."""
    height, width = canvas.shape[:2]
    near = rng.uniform(1.0, 2.5)  # how much bigger marks are at the bottom than at the top
    for _ in range(count):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        size = rng.uniform(*radius) * (1.0 + (near - 1.0) * y / height)
        axes = (max(1, round(size)), max(1, round(size * rng.uniform(0.4, 1.0))))
        angle = float(rng.uniform(0, 180))
        factor = float(rng.uniform(*shade))
        centre = (round(x), round(y))
        if relief:
            # A dent: shadow on one side, lit rim on the other, as footprints under the sun.
            offset = (round(x + axes[0] * 0.4), round(y + axes[1] * 0.4))
            lit = tuple(
                float(v)
                for v in canvas[
                    min(height - 1, max(0, centre[1])), min(width - 1, max(0, centre[0]))
                ]
                * 1.12
            )
            cv2.ellipse(canvas, offset, axes, angle, 0, 360, lit, -1, cv2.LINE_AA)
        colour = tuple(
            float(v)
            for v in canvas[min(height - 1, max(0, centre[1])), min(width - 1, max(0, centre[0]))]
            * factor
        )
        cv2.ellipse(canvas, centre, axes, angle, 0, 360, colour, -1, cv2.LINE_AA)


def _relief(height: int, width: int, rng: Rng) -> NDArray[np.float32]:
    """Trampled ground lit from one side: the slope of a fine noise field, in about [-1, 1]."""
    field = _noise(height, width, rng, octaves=3, base=int(rng.integers(8, 40)))
    angle = rng.uniform(0, 2 * np.pi)
    slope = np.cos(angle) * np.gradient(field, axis=1) + np.sin(angle) * np.gradient(field, axis=0)
    return np.asarray(slope / (np.abs(slope).max() + 1e-6), dtype=np.float32)


def sand(height: int, width: int, rng: Rng) -> NDArray[np.float32]:
    red = rng.uniform(170, 245)
    base = (red * rng.uniform(0.6, 0.8), red * rng.uniform(0.83, 0.95), red)
    shading = 0.6 * _noise(height, width, rng) + rng.uniform(0.2, 0.8) * _relief(height, width, rng)
    canvas = _tint(base, shading, rng.uniform(0.1, 0.3))
    area = height * width
    _marks(canvas, rng, int(area * rng.uniform(0.0005, 0.006)), (2.0, 7.0), (0.6, 0.9), True)
    _marks(canvas, rng, int(area * rng.uniform(0.0, 0.002)), (0.8, 2.5), (0.3, 1.3), False)
    grain = rng.standard_normal((height, width, 1)).astype(np.float32) * rng.uniform(2, 10)
    return canvas + grain


def gravel(height: int, width: int, rng: Rng) -> NDArray[np.float32]:
    base = (rng.uniform(90, 170),) * 3
    canvas = _tint(base, _noise(height, width, rng), 0.15)
    area = height * width
    _marks(canvas, rng, int(area * rng.uniform(0.004, 0.02)), (1.5, 6.0), (0.5, 1.5), False)
    return canvas


def water(height: int, width: int, rng: Rng) -> NDArray[np.float32]:
    base = (rng.uniform(120, 200), rng.uniform(100, 170), rng.uniform(30, 90))
    ys = np.arange(height, dtype=np.float32)[:, None]
    xs = np.arange(width, dtype=np.float32)[None, :]
    wavelength = rng.uniform(6, 30)
    phase = _noise(height, width, rng, octaves=3) * rng.uniform(2, 8)
    waves = np.sin(2 * np.pi * ys / wavelength + phase + xs * rng.uniform(-0.02, 0.02))
    canvas = _tint(base, 0.6 * waves + 0.4 * _noise(height, width, rng), rng.uniform(0.1, 0.3))
    # Foam and sun glints: bright specks, the other thing besides footprints that looks like heads.
    glints = int(height * width * rng.uniform(0.0, 0.003))
    _marks(canvas, rng, glints, (0.8, 3.0), (1.3, 1.9), False)
    return canvas


def foliage(height: int, width: int, rng: Rng) -> NDArray[np.float32]:
    base = (rng.uniform(20, 70), rng.uniform(70, 140), rng.uniform(40, 100))
    canvas = _tint(base, _noise(height, width, rng), 0.4)
    area = height * width
    _marks(canvas, rng, int(area * rng.uniform(0.003, 0.015)), (2.0, 8.0), (0.4, 1.5), False)
    return canvas


def paving(height: int, width: int, rng: Rng) -> NDArray[np.float32]:
    base = (rng.uniform(80, 190),) * 3
    canvas = _tint(base, _noise(height, width, rng), 0.12)
    step = int(rng.uniform(12, 60))
    line = tuple(float(v) * 0.7 for v in base)
    for y in range(int(rng.integers(0, step)), height, step):
        cv2.line(canvas, (0, y), (width, y), line, 1, cv2.LINE_AA)
    for x in range(int(rng.integers(0, step)), width, step):
        cv2.line(canvas, (x, 0), (x, height), line, 1, cv2.LINE_AA)
    _marks(
        canvas, rng, int(height * width * rng.uniform(0.0, 0.001)), (2.0, 10.0), (0.6, 0.9), False
    )
    return canvas


def rock(height: int, width: int, rng: Rng) -> NDArray[np.float32]:
    base = (rng.uniform(70, 150), rng.uniform(80, 160), rng.uniform(90, 170))
    canvas = _tint(base, _noise(height, width, rng, octaves=6, base=2), 0.45)
    for _ in range(int(rng.integers(3, 20))):
        points = np.cumsum(rng.normal(0, 8, (12, 2)), axis=0) + rng.uniform(0, [width, height])
        cv2.polylines(canvas, [points.astype(np.int32)], False, (30.0, 30.0, 30.0), 1, cv2.LINE_AA)
    return canvas


KINDS: dict[str, Callable[[int, int, Rng], NDArray[np.float32]]] = {
    "sand": sand,
    "gravel": gravel,
    "water": water,
    "foliage": foliage,
    "paving": paving,
    "rock": rock,
}
WEIGHTS = {"sand": 0.4, "gravel": 0.12, "water": 0.18, "foliage": 0.12, "paving": 0.1, "rock": 0.08}
"""Sand first: it is what the first counter mistook for a crowd."""


def ground_texture(height: int, width: int, rng: Rng, kind: str | None = None) -> Image:
    """An empty ground texture (BGR), blurred and JPEG-compressed as a webcam would send it."""
    names = list(WEIGHTS)
    chosen = kind or str(rng.choice(names, p=np.asarray([WEIGHTS[n] for n in names])))
    canvas = KINDS[chosen](height, width, rng)
    sigma = rng.uniform(0.0, 1.5)
    if sigma > 0.3:
        canvas = np.asarray(cv2.GaussianBlur(canvas, (0, 0), sigma), dtype=np.float32)
    image = np.clip(canvas, 0, 255).astype(np.uint8)
    quality = int(rng.integers(25, 90))
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if ok:
        image = np.asarray(cv2.imdecode(encoded, cv2.IMREAD_COLOR), dtype=np.uint8)
    return image
