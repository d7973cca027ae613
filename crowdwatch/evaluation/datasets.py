"""The counting data sets under ``CROWDWATCH_SHARED_DIR/data`` and their ground truth.

| name | images | truth |
|---|---|---|
| ``pets`` | PETS 2009 S2L1 ``vtest.avi``, 768x576, 795 frames | people boxed per frame (CVML XML) |
| ``mall`` | Mall frames 1-800, 640x480 | ``mall_gt.mat`` ``count``; every head point lies in the ROI of ``perspective_roi.mat``, so people are counted inside that ROI only |
| ``shanghaitech_b`` | ShanghaiTech part B test, 316 images 1024x768 | ``GT_IMG_N.mat`` head points |
| ``beach`` | ``beach_webcam_a``, 10 images 1920x1080 | ``labels_points.csv`` head points |
| ``beach_days`` | the same webcam on 5 days (``beach_webcam_a`` + ``beach_webcam_days``), 50 images | 1-2 annotators' head points per frame, scored per day against their mean |
| ``ngsim_seq1``, ``ngsim_seq2`` | NGSIM US-101 highway cameras, 177 and 156 frames 640x480 | ``GT.json`` (COCO) boxes of every motor vehicle, the whole frame |

Each loader returns a :class:`CountDataset` or raises :class:`DatasetMissing` naming the file
that is absent, so ``crowdwatch eval`` can skip a data set with a clear message.
"""

from __future__ import annotations

import csv
import json
import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Container, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from numpy.typing import NDArray

from crowdwatch.contracts.errors import CrowdwatchError

Box = tuple[float, float, float, float]
Subset = Literal["all", "even", "odd"]
"""Which samples to use: ``even``/``odd`` split a set in two (tune on one, report the other)."""


class DatasetMissing(CrowdwatchError):  # noqa: N818 (reads as a state; part of the lines API)
    """A data set (or its ground truth) is not under the shared folder."""


@dataclass(frozen=True, slots=True)
class CountDataset:
    """Images with a ground-truth person count each.

    Args:
        name: short name (``pets``, ``mall``, ...).
        description: one line for reports.
        keys: one label per sample (a frame number or a file name).
        numbers: a number per sample, used to split even/odd (frame number or image index).
        truths: people per sample.
        read: yields the images (BGR) of the given sample indices, in that order.
        roi: where people are counted (``(H, W)`` bool mask), or ``None`` for the whole frame.
    """

    name: str
    description: str
    keys: list[str]
    numbers: list[int]
    truths: list[int]
    read: Callable[[Sequence[int]], Iterator[NDArray[np.uint8]]]
    roi: NDArray[np.bool_] | None = None

    def select(
        self, subset: Subset = "all", limit: int | None = None, skip: Container[int] = ()
    ) -> list[int]:
        """Indices of the samples to evaluate.

        Args:
            subset: ``all``, or the samples whose number is ``even``/``odd``.
            limit: at most this many, spread evenly over the set (not the first N).
            skip: sample numbers never chosen (a model's training frames).

        Returns:
            Sample indices in order.
        """
        chosen = [
            i
            for i, n in enumerate(self.numbers)
            if (subset == "all" or (n % 2 == 0) == (subset == "even")) and n not in skip
        ]
        if limit is not None and 0 < limit < len(chosen):
            picks = np.linspace(0, len(chosen) - 1, limit).round().astype(int)
            chosen = [chosen[i] for i in sorted(set(picks.tolist()))]
        return chosen


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise DatasetMissing(f"{what} not found at {path}")
    return path


def _read_images(paths: Sequence[Path]) -> Callable[[Sequence[int]], Iterator[NDArray[np.uint8]]]:
    def read(indices: Sequence[int]) -> Iterator[NDArray[np.uint8]]:
        for i in indices:
            image = cv2.imread(str(paths[i]), cv2.IMREAD_COLOR)
            if image is None:
                raise DatasetMissing(f"{paths[i]}: not a readable image")
            yield np.asarray(image, dtype=np.uint8)

    return read


def pets_video(shared_dir: Path) -> Path:
    """``vtest.avi`` of PETS 2009 S2L1."""
    return shared_dir / "data" / "pets2009_s2l1" / "vtest.avi"


def pets_truth(shared_dir: Path) -> dict[int, list[Box]]:
    """Ground-truth boxes ``(x1, y1, x2, y2)`` per PETS frame number (frame N = video frame N).

    Args:
        shared_dir: the shared folder.

    Returns:
        Boxes per annotated frame.

    Raises:
        DatasetMissing: the annotation file is absent.
    """
    xml = _require(
        shared_dir / "data" / "pets2009_s2l1" / "annotations" / "PETS2009-S2L1.xml",
        "PETS 2009 annotations",
    )
    truth: dict[int, list[Box]] = {}
    for frame in ET.parse(xml).getroot().iter("frame"):
        boxes = []
        for box in frame.iter("box"):
            xc, yc = float(box.get("xc", 0)), float(box.get("yc", 0))
            w, h = float(box.get("w", 0)), float(box.get("h", 0))
            boxes.append((xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2))
        truth[int(frame.get("number", -1))] = boxes
    return truth


