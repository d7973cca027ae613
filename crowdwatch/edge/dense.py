"""Crowd counting by density map: ONNX Runtime, numpy and OpenCV only (no torch).

Where people are too small or too packed for boxes, a density network
(:mod:`crowdwatch.training.density_net`, exported as ONNX) estimates how many people stand in
each 8x8-pixel cell; the count of any region is the sum over its cells::

    frame (BGR / grey / BGRA, any size) --long side > max_side: downscale--> h' x w'
        --zero-pad right/bottom to multiples of 32 (at least 64)--> RGB /255 NCHW
        --model--> density (1, 1, H/8, W/8) --crop the padding--> cells (ceil(h'/8), ceil(w'/8))

A cell covers ``cell_size`` pixels of the frame that was given (8 x 8 unless it was
downscaled); the last row and column may reach past the frame's edge.  A zone's count is
the cells weighted by the share of each cell's in-frame pixels that the zone covers, so the
whole frame gives the total and two halves of it add up to the total.

Example:
    >>> counter = DensityCounter(default_crowd_counter_path())  # doctest: +SKIP
    >>> density = counter.density(cv2.imread("square.jpg"))  # doctest: +SKIP
    >>> round(density.total()), round(density.in_polygon([(0, 0), (960, 0), (960, 1080)]))  # doctest: +SKIP
    (212, 37)
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from crowdwatch.contracts.config import default_crowd_counter_path
from crowdwatch.contracts.errors import ModelError
from crowdwatch.edge.density_correction import DensityCorrection, load_correction
from crowdwatch.edge.detector import _ORT_LOAD_ERRORS

__all__ = [
    "CELL_PX",
    "DensityCounter",
    "DensityMap",
    "FrameQuality",
    "assess_quality",
    "default_crowd_counter_path",
    "rasterise_polygon",
]

logger = logging.getLogger(__name__)

CELL_PX = 8
"""Model input pixels per density cell (each side)."""
INPUT_MULTIPLE = 32
"""The backbone's largest stride: the model input must be a multiple of it."""
MIN_INPUT_SIDE = 64
"""Smaller frames are padded up to this, so the backbone's deepest map is at least 2x2."""

DARK_MEAN = 16.0
"""A frame whose mean grey level is below this is too dark to count in."""
BLOWN_OUT_SHARE = 0.9
"""A frame with more than this share of pixels at 250 or above is blown out."""
BACKLIT_SHARE = 0.35
"""A frame with more than this share of pixels at 250 or above looks into the sun (glare on the
sea, a low sun in the lens): people in it are silhouettes or gone.  The most seen on a usable
frame: 16.5% (one ShanghaiTech B test image of a sunlit street); 0% on every beach webcam
frame (``crowdwatch/evaluation/beach_days.py``)."""
FLAT_STD = 3.0
"""A frame whose grey levels vary less than this (standard deviation) shows no scene."""
STATIC_CORRELATION = 0.35
"""Below this correlation of neighbouring grey levels a frame is static (a dead analogue
camera, a broken decoder): every 10th training image, looked at, has at least 0.64; random
noise about 0."""
_QUALITY_SIDE = 320
"""The quality check looks at the frame downscaled to this long side (it is a rough test)."""


@dataclass(frozen=True, slots=True)
class FrameQuality:
    """Whether a frame shows a scene one can count in.

    Args:
        ok: ``False`` for a frame that is nearly black, blown out or without detail.
        reason: what is wrong (``"too dark (mean 6/255)"``), ``None`` when ``ok``.
    """

    ok: bool
    reason: str | None


