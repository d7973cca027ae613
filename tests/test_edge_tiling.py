"""Tiled inference: the grid, the cut-box rule, the merge, and real Mall frames."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from crowdwatch.contracts.config import DetectorConfig, TilingConfig
from crowdwatch.edge.detections import Detections
from crowdwatch.edge.detector import load_detector
from crowdwatch.edge.tiling import (
    Tile,
    TiledDetector,
    axis_starts,
    cut_mask,
    merge_tiles,
    tile_grid,
)
from crowdwatch.evaluation.datasets import load_mall
from crowdwatch.evaluation.scoring import count_in_roi


@pytest.mark.parametrize(
    ("length", "size", "overlap", "starts"),
    [
        (640, 320, 0.2, [0, 160, 320]),
        (480, 320, 0.2, [0, 160]),
        (320, 320, 0.2, [0]),
        (200, 320, 0.2, [0]),
        (1920, 640, 0.0, [0, 640, 1280]),
        (1000, 400, 0.5, [0, 200, 400, 600]),
        (1000, 400, 0.6, [0, 150, 300, 450, 600]),
    ],
)
def test_axis_starts(length: int, size: int, overlap: float, starts: list[int]) -> None:
    assert axis_starts(length, size, overlap) == starts


@pytest.mark.parametrize(
    ("frame", "size", "overlap"),
    [((640, 480), 320, 0.2), ((1920, 1080), 640, 0.25), ((300, 200), 320, 0.2)],
)
def test_tiles_cover_the_frame_with_the_overlap(
    frame: tuple[int, int], size: int, overlap: float
) -> None:
    tiles = tile_grid(frame, size, overlap)
    covered = np.zeros((frame[1], frame[0]), dtype=np.int32)
    for t in tiles:
        assert t.x + t.width <= frame[0] and t.y + t.height <= frame[1]
        covered[t.y : t.y + t.height, t.x : t.x + t.width] += 1
    assert (covered > 0).all()
    xs = sorted({t.x for t in tiles})
    for a, b in itertools.pairwise(xs):
        assert (a + min(size, frame[0]) - b) >= overlap * size - 1


def boxes(*rows: tuple[float, float, float, float]) -> NDArray[np.float32]:
    return np.array(rows, dtype=np.float32).reshape(-1, 4)


@pytest.mark.parametrize(
    ("box", "cut"),
    [
        ((110, 110, 150, 200), False),  # well inside
        ((100, 110, 150, 200), False),  # on the frame's left border: not a tile border
        ((110, 110, 150, 420), True),  # reaches the tile's bottom, which is inside the frame
        ((300, 110, 419, 200), True),  # reaches the tile's right border
    ],
)
def test_cut_mask_flags_boxes_on_inner_tile_borders(
    box: tuple[float, float, float, float], cut: bool
) -> None:
    tile = Tile(x=0, y=100, width=420, height=320)
    assert cut_mask(boxes(box), tile, (1000, 420 + 300), margin=2).tolist() == [cut]


def dets(xyxy: NDArray[np.float32], conf: Sequence[float], cls: Sequence[int]) -> Detections:
    return Detections(
        xyxy=xyxy,
        confidence=np.array(conf, dtype=np.float32),
        class_id=np.array(cls, dtype=np.int64),
    )


@pytest.mark.parametrize(
    ("xyxy", "conf", "cls", "cut", "kept"),
    [
        # the same person whole in two tiles: one box
        (boxes((10, 10, 50, 100), (11, 10, 51, 101)), [0.9, 0.8], [0, 0], [False, False], [0]),
        # a cut fragment inside a whole box (lower score first): the whole box wins
        (boxes((10, 10, 50, 100), (10, 50, 50, 100)), [0.6, 0.9], [0, 0], [False, True], [0]),
        # two people side by side: both
        (boxes((10, 10, 50, 100), (60, 10, 100, 100)), [0.9, 0.8], [0, 0], [False, False], [0, 1]),
        # a fragment nobody else covers (a person taller than the overlap): kept
        (boxes((10, 10, 50, 100), (200, 10, 240, 60)), [0.9, 0.5], [0, 0], [False, True], [0, 1]),
        # a bus over a person: different classes never suppress each other
        (boxes((10, 10, 50, 100), (10, 10, 50, 100)), [0.9, 0.8], [0, 5], [False, False], [0, 1]),
    ],
    ids=["duplicate", "fragment", "neighbours", "lone-fragment", "classes"],
)
def test_merge_tiles(
    xyxy: NDArray[np.float32],
    conf: list[float],
    cls: list[int],
    cut: list[bool],
    kept: list[int],
) -> None:
    keep = merge_tiles(dets(xyxy, conf, cls), np.array(cut), iou=0.5)
    assert sorted(keep.tolist()) == kept


class BlobBackend:
    """A model seam that 'detects' every white rectangle in an image (connected components).

    Real geometry without a network: a rectangle cut by a tile border shows up as a fragment
    in that tile, exactly what the merge has to clean up.
    """

    input_size = 320
    forward_s = 0.0

    def __init__(self) -> None:
        self.batches: list[int] = []

    def detect(self, frame: NDArray[np.uint8]) -> Detections:
        return self.detect_batch([frame])[0]

    def detect_batch(self, frames: Sequence[NDArray[np.uint8]]) -> list[Detections]:
        self.batches.append(len(frames))
        found = []
        for frame in frames:
            mask = (frame[:, :, 0] > 127).astype(np.uint8)
            n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
            rows = [(x, y, x + w, y + h) for x, y, w, h, _ in stats[1:n]]
            found.append(dets(boxes(*rows), [0.9] * len(rows), [0] * len(rows)))
        return found


def test_tiled_detector_counts_each_person_once() -> None:
    frame = np.zeros((480, 640, 3), dtype=np.uint8)
    people = [(20, 20, 40, 70), (150, 140, 175, 200), (300, 300, 330, 360), (600, 400, 630, 470)]
    for x1, y1, x2, y2 in people:  # two straddle inner tile borders (x=160/320, y=160/320)
        frame[y1:y2, x1:x2] = 255
    backend = BlobBackend()
    tiled = TiledDetector(backend, size=320, overlap=0.2)
    found = tiled.detect(frame)
    assert backend.batches == [6]  # 3 x 2 tiles in one batch
    assert sorted(map(tuple, found.xyxy.astype(int).tolist())) == sorted(people)


@pytest.mark.parametrize(("size", "overlap", "message"), [(320, 1.0, "overlap"), (16, 0.2, "size")])
def test_tiled_detector_refuses_bad_settings(size: int, overlap: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TiledDetector(BlobBackend(), size=size, overlap=overlap)


@pytest.mark.data
def test_tiles_find_the_small_people_of_mall(shared_dir: Path) -> None:
    model = shared_dir / "models" / "yolo11n_coco_640.onnx"
    dataset = load_mall(shared_dir)
    picks = [0, 401, 799]
    images = list(dataset.read(picks))
    truth = np.array([dataset.truths[i] for i in picks])
    whole = load_detector(DetectorConfig(model=str(model), confidence=0.15, threads=2))
    tiled = load_detector(
        DetectorConfig(
            model=str(model), confidence=0.15, threads=2, tiles=TilingConfig(size=320, overlap=0.2)
        )
    )
    assert isinstance(tiled, TiledDetector)
    err_whole = np.abs([count_in_roi(whole.detect(im), dataset.roi) for im in images] - truth)
    err_tiled = np.abs([count_in_roi(tiled.detect(im), dataset.roi) for im in images] - truth)
    # Whole-frame detection misses a third of the ~30 people; tiles get within a few.
    assert err_tiled.mean() < 6, f"tiled errors {err_tiled}, truth {truth}"
    assert err_tiled.mean() < err_whole.mean() / 2, f"tiled {err_tiled}, whole {err_whole}"