def read_video_frames(video: Path, wanted: Sequence[int]) -> Iterator[NDArray[np.uint8]]:
    """Decode ``video`` once and yield the frames numbered ``wanted`` (ascending).

    Args:
        video: a file OpenCV can decode.
        wanted: frame numbers, ascending.

    Yields:
        BGR frames.

    Raises:
        DatasetMissing: the video ends before a wanted frame.
    """
    capture = cv2.VideoCapture(str(video))
    try:
        number = -1
        for target in wanted:
            image = None
            while number < target:
                ok = capture.grab()
                number += 1
                if not ok:
                    raise DatasetMissing(f"{video}: ended before frame {target}")
                if number == target:
                    ok, image = capture.retrieve()
                    if not ok:
                        raise DatasetMissing(f"{video}: could not decode frame {target}")
            if image is not None:
                yield np.asarray(image, dtype=np.uint8)
    finally:
        capture.release()


def load_pets(shared_dir: Path) -> CountDataset:
    """PETS 2009 S2L1: people per annotated frame of ``vtest.avi``."""
    video = _require(pets_video(shared_dir), "PETS 2009 video")
    truth = pets_truth(shared_dir)
    frames = sorted(truth)

    def read(indices: Sequence[int]) -> Iterator[NDArray[np.uint8]]:
        return read_video_frames(video, [frames[i] for i in indices])

    return CountDataset(
        name="pets",
        description="PETS 2009 S2L1 walkway, 768x576, per-frame people",
        keys=[str(f) for f in frames],
        numbers=frames,
        truths=[len(truth[f]) for f in frames],
        read=read,
    )


def _loadmat(path: Path) -> dict[str, Any]:
    try:
        import scipy.io
    except ImportError as exc:
        raise DatasetMissing(
            f"{path}: reading .mat ground truth needs scipy (pip install 'crowdwatch[eval]')"
        ) from exc
    result: dict[str, Any] = scipy.io.loadmat(str(path))
    return result


MALL_FRAMES = 800
"""Frames staged in the shared copy (seq_000001..seq_000800)."""


def load_mall(shared_dir: Path) -> CountDataset:
    """Mall frames 1-800, counted inside the data set's ROI (where all head points lie)."""
    root = shared_dir / "data" / "mall"
    counts = _loadmat(_require(root / "mall_gt.mat", "Mall ground truth"))["count"].ravel()
    roi = _loadmat(_require(root / "perspective_roi.mat", "Mall ROI"))["roi"]["mask"][0, 0]
    paths = [root / "frames" / f"seq_{n:06d}.jpg" for n in range(1, MALL_FRAMES + 1)]
    present = [i for i, p in enumerate(paths) if p.is_file()]
    if not present:
        raise DatasetMissing(f"Mall frames not found under {root / 'frames'}")
    return CountDataset(
        name="mall",
        description=f"Mall CCTV frames 1-{present[-1] + 1}, 640x480, people in the ROI",
        keys=[paths[i].name for i in present],
        numbers=[i + 1 for i in present],
        truths=[int(counts[i]) for i in present],
        read=_read_images([paths[i] for i in present]),
        roi=np.asarray(roi, dtype=bool),
    )


def load_shanghaitech_b(shared_dir: Path) -> CountDataset:
    """ShanghaiTech part B test images with their head-point counts."""
    root = shared_dir / "data" / "shanghaitech_B" / "test_data"
    images = sorted(
        _require(root / "images", "ShanghaiTech B test images").glob("IMG_*.jpg"),
        key=lambda p: int(re.sub(r"\D", "", p.stem)),
    )
    if not images:
        raise DatasetMissing(f"no IMG_*.jpg under {root / 'images'}")
    truths, numbers = [], []
    for image in images:
        number = int(re.sub(r"\D", "", image.stem))
        mat = _require(root / "ground-truth" / f"GT_{image.stem}.mat", "ShanghaiTech B truth")
        info = _loadmat(mat)["image_info"][0, 0]
        truths.append(len(info["location"][0, 0]))
        numbers.append(number)
    return CountDataset(
        name="shanghaitech_b",
        description=f"ShanghaiTech B test, {len(images)} street images 1024x768",
        keys=[p.name for p in images],
        numbers=numbers,
        truths=truths,
        read=_read_images(images),
    )


def load_beach(shared_dir: Path) -> CountDataset:
    """``beach_webcam_a``: hourly 1920x1080 images of a beach with point labels."""
    root = shared_dir / "data" / "beach_webcam_a"
    labels = _require(root / "labels_points.csv", "beach_webcam_a labels")
    with labels.open(newline="") as handle:
        counts = Counter(row[3] for row in csv.reader(handle) if len(row) >= 4)
    images = sorted((root / "images").glob("*.jpg"))
    if not images:
        raise DatasetMissing(f"no images under {root / 'images'}")
    return CountDataset(
        name="beach",
        description=f"beach_webcam_a, {len(images)} images 1920x1080",
        keys=[p.name for p in images],
        numbers=list(range(len(images))),
        truths=[counts.get(p.name, 0) for p in images],
        read=_read_images(images),
    )