@dataclass(frozen=True, slots=True)
class DensityMap:
    """People per cell of one frame, and the counts of regions of it.

    Args:
        cells: ``(rows, cols)`` float32 people per cell.
        frame_shape: ``(height, width)`` of the frame given to the counter.
        quality: whether the frame could be counted in (the count is there either way).
        cell_size: ``(height, width)`` of one cell in pixels of that frame: 8 x 8, more when
            the counter downscaled the frame.

    Example:
        >>> grid = np.ones((2, 3), dtype=np.float32)
        >>> density = DensityMap(grid, (16, 24), FrameQuality(True, None))
        >>> density.total(), density.in_polygon([(0, 0), (12, 0), (12, 16), (0, 16)])
        (6.0, 3.0)
    """

    cells: NDArray[np.float32]
    frame_shape: tuple[int, int]
    quality: FrameQuality
    cell_size: tuple[float, float] = (float(CELL_PX), float(CELL_PX))

    def __post_init__(self) -> None:
        rows, cols = self.cells.shape if self.cells.ndim == 2 else (0, 0)
        height, width = self.frame_shape
        cell_h, cell_w = self.cell_size
        # The cells must cover the frame and the last one must start inside it.
        if not (
            rows
            and cols
            and (rows - 1) * cell_h < height <= rows * cell_h + 1e-6
            and (cols - 1) * cell_w < width <= cols * cell_w + 1e-6
        ):
            raise ValueError(
                f"cells: expected a grid of {cell_h:g}x{cell_w:g}-pixel cells covering a "
                f"{height}x{width} frame, got shape {self.cells.shape}"
            )

    def total(self) -> float:
        """People in the whole frame."""
        return float(self.cells.sum(dtype=np.float64))

    def in_polygon(self, polygon: Sequence[tuple[float, float]]) -> float:
        """People standing in a polygon (by the density at their heads).

        Args:
            polygon: vertices ``(x, y)`` in pixels of the frame given, in order, at least 3;
                parts outside the frame count nothing.

        Returns:
            The sum of the cells, each weighted by the share of its in-frame pixels whose
            centres lie inside the polygon.

        Raises:
            ValueError: fewer than 3 vertices.
        """
        key = tuple((float(x), float(y)) for x, y in polygon)
        weights = _polygon_weights(key, self.frame_shape, self.cells.shape, self.cell_size)
        return float(np.dot(weights.ravel(), self.cells.ravel().astype(np.float64)))

    def in_mask(self, mask: NDArray[np.bool_]) -> float:
        """People in the true pixels of a mask.

        Args:
            mask: ``(height, width)`` bool, the frame's shape.

        Returns:
            The sum of the cells, each weighted by the share of its in-frame pixels that are set.

        Raises:
            ValueError: the mask's shape is not the frame's.
        """
        mask = np.asarray(mask)
        if mask.shape != self.frame_shape:
            raise ValueError(
                f"mask: expected the frame's shape {self.frame_shape}, got {mask.shape}"
            )
        weights = _cell_coverage(mask.astype(bool, copy=False), self._edges())
        return float(np.dot(weights.ravel(), self.cells.ravel().astype(np.float64)))

    def _edges(self) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
        return _cell_edges(self.frame_shape, self.cells.shape, self.cell_size)


def _cell_edges(
    frame_shape: tuple[int, int], grid_shape: tuple[int, ...], cell_size: tuple[float, float]
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Pixel rows and columns where the cells start, plus the frame's end: ``rows + 1``, ``cols + 1``."""
    edges = []
    for n, cell, limit in zip(grid_shape, cell_size, frame_shape, strict=True):
        edge = np.minimum(np.round(np.arange(n + 1) * cell), limit).astype(np.intp)
        edge[-1] = limit
        edges.append(edge)
    return edges[0], edges[1]


def _cell_coverage(
    mask: NDArray[np.bool_], edges: tuple[NDArray[np.intp], NDArray[np.intp]]
) -> NDArray[np.float64]:
    """Share of each cell's pixels that are set in ``mask`` (area downsampling, exact)."""
    ys, xs = edges
    integral = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int64)
    np.cumsum(np.cumsum(mask, axis=0, dtype=np.int64), axis=1, out=integral[1:, 1:])
    corners = integral[np.ix_(ys, xs)]
    inside = corners[1:, 1:] - corners[:-1, 1:] - corners[1:, :-1] + corners[:-1, :-1]
    area = np.outer(np.diff(ys), np.diff(xs))
    share: NDArray[np.float64] = np.divide(inside, area, out=np.zeros(area.shape), where=area > 0)
    return share


