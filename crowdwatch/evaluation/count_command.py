"""``crowdwatch count SOURCE...``: people (or vehicles) in images, image folders and videos.

The same counting code as the edge worker, so anyone can check the counter on their own
footage before installing a camera.  ``--mode`` is a zone's ``mode`` on the edge:

- ``detect``: people boxes (``load_detector``), those standing in ``--zone`` (``ZoneOccupancy``);
- ``dense``: the crowd counter's density map (``DensityCounter``) summed over ``--zone``
  (``DensityMap.in_polygon``) or the whole frame;
- ``auto``: both on every frame, and the edge's rule (``crowdwatch.edge.counting.auto_method``
  with ``edge.dense.auto``) picks which one gives the count.

``--classes`` picks what detection counts: ``person`` (default), ``vehicle`` (COCO car, bus,
truck and motorcycle, merged to one box per vehicle: :mod:`crowdwatch.edge.vehicles`) or a
list; ``by_class`` then gives the count per class.

One line per analysed frame; with ``--json`` one JSON object per line (``count`` is
fractional when the density map gave it; ``quality`` names what is wrong with a frame the
crowd counter cannot count in)::

    {"source": "walkway.avi", "frame": 0, "count": 6, "width": 768, "height": 576, "ms": 41.2,
     "zone": false, "method": "detect", "quality": null, "by_class": {"person": 6}}
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from crowdwatch.contracts.config import (
    CountMode,
    DenseAutoConfig,
    DenseConfig,
    DetectorConfig,
    LocalizedName,
    TilingConfig,
    TrackedClass,
    Zone,
    default_shared_dir,
)
from crowdwatch.contracts.errors import ConfigError, ModelError, SourceError
from crowdwatch.contracts.messages import CountMethod
from crowdwatch.edge.counting import DetectorView, auto_method, detector_magnification
from crowdwatch.edge.dense import DensityCounter
from crowdwatch.edge.detections import Detections
from crowdwatch.edge.detector import Detector, load_detector
from crowdwatch.edge.plausibility import polygon_area_px
from crowdwatch.edge.vehicles import VEHICLES, VehicleDetector, counts_by_class, parse_classes
from crowdwatch.edge.zones import ZoneOccupancy

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})


@dataclass(frozen=True, slots=True)
class CountRow:
    """People counted in one frame of one source."""

    source: str
    frame: int
    count: float
    """people: a whole number from detection, fractional from the density map"""
    width: int
    height: int
    ms: float
    """detection, density and zone time of this frame (decoding excluded)"""
    zone: bool
    """true when only people standing in ``--zone`` are counted"""
    method: str
    """``detect`` or ``dense``: what gave ``count`` (``auto`` picks per frame)"""
    quality: str | None = None
    """why the crowd counter judged the frame unusable (dark, blown out, flat), else ``None``"""
    by_class: dict[str, int] | None = None
    """detection: the boxes counted per class name; ``None`` when the density map counted"""


@dataclass(frozen=True, slots=True)
class Counters:
    """What counts the frames: the detector, the crowd counter, or both for ``auto``."""

    mode: CountMode
    detector: Detector | None = None
    density: DensityCounter | None = None
    dense: DenseConfig = field(default_factory=DenseConfig)
    """``edge.dense``: its ``auto`` rule decides in mode ``auto``"""
    detector_config: DetectorConfig | None = None
    """the detector's settings (tiles, input size), which the ``auto`` rule weighs"""


def parse_zone(text: str) -> list[tuple[float, float]]:
    """``"x1,y1,x2,y2,x3,y3,..."`` as polygon vertices in pixels.

    Args:
        text: comma-separated coordinates, at least 3 points.

    Returns:
        The vertices.

    Raises:
        ConfigError: odd number of values, fewer than 3 points, or not numbers.

    Example:
        >>> parse_zone("0,0,100,0,100,50")
        [(0.0, 0.0), (100.0, 0.0), (100.0, 50.0)]
    """
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise ConfigError(f"--zone: expected numbers x1,y1,x2,y2,..., got {text!r}") from exc
    if len(values) % 2 or len(values) < 6:
        raise ConfigError(
            f"--zone: expected at least 3 x,y points (an even count of 6+ numbers), "
            f"got {len(values)} numbers"
        )
    return list(zip(values[::2], values[1::2], strict=True))