EMPTY_GROUND_SEED = 20261128
"""Seed of the generated empty-ground frames; training draws its own seeds from ``--seed``."""
EMPTY_GROUND_PER_KIND = 4


def load_empty_ground(shared_dir: Path) -> CountDataset:
    """Generated 1920x1080 frames of empty ground (sand, water, foliage...): every truth is 0.

    The issue's "an empty beach counts near 0" as a number. The frames come from the same
    generator as the counter's hard negatives (:mod:`crowdwatch.training.textures`) with seeds
    training does not draw, so this shows the counter learnt those textures, not that it
    handles every real empty scene; ``beach`` is the real test. Needs no shared data.
    """
    from crowdwatch.training.textures import KINDS, ground_texture

    kinds = [kind for kind in sorted(KINDS) for _ in range(EMPTY_GROUND_PER_KIND)]

    def read(indices: Sequence[int]) -> Iterator[NDArray[np.uint8]]:
        for i in indices:
            rng = np.random.default_rng([EMPTY_GROUND_SEED, i])
            yield ground_texture(1080, 1920, rng, kinds[i])

    return CountDataset(
        name="empty_ground",
        description=f"generated empty ground, {len(kinds)} frames 1920x1080 ({len(KINDS)} kinds)",
        keys=[f"{kind}-{i}" for i, kind in enumerate(kinds)],
        numbers=list(range(len(kinds))),
        truths=[0] * len(kinds),
        read=read,
    )


def load_beach_days(shared_dir: Path) -> CountDataset:
    """The beach webcam's five labelled days (``beach_webcam_a`` and ``beach_webcam_days``).

    ``truths`` are the annotators' mean rounded; ``crowdwatch eval`` scores this set per day
    against the unrounded mean and beside the annotators (:mod:`crowdwatch.evaluation.beach_eval`).
    """
    from crowdwatch.evaluation.beach_days import load_beach_frames

    frames = load_beach_frames(shared_dir)
    return CountDataset(
        name="beach_days",
        description=f"beach webcam, {len(frames)} frames 1920x1080 on 5 days, 1-2 annotators",
        keys=[frame.path.name for frame in frames],
        numbers=list(range(len(frames))),
        truths=[round(frame.mean_count) for frame in frames],
        read=_read_images([frame.path for frame in frames]),
    )


def load_ngsim(shared_dir: Path, sequence: str) -> CountDataset:
    """One NGSIM US-101 camera sequence: motor vehicles boxed in every frame (COCO JSON).

    The boxes cover the whole frame (vehicles at every edge and up to the top rows), so the
    count is of the whole frame.  Frames are in the order of their numbered file names.

    Args:
        shared_dir: the shared folder.
        sequence: ``Sequence1`` or ``Sequence2``.

    Raises:
        DatasetMissing: the folder, its ``GT.json`` or an image is absent, or ``GT.json`` is
            not COCO detection JSON.
    """
    root = shared_dir / "data" / "ngsim_us101" / sequence
    truth_file = _require(root / "GT.json", f"NGSIM {sequence} ground truth")
    try:
        coco = json.loads(truth_file.read_text(encoding="utf-8"))
        images = {int(image["id"]): str(image["file_name"]) for image in coco["images"]}
        counts = Counter(int(box["image_id"]) for box in coco["annotations"])
    except (ValueError, KeyError, TypeError) as exc:
        raise DatasetMissing(
            f"{truth_file}: expected COCO JSON with images[].id/file_name and "
            f"annotations[].image_id, got {type(exc).__name__}: {exc}"
        ) from exc
    order = sorted(images, key=lambda i: (int(re.sub(r"\D", "", images[i]) or 0), images[i]))
    paths = [root / "images" / images[i] for i in order]
    absent = [p for p in paths if not p.is_file()]
    if absent:
        raise DatasetMissing(f"NGSIM {sequence}: {len(absent)} images absent, first {absent[0]}")
    return CountDataset(
        name=f"ngsim_seq{sequence[-1]}",
        description=f"NGSIM US-101 {sequence}, {len(paths)} frames 640x480, motor vehicles",
        keys=[p.name for p in paths],
        numbers=[int(re.sub(r"\D", "", p.stem) or 0) for p in paths],
        truths=[counts.get(i, 0) for i in order],
        read=_read_images(paths),
    )


LOADERS: dict[str, Callable[[Path], CountDataset]] = {
    "pets": load_pets,
    "mall": load_mall,
    "shanghaitech_b": load_shanghaitech_b,
    "beach": load_beach,
    "empty_ground": load_empty_ground,
    "beach_days": load_beach_days,
    "ngsim_seq1": lambda shared_dir: load_ngsim(shared_dir, "Sequence1"),
    "ngsim_seq2": lambda shared_dir: load_ngsim(shared_dir, "Sequence2"),
}