@lru_cache(maxsize=64)
def _polygon_weights(
    polygon: tuple[tuple[float, float], ...],
    frame_shape: tuple[int, int],
    grid_shape: tuple[int, ...],
    cell_size: tuple[float, float],
) -> NDArray[np.float64]:
    """Cell weights of a polygon; zones are fixed, so each is rasterised once per frame size."""
    mask = rasterise_polygon(polygon, frame_shape)
    weights = _cell_coverage(mask, _cell_edges(frame_shape, grid_shape, cell_size))
    weights.flags.writeable = False  # shared by every caller of the cache
    return weights


def rasterise_polygon(
    polygon: Sequence[tuple[float, float]], shape: tuple[int, int]
) -> NDArray[np.bool_]:
    """The pixels whose centres lie inside a polygon (even-odd rule, half-open edges).

    Pixel ``(row, col)`` spans ``[col, col + 1) x [row, row + 1)``; it is inside when its
    centre is.  Centres on an edge go to the polygon on their right / below, so polygons
    that share an edge split its pixels between them, never counting one twice (OpenCV's
    ``fillPoly`` draws the edge into both).

    Args:
        polygon: ``(x, y)`` vertices in pixels, in order, at least 3.
        shape: ``(height, width)`` of the mask.

    Returns:
        ``(height, width)`` bool mask.

    Raises:
        ValueError: fewer than 3 vertices.

    Example:
        >>> rasterise_polygon([(0, 0), (2, 0), (2, 2), (0, 2)], (3, 3)).astype(int).tolist()
        [[1, 1, 0], [1, 1, 0], [0, 0, 0]]
    """
    vertices = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    if len(vertices) < 3:
        raise ValueError(f"polygon: expected at least 3 points, got {len(vertices)}")
    height, width = shape
    start, end = vertices, np.roll(vertices, -1, axis=0)
    # Order each edge bottom-up so an edge shared by two polygons gives bit-identical crossings.
    upward = start[:, 1] <= end[:, 1]
    low = np.where(upward[:, None], start, end)
    high = np.where(upward[:, None], end, start)
    centre_y = np.arange(height, dtype=np.float64)[:, None] + 0.5  # (H, 1) against (1, M) edges
    crosses = (low[:, 1] <= centre_y) & (centre_y < high[:, 1])
    dy = np.where(crosses, high[:, 1] - low[:, 1], 1.0)
    x = np.where(
        crosses, low[:, 0] + (centre_y - low[:, 1]) * (high[:, 0] - low[:, 0]) / dy, np.inf
    )
    x.sort(axis=1)
    pairs = x.shape[1] // 2
    enter, leave = x[:, 0 : 2 * pairs : 2], x[:, 1 : 2 * pairs : 2]
    row, span = np.nonzero(np.isfinite(leave))
    # Pixel col is inside a span [enter, leave) when enter <= col + 0.5 < leave.
    first = np.clip(np.ceil(enter[row, span] - 0.5), 0, width).astype(np.intp)
    last = np.clip(np.ceil(leave[row, span] - 0.5), 0, width).astype(np.intp)
    steps = np.zeros((height, width + 1), dtype=np.int32)
    np.add.at(steps, (row, first), 1)
    np.add.at(steps, (row, last), -1)
    return np.asarray(np.cumsum(steps[:, :width], axis=1) > 0, dtype=np.bool_)