def parse_tiles(text: str) -> TilingConfig:
    """``"320"`` or ``"320,0.2"`` (tile size, overlap) as a :class:`TilingConfig`.

    Raises:
        ConfigError: not a size and an optional overlap.
    """
    parts = [p.strip() for p in text.split(",")]
    try:
        size = int(parts[0])
        overlap = float(parts[1]) if len(parts) > 1 else 0.2
        return TilingConfig(size=size, overlap=overlap)
    except (ValueError, IndexError) as exc:
        raise ConfigError(
            f"--tiles: expected SIZE or SIZE,OVERLAP (e.g. 320,0.2), got {text!r}"
        ) from exc


def expand_sources(sources: Sequence[str]) -> list[Path]:
    """Files to count: images and videos as given, folders as their sorted images.

    Raises:
        SourceError: a path does not exist, or a folder holds no image.
    """
    files: list[Path] = []
    for spec in sources:
        path = Path(spec)
        if path.is_dir():
            images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not images:
                raise SourceError(
                    f"{path}: folder holds no image ({', '.join(sorted(IMAGE_SUFFIXES))})"
                )
            files.extend(images)
        elif path.is_file():
            files.append(path)
        else:
            raise SourceError(f"{path}: no such file or folder")
    return files


def frames_of(path: Path, every: int) -> Iterator[tuple[int, NDArray[np.uint8]]]:
    """``(frame number, BGR image)`` of an image (frame 0) or every ``every``-th video frame.

    Raises:
        SourceError: OpenCV can read the file neither as an image nor as a video.
    """
    if path.suffix.lower() in IMAGE_SUFFIXES:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise SourceError(f"{path}: not a readable image")
        yield 0, np.asarray(image, dtype=np.uint8)
        return
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise SourceError(f"{path}: OpenCV cannot open it as an image or a video")
        number = 0
        while capture.grab():
            if number % every == 0:
                ok, image = capture.retrieve()
                if not ok:
                    raise SourceError(f"{path}: frame {number} cannot be decoded")
                yield number, np.asarray(image, dtype=np.uint8)
            number += 1
        if number == 0:
            raise SourceError(f"{path}: no frame could be read (truncated or not a video)")
    finally:
        capture.release()


def count_frames(
    files: Sequence[Path],
    counters: Counters,
    *,
    every: int = 1,
    zone: list[tuple[float, float]] | None = None,
) -> Iterator[CountRow]:
    """Count people frame by frame, whole frame or inside ``zone``.

    Args:
        files: images and videos (see :func:`expand_sources`).
        counters: the mode and its loaded counters (see :func:`load_counters`).
        every: analyse every Nth video frame.
        zone: polygon in pixels of the frames; ``None`` counts the whole frame.

    Yields:
        One row per analysed frame.

    Raises:
        SourceError: a file cannot be read.
        ConfigError: the zone lies outside a frame.
    """
    for path in files:
        occupancy: ZoneOccupancy | None = None
        for number, image in frames_of(path, every):
            height, width = image.shape[:2]
            if zone is not None and (occupancy is None or occupancy.frame_size != (width, height)):
                occupancy = _zone_for(zone, (width, height), path)
            started = time.perf_counter()
            count, method, quality, by_class = count_frame(image, counters, occupancy)
            ms = 1000 * (time.perf_counter() - started)
            yield CountRow(
                str(path),
                number,
                count,
                width,
                height,
                round(ms, 1),
                zone is not None,
                method.value,
                quality,
                by_class if method is CountMethod.DETECT else None,
            )


