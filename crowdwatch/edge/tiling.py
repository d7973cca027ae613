"""Sliced (tiled) inference for wide shots where people are only a few dozen pixels tall.

A 640 px model input sees a 1920 px frame at a third of its size, so a 40 px person becomes
13 px and vanishes.  Cutting the frame into overlapping tiles and fitting each tile to the
model input keeps people at (or above) their real size::

    frame 640x480, tiles of 320, overlap 0.2        each tile --> model (input_size) --> boxes
    +------+--+------+--+------+                    boxes shifted back to frame pixels
    | t0   |  | t1   |  | t2   |                    |
    +------+--+------+--+------+   overlap bands:   v
    | t3   |  | t4   |  | t5   |   a person cut     merge: whole boxes first, then cut boxes
    +------+--+------+--+------+   by one tile's    (NMS by IoU; a cut box mostly inside a
                                   border is whole  kept box is the same person: dropped)
                                   in its neighbour

A box is *cut* when it touches a tile border that is not a frame border.  Cut boxes are the
fragments that make tiled counting overcount, so they only survive when no other box covers
them (a person larger than the overlap, seen whole in no tile).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from crowdwatch.edge.detections import Detections
from crowdwatch.edge.detector import BatchDetector

CONTAINMENT = 0.6
"""A cut box whose area lies this much inside a kept box is a fragment of that person."""

CUT_MARGIN_FRACTION = 0.01
"""A box edge this close to an inner tile border (fraction of the tile side) is cut by it."""


@dataclass(frozen=True, slots=True)
class Tile:
    """One slice of a frame, in frame pixels."""

    x: int
    y: int
    width: int
    height: int


def axis_starts(length: int, size: int, overlap: float) -> list[int]:
    """Start offsets of tiles of ``size`` covering ``length`` with at least ``overlap``.

    Tiles are spread evenly so the first starts at 0 and the last ends at ``length``.

    Args:
        length: frame width or height in pixels.
        size: tile side in pixels.
        overlap: minimum fraction of a tile shared with its neighbour, ``[0, 1)``.

    Returns:
        Sorted start offsets; ``[0]`` when one tile covers the axis.

    Example:
        >>> axis_starts(640, 320, 0.2)
        [0, 160, 320]
        >>> axis_starts(300, 320, 0.2)
        [0]
    """
    if length <= size:
        return [0]
    step = size * (1 - overlap)
    count = math.ceil((length - size) / step) + 1
    return [round(i * (length - size) / (count - 1)) for i in range(count)]


def tile_grid(frame_size: tuple[int, int], size: int, overlap: float) -> list[Tile]:
    """The tiles of one frame, row by row.

    Args:
        frame_size: ``(width, height)`` of the frame.
        size: tile side in pixels (a frame smaller than that gives a smaller tile).
        overlap: minimum fraction shared by neighbouring tiles.

    Returns:
        Tiles covering the whole frame.

    Example:
        >>> len(tile_grid((1920, 1080), 640, 0.2))
        8
    """
    width, height = frame_size
    return [
        Tile(x, y, min(size, width), min(size, height))
        for y in axis_starts(height, size, overlap)
        for x in axis_starts(width, size, overlap)
    ]


def cut_mask(
    xyxy: NDArray[np.float32], tile: Tile, frame_size: tuple[int, int], margin: float
) -> NDArray[np.bool_]:
    """Which boxes (in frame pixels) touch a border of ``tile`` that is inside the frame.

    Args:
        xyxy: ``(N, 4)`` boxes found in ``tile``, already in frame pixels.
        tile: the tile they came from.
        frame_size: ``(width, height)`` of the frame.
        margin: pixels within which a box edge counts as touching the border.

    Returns:
        ``(N,)`` bool mask.
    """
    width, height = frame_size
    cut = np.zeros(len(xyxy), dtype=np.bool_)
    if tile.x > 0:
        cut |= xyxy[:, 0] <= tile.x + margin
    if tile.y > 0:
        cut |= xyxy[:, 1] <= tile.y + margin
    if tile.x + tile.width < width:
        cut |= xyxy[:, 2] >= tile.x + tile.width - margin
    if tile.y + tile.height < height:
        cut |= xyxy[:, 3] >= tile.y + tile.height - margin
    return cut


def merge_tiles(detections: Detections, cut: NDArray[np.bool_], iou: float) -> NDArray[np.int64]:
    """Greedy merge of boxes from overlapping tiles: the indices of the boxes to keep.

    Whole boxes go first (by confidence), then cut ones.  A box is dropped when it overlaps a
    kept box of the same class with IoU above ``iou``; a cut box is also dropped when at least
    :data:`CONTAINMENT` of its area lies inside a kept box (it is a fragment of that person).

    Args:
        detections: every tile's boxes, in frame pixels.
        cut: ``(N,)`` which boxes touch an inner tile border.
        iou: NMS IoU threshold.

    Returns:
        Kept indices into ``detections``, whole boxes first.
    """
    xyxy = detections.xyxy.astype(np.float64)
    order = np.lexsort((-detections.confidence, cut))
    areas = np.maximum(xyxy[:, 2] - xyxy[:, 0], 0) * np.maximum(xyxy[:, 3] - xyxy[:, 1], 0)
    kept: list[int] = []
    for i in order.tolist():
        if kept:
            others = np.asarray(kept)
            same = detections.class_id[others] == detections.class_id[i]
            ix = np.clip(
                np.minimum(xyxy[others, 2], xyxy[i, 2]) - np.maximum(xyxy[others, 0], xyxy[i, 0]),
                0,
                None,
            )
            iy = np.clip(
                np.minimum(xyxy[others, 3], xyxy[i, 3]) - np.maximum(xyxy[others, 1], xyxy[i, 1]),
                0,
                None,
            )
            inter = ix * iy
            union = areas[others] + areas[i] - inter
            overlap = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
            if (same & (overlap > iou)).any():
                continue
            if cut[i] and areas[i] > 0 and (same & (inter / areas[i] >= CONTAINMENT)).any():
                continue
        kept.append(i)
    return np.asarray(kept, dtype=np.int64)


def concat(parts: Sequence[Detections]) -> Detections:
    """All boxes of several :class:`Detections` in one."""
    if not parts:
        return Detections.empty()
    return Detections(
        xyxy=np.concatenate([p.xyxy for p in parts]).astype(np.float32),
        confidence=np.concatenate([p.confidence for p in parts]).astype(np.float32),
        class_id=np.concatenate([p.class_id for p in parts]).astype(np.int64),
    )


class TiledDetector:
    """Runs a model on overlapping tiles of each frame and merges the boxes.

    Args:
        backend: the model (its ``input_size`` is what each tile is fitted to).
        size: tile side in frame pixels; smaller than ``backend.input_size`` upsamples
            (320 px tiles at a 640 input see people at twice their size).
        overlap: minimum fraction shared by neighbouring tiles; make it at least the height of
            a person in pixels divided by ``size`` so everyone is whole in some tile.
        full_frame: also run the whole frame, for people taller than a tile.
        iou: NMS IoU threshold across tiles.

    Example:
        >>> tiled = TiledDetector(OnnxYoloDetector("yolo11n_coco_640.onnx"), 320)  # doctest: +SKIP
        >>> len(tiled.detect(cv2.imread("mall.jpg")))  # doctest: +SKIP
        27
    """

    def __init__(
        self,
        backend: BatchDetector,
        size: int,
        overlap: float = 0.2,
        full_frame: bool = False,
        iou: float = 0.5,
    ) -> None:
        if not 0 <= overlap < 1:
            raise ValueError(f"overlap: expected a fraction in [0, 1), got {overlap}")
        if size < 32:
            raise ValueError(f"size: expected a tile side of at least 32 px, got {size}")
        self.backend = backend
        self.size = size
        self.overlap = overlap
        self.full_frame = full_frame
        self.iou = iou

    @property
    def input_size(self) -> int:
        """The model's input side (each tile is fitted to it)."""
        return self.backend.input_size

    @property
    def forward_s(self) -> float:
        """Seconds the backend spent in the model's forward pass."""
        return self.backend.forward_s

    def tiles(self, frame_size: tuple[int, int]) -> list[Tile]:
        """The tiles a frame of ``frame_size`` (width, height) is cut into."""
        return tile_grid(frame_size, self.size, self.overlap)

    def detect(self, frame: NDArray[np.uint8]) -> Detections:
        """Detect on every tile of ``frame`` (plus the whole frame if asked) and merge.

        Args:
            frame: ``(H, W, 3)`` uint8 BGR image.

        Returns:
            Merged boxes in pixels of ``frame``.

        Raises:
            ValueError: the frame is not a BGR image.
        """
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"expected a BGR frame of shape (H, W, 3), got {frame.shape}")
        frame_size = (int(frame.shape[1]), int(frame.shape[0]))
        tiles = self.tiles(frame_size)
        crops = [
            np.ascontiguousarray(frame[t.y : t.y + t.height, t.x : t.x + t.width]) for t in tiles
        ]
        if self.full_frame and len(tiles) > 1:
            crops.append(frame)
        found = self.backend.detect_batch(crops)
        margin = max(1.0, CUT_MARGIN_FRACTION * self.size)
        parts, cuts = [], []
        for tile, detections in zip(tiles, found, strict=False):
            shifted = Detections(
                xyxy=(detections.xyxy + np.array([tile.x, tile.y] * 2, dtype=np.float32)).astype(
                    np.float32
                ),
                confidence=detections.confidence,
                class_id=detections.class_id,
            )
            parts.append(shifted)
            cuts.append(cut_mask(shifted.xyxy, tile, frame_size, margin))
        if len(found) > len(tiles):  # the whole-frame pass: nothing in it is cut
            parts.append(found[-1])
            cuts.append(np.zeros(len(found[-1]), dtype=np.bool_))
        merged = concat(parts)
        if len(merged) == 0:
            return merged
        keep = merge_tiles(merged, np.concatenate(cuts), self.iou)
        return Detections(
            xyxy=merged.xyxy[keep],
            confidence=merged.confidence[keep],
            class_id=merged.class_id[keep],
        )

    def detect_batch(self, frames: Sequence[NDArray[np.uint8]]) -> list[Detections]:
        """:meth:`detect` on each frame (the tiles of one frame are the batch)."""
        return [self.detect(frame) for frame in frames]