def assess_quality(grey: NDArray[np.uint8]) -> FrameQuality:
    """Whether a frame is worth counting in: not nearly black, blown out, backlit, flat or static.

    A lens cap, a dead stream (one grey colour), night without light or a camera blinded by
    the sun all give a density map that means nothing; the count is still made, and callers
    warn or fall back on this.

    Args:
        grey: ``(H, W)`` uint8 grey levels of the frame.

    Returns:
        ``ok`` and the reason when not.

    Example:
        >>> assess_quality(np.full((48, 64), 6, dtype=np.uint8))
        FrameQuality(ok=False, reason='too dark (mean 6/255)')
    """
    height, width = grey.shape
    scale = _QUALITY_SIDE / max(height, width)
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        grey = np.asarray(cv2.resize(grey, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
    mean, std = cv2.meanStdDev(grey)
    mean_v, std_v = float(mean[0, 0]), float(std[0, 0])
    if mean_v < DARK_MEAN:
        return FrameQuality(False, f"too dark (mean {mean_v:.0f}/255)")
    saturated = float(np.count_nonzero(grey >= 250)) / grey.size
    if saturated > BLOWN_OUT_SHARE:
        return FrameQuality(False, f"blown out ({saturated:.0%} of pixels saturated)")
    if saturated > BACKLIT_SHARE:
        return FrameQuality(False, f"backlit/glare ({saturated:.0%} of pixels saturated)")
    if std_v < FLAT_STD:
        return FrameQuality(False, f"flat/no detail (grey levels vary by {std_v:.1f})")
    correlation = _neighbour_correlation(grey)
    if correlation < STATIC_CORRELATION:
        # The density network reads pixel noise as a packed crowd of thousands.
        return FrameQuality(
            False, f"static/noise (neighbouring pixels correlate at {correlation:.2f})"
        )
    return FrameQuality(True, None)


def _neighbour_correlation(grey: NDArray[np.uint8]) -> float:
    """The smaller of the horizontal and vertical correlations of adjacent grey levels."""
    values = grey.astype(np.float64)
    pairs = []
    if values.shape[1] > 2:
        pairs.append((values[:, :-1].ravel(), values[:, 1:].ravel()))
    if values.shape[0] > 2:
        pairs.append((values[:-1, :].ravel(), values[1:, :].ravel()))
    correlations = [float(np.corrcoef(a, b)[0, 1]) for a, b in pairs if a.std() > 0 and b.std() > 0]
    return min(correlations, default=1.0)


def _as_rgb(frame: object) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """The frame as RGB and as grey; raises ValueError naming what is wrong with it."""
    if frame is None:
        raise ValueError("frame: expected a uint8 image array, got None")
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"frame: expected a uint8 image array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise ValueError(f"frame: expected dtype uint8, got {frame.dtype}")
    if frame.size == 0:
        raise ValueError(f"frame: the image is empty (shape {frame.shape})")
    channels = frame.shape[2] if frame.ndim == 3 else 1 if frame.ndim == 2 else 0
    if channels not in (1, 3, 4):
        raise ValueError(
            "frame: expected (H, W) grey, (H, W, 1), (H, W, 3) BGR or (H, W, 4) BGRA, "
            f"got shape {frame.shape}"
        )
    image = np.ascontiguousarray(frame)
    if channels == 1:
        grey = image.reshape(image.shape[:2])
        return np.asarray(cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB), dtype=np.uint8), grey
    to_rgb = cv2.COLOR_BGR2RGB if channels == 3 else cv2.COLOR_BGRA2RGB
    to_grey = cv2.COLOR_BGR2GRAY if channels == 3 else cv2.COLOR_BGRA2GRAY
    rgb = np.asarray(cv2.cvtColor(image, to_rgb), dtype=np.uint8)
    return rgb, np.asarray(cv2.cvtColor(image, to_grey), dtype=np.uint8)


class DensityCounter:
    """The crowd counter's ONNX export run on the CPU with ONNX Runtime.

    Args:
        model_path: the ``.onnx`` file (input ``images`` ``(1, 3, H, W)`` RGB in [0, 1],
            output ``density`` ``(1, 1, H/8, W/8)``); see :func:`default_crowd_counter_path`.
        threads: ONNX Runtime intra-op threads; ``None`` or 0 uses every core.
        max_side: frames with a longer side are downscaled to it first (the map still refers
            to the frame given); bounds the time per frame (~0.25 s at 1920 on 4 cores).

    Raises:
        ModelError: the file is missing, not ONNX, or not a density map model; or the
            correction beside it (:mod:`crowdwatch.edge.density_correction`) is unreadable.
        ValueError: ``max_side`` is below 64.

    Example:
        >>> counter = DensityCounter("models/crowd_counter.onnx", threads=2)  # doctest: +SKIP
        >>> counter.density(frame).total()  # doctest: +SKIP
        41.7
    """

    def __init__(
        self, model_path: Path | str, *, threads: int | None = None, max_side: int = 1920
    ) -> None:
        if max_side < MIN_INPUT_SIDE:
            raise ValueError(f"max_side: expected at least {MIN_INPUT_SIDE} pixels, got {max_side}")
        self.model_path = Path(model_path)
        self.threads = threads or os.cpu_count() or 1
        self.max_side = max_side
        self.forward_s = 0.0
        """Seconds spent in the model itself, summed over every call."""
        self._session = self._load()
        self.correction: DensityCorrection | None = load_correction(self.model_path)
        """The camera's gains per region (``MODEL.correction.json``, written by ``crowdwatch
        train counter --adapt``), applied to every map; ``None``: the model's map as it is."""
        self._input_name: str = self._session.get_inputs()[0].name

    def _load(self) -> Any:
        path = self.model_path
        if not path.is_file():
            what = "a folder" if path.is_dir() else "not found"
            raise ModelError(
                f"{path}: crowd-counter model {what} (expected the ONNX export of "
                "crowdwatch.training, e.g. models/crowd_counter.onnx)"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except _ORT_LOAD_ERRORS as exc:
            raise ModelError(f"{path}: not a loadable ONNX model: {exc}") from exc
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if not (
            len(inputs) == 1
            and len(inputs[0].shape) == 4
            and inputs[0].shape[1] in (3, None)
            and len(outputs) == 1
            and len(outputs[0].shape) == 4
        ):
            raise ModelError(
                f"{path}: expected a density model with input (1, 3, H, W) and output "
                f"(1, 1, H/8, W/8), got inputs {[i.shape for i in inputs]} and outputs "
                f"{[o.shape for o in outputs]}"
            )
        logger.info("loaded crowd counter %s (%d threads)", path, self.threads)
        return session

    def density(self, frame: NDArray[np.uint8]) -> DensityMap:
        """The density map of one frame.

        Args:
            frame: uint8 ``(H, W, 3)`` BGR (as OpenCV decodes it), ``(H, W)`` or ``(H, W, 1)``
                grey, or ``(H, W, 4)`` BGRA; any size.

        Returns:
            People per cell, in cells of the frame given, and the frame's quality.

        Raises:
            ValueError: the frame is ``None``, empty, not uint8 or not an image shape.
            ModelError: the model's output is not a density map of the input.
        """
        rgb, grey = _as_rgb(frame)
        height, width = rgb.shape[:2]
        quality = assess_quality(grey)
        scaled = self._fit(rgb)
        in_h, in_w = scaled.shape[:2]
        pad_h = max(MIN_INPUT_SIDE, math.ceil(in_h / INPUT_MULTIPLE) * INPUT_MULTIPLE)
        pad_w = max(MIN_INPUT_SIDE, math.ceil(in_w / INPUT_MULTIPLE) * INPUT_MULTIPLE)
        blob = np.zeros((1, 3, pad_h, pad_w), dtype=np.float32)
        # Zero padding is what training used: a black border is an empty scene, counting 0.
        blob[0, :, :in_h, :in_w] = scaled.transpose(2, 0, 1) * np.float32(1 / 255)
        started = time.perf_counter()
        output = np.asarray(self._session.run(None, {self._input_name: blob})[0])
        self.forward_s += time.perf_counter() - started
        expected = (1, 1, pad_h // CELL_PX, pad_w // CELL_PX)
        if output.shape != expected:
            raise ModelError(
                f"{self.model_path}: expected density output {expected} for input "
                f"{blob.shape}, got {output.shape}"
            )
        rows, cols = math.ceil(in_h / CELL_PX), math.ceil(in_w / CELL_PX)
        cells = np.ascontiguousarray(output[0, 0, :rows, :cols], dtype=np.float32)
        cell_size = (CELL_PX * height / in_h, CELL_PX * width / in_w)
        if self.correction is not None:
            cells = self.correction.apply(cells, (height, width), cell_size)
        return DensityMap(cells, (height, width), quality, cell_size)

    def _fit(self, rgb: NDArray[np.uint8]) -> NDArray[np.uint8]:
        """Downscale a frame whose long side exceeds ``max_side`` (aspect kept)."""
        height, width = rgb.shape[:2]
        scale = self.max_side / max(height, width)
        if scale >= 1:
            return rgb
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        return np.asarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