def count_frame(
    image: NDArray[np.uint8], counters: Counters, occupancy: ZoneOccupancy | None
) -> tuple[float, CountMethod, str | None, dict[str, int]]:
    """People in one frame (in the zone of ``occupancy`` when given) the way ``mode`` says.

    Returns:
        The count, the method that gave it, the crowd counter's quality complaint, and the
        detected boxes per class (empty without a detector).
    """
    heights: NDArray[np.float32] | None = None
    confidence = np.zeros(0, dtype=np.float32)
    by_class: dict[str, int] = {}
    if counters.detector is not None:
        detections = counters.detector.detect(image)
        if occupancy is not None:
            # the people standing in the zone: their number is the detection count
            inside = occupancy.trigger(detections)
            detections = Detections(
                detections.xyxy[inside], detections.confidence[inside], detections.class_id[inside]
            )
        heights, confidence = detections.heights(), detections.confidence
        by_class = counts_by_class(detections)
    if counters.density is None:
        assert heights is not None  # mode detect always has a detector
        return len(heights), CountMethod.DETECT, None, by_class
    density = counters.density.density(image)
    people = (
        density.in_polygon([(float(x), float(y)) for x, y in occupancy.polygon])
        if occupancy is not None
        else density.total()
    )
    quality = density.quality.reason
    if heights is None:
        return people, CountMethod.DENSE, quality, by_class
    # The frame's own pixels are the configured geometry here: no rescaling of heights.
    # The frame's own pixels are the geometry: the zone's area (or the frame's) in them.
    height, width = image.shape[:2]
    view = DetectorView(
        detector_magnification(counters.detector_config, (width, height)),
        polygon_area_px([(float(x), float(y)) for x, y in occupancy.polygon])
        if occupancy is not None
        else float(width * height),
    )
    count, method = auto_count(
        counters.dense.auto, heights, people, density.quality.ok, view, confidence=confidence
    )
    return count, method, quality, by_class


def auto_count(
    rule: DenseAutoConfig,
    heights_px: NDArray[np.floating],
    dense_count: float,
    frame_ok: bool,
    view: DetectorView,
    *,
    confidence: NDArray[np.floating],
) -> tuple[float, CountMethod]:
    """What a zone in ``mode: auto`` counts in one frame seen both ways, and by which method.

    Shared with ``crowdwatch eval --methods auto``, so both score the edge's own rule.

    Args:
        rule: ``edge.dense.auto`` (see :func:`~crowdwatch.edge.counting.auto_method`).
        heights_px: box heights of the people detected in the zone, one per person counted
            by detection, in pixels of the frame.
        dense_count: the density map summed over the zone, in the same frame.
        frame_ok: the crowd counter's quality verdict on the frame.
        view: how large people look to the detector, and the zone's area in frame pixels.
        confidence: the detector's score of each of those people.

    Returns:
        ``dense_count`` or the number of detected people, and the method that gave it.

    Example:
        >>> view = DetectorView(magnification=1.0, zone_area_px=640 * 480)
        >>> sure = np.array([0.9, 0.8])
        >>> auto_count(DenseAutoConfig(), np.array([90.0, 120.0]), 2.4, True, view, confidence=sure)
        (2, <CountMethod.DETECT: 'detect'>)
    """
    method = auto_method(rule, heights_px, dense_count, frame_ok, view, confidence=confidence)
    return (dense_count if method is CountMethod.DENSE else len(heights_px)), method


def _zone_for(
    polygon: list[tuple[float, float]], size: tuple[int, int], path: Path
) -> ZoneOccupancy:
    outside = [(x, y) for x, y in polygon if not (0 <= x <= size[0] and 0 <= y <= size[1])]
    if outside:
        raise ConfigError(
            f"--zone: point ({outside[0][0]:g}, {outside[0][1]:g}) lies outside the "
            f"{size[0]}x{size[1]} frames of {path}"
        )
    zone = Zone(id="zone", name=LocalizedName(zh="区域", en="zone"), polygon=polygon)
    return ZoneOccupancy(zone, size)


def detector_config(args: argparse.Namespace, base: DetectorConfig | None) -> DetectorConfig:
    """The config's ``detector`` section (or the default model) with the flags applied.

    Raises:
        ConfigError: a flag has a value the detector section refuses.
    """
    data: dict[str, Any] = (
        base.model_dump()
        if base is not None
        else {"model": str(default_shared_dir() / "models" / "yolo11n_coco_640.onnx")}
    )
    for flag, key in (
        ("model", "model"),
        ("input_size", "input_size"),
        ("confidence", "confidence"),
        ("backend", "backend"),
    ):
        value = getattr(args, flag)
        if value is not None:
            data[key] = value
    if args.tiles:
        data["tiles"] = parse_tiles(args.tiles).model_dump()
    try:
        return DetectorConfig.model_validate(data)
    except ValueError as exc:
        raise ConfigError(f"detector options: {exc}") from exc


def load_counters(
    args: argparse.Namespace, base: DetectorConfig | None, dense: DenseConfig | None
) -> Counters:
    """The detector and/or crowd counter that ``--mode`` needs, loaded.

    Raises:
        ConfigError: a detector flag has a value the detector section refuses.
        ModelError: a model file is missing or unusable.
    """
    mode = CountMode(args.mode)
    dense = dense or DenseConfig()
    classes = parse_classes(args.classes)
    if mode is not CountMode.DETECT and classes != (TrackedClass.PERSON,):
        raise ConfigError(
            f"--classes {args.classes}: --mode {mode.value} counts people (the density map "
            "knows no classes); count other classes with --mode detect"
        )
    detector: Detector | None = None
    settings: DetectorConfig | None = None
    if mode is not CountMode.DENSE:
        settings = detector_config(args, base)
        detector = load_detector(settings, classes=classes)
        if set(classes) & set(VEHICLES):
            detector = VehicleDetector(detector)  # one box per vehicle whatever its class
    density = None
    if mode is not CountMode.DETECT:
        model = Path(args.dense_model) if args.dense_model else dense.model_path()
        if not model.is_file():
            raise ModelError(
                f"--dense-model: no crowd-counter model at {model} (--mode {mode.value} needs "
                "the density model: pass --dense-model PATH or set edge.dense.model)"
            )
        density = DensityCounter(model, threads=dense.threads or None, max_side=dense.max_side)
    return Counters(mode, detector, density, dense, settings)


def run(
    args: argparse.Namespace,
    base: DetectorConfig | None = None,
    dense: DenseConfig | None = None,
) -> int:
    """``crowdwatch count``: print one line per analysed frame; 0 on success.

    Args:
        args: parsed options (see :func:`add_arguments`).
        base: the config file's ``detector`` section, when a config was given.
        dense: the config file's ``edge.dense`` section (model, ``auto`` rule), when given.
    """
    if args.every < 1:
        raise ConfigError(f"--every: expected a positive frame step, got {args.every}")
    zone = parse_zone(args.zone) if args.zone else None
    files = expand_sources(args.sources)
    counters = load_counters(args, base, dense)
    what = "people" if parse_classes(args.classes) == (TrackedClass.PERSON,) else "objects"
    total = 0.0
    frames = 0
    for row in count_frames(files, counters, every=args.every, zone=zone):
        frames += 1
        total += row.count
        if args.json:
            print(json.dumps(_json_row(row)), flush=True)
        else:
            people = f"{row.count:>4}" if row.method == "detect" else f"{row.count:>6.1f}"
            mode = f"  [{row.method}]" if counters.mode is not CountMode.DETECT else ""
            warning = f"  ({row.quality})" if row.quality else ""
            classes = (
                "  (" + ", ".join(f"{k} {v}" for k, v in row.by_class.items()) + ")"
                if what != "people" and row.by_class
                else ""
            )
            print(
                f"{row.source}  frame {row.frame:>6}  {people} {what}  {row.ms:7.1f} ms"
                f"{mode}{warning}{classes}"
            )
    if not args.json:
        mean = total / frames if frames else 0.0
        print(f"{frames} frames, mean {mean:.2f} {what} per frame", file=sys.stderr)
    return 0


def _json_row(row: CountRow) -> dict[str, Any]:
    data = asdict(row)
    if row.method == CountMethod.DENSE.value:
        data["count"] = round(row.count, 2)
    return data
