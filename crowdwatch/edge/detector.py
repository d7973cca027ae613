"""Person detection behind one interface: ONNX Runtime (light, no torch) or Ultralytics.

The model runtime stays behind this module: the rest of the edge sees only
:class:`~crowdwatch.edge.detections.Detections`.  :func:`load_detector` picks the backend
(``detector.backend``: ``.onnx`` runs here on ONNX Runtime, ``.pt``/OpenVINO/model names go to
:mod:`crowdwatch.edge.ultralytics_adapter`, imported only then, since it pulls in torch) and
wraps it in :class:`~crowdwatch.edge.tiling.TiledDetector` when ``detector.tiles`` is set.

Pre- and post-processing of the ONNX Runtime path follow the
Ultralytics export of YOLOv8/YOLO11 detection heads::

    frame (BGR, HxW) --letterbox--> SxS, grey (114) padding, aspect kept
                     --> RGB, /255, NCHW float32 --> model --> (1, 4 + classes, anchors)
    rows 0-3: box centre x, y, width, height in input pixels; rows 4..: per-class scores
                     --> class + confidence filter --> NMS --> boxes mapped back to the frame
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

from crowdwatch.contracts.config import DetectorBackend, DetectorConfig, TrackedClass
from crowdwatch.contracts.errors import ModelError
from crowdwatch.edge.detections import Detections

logger = logging.getLogger(__name__)

PERSON = 0
"""COCO class index of a person."""

COCO_CLASS_IDS: dict[TrackedClass, int] = {
    TrackedClass.PERSON: 0,
    TrackedClass.BICYCLE: 1,
    TrackedClass.CAR: 2,
    TrackedClass.MOTORCYCLE: 3,
    TrackedClass.BUS: 5,
    TrackedClass.TRUCK: 7,
}
"""Where the classes a camera counts (``Camera.classes``) sit in the COCO head of YOLO."""

LETTERBOX_FILL = 114
MAX_DETECTIONS = 300
"""Ultralytics' default ``max_det``; a box detector is the wrong tool above this anyway."""

_STRIDES = (8, 16, 32)

# ONNX Runtime's pybind exceptions derive from Exception only; these are the load failures.
_ORT_LOAD_ERRORS = (
    ort_errors.Fail,
    ort_errors.InvalidArgument,
    ort_errors.InvalidGraph,
    ort_errors.InvalidProtobuf,
    ort_errors.NoSuchFile,
    ort_errors.NotImplemented,
    ort_errors.RuntimeException,
)


class Detector(Protocol):
    """Anything that finds people in a BGR frame (the worker needs nothing else)."""

    def detect(self, frame: NDArray[np.uint8]) -> Detections: ...


class BatchDetector(Detector, Protocol):
    """A model backend: detects on several images at once and times its forward pass.

    ``forward_s`` accumulates the seconds spent in the model itself (not pre/post-processing),
    so a benchmark can tell the pipeline's own overhead from the network's cost.
    """

    input_size: int
    forward_s: float

    def detect_batch(self, frames: Sequence[NDArray[np.uint8]]) -> list[Detections]: ...


def coco_class_ids(classes: Sequence[TrackedClass | str]) -> tuple[int, ...]:
    """COCO indices of the classes a camera counts.

    Args:
        classes: ``Camera.classes`` (``"person"``, ``"car"``, ...).

    Returns:
        Sorted, unique COCO class indices.

    Example:
        >>> coco_class_ids(["person", "bus", "car"])
        (0, 2, 5)
    """
    return tuple(sorted({COCO_CLASS_IDS[TrackedClass(name)] for name in classes}))


def expected_anchors(input_size: int) -> int:
    """Anchor points of a YOLOv8/YOLO11 head at a square input: 8400 at 640, 2100 at 320."""
    return sum((input_size // stride) ** 2 for stride in _STRIDES)


@dataclass(frozen=True, slots=True)
class Letterbox:
    """How a frame was fitted into the square model input: ``input = frame * scale + pad``."""

    scale: float
    pad_x: float
    pad_y: float


def letterbox(frame: NDArray[np.uint8], size: int) -> tuple[NDArray[np.uint8], Letterbox]:
    """Resize ``frame`` into a ``size`` x ``size`` square keeping its aspect, padding with grey.

    Args:
        frame: BGR image ``(H, W, 3)``.
        size: side of the square model input in pixels.

    Returns:
        The padded image and the transform that maps boxes back to ``frame``.
    """
    height, width = frame.shape[:2]
    scale = min(size / height, size / width)
    new_w, new_h = round(width * scale), round(height * scale)
    resized = frame
    if (new_w, new_h) != (width, height):
        resized = np.asarray(
            cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_LINEAR), dtype=np.uint8
        )
    pad_x, pad_y = (size - new_w) / 2, (size - new_h) / 2
    # Split odd padding like Ultralytics so boxes land on the same pixels as its own pipeline.
    top, bottom = round(pad_y - 0.1), round(pad_y + 0.1)
    left, right = round(pad_x - 0.1), round(pad_x + 0.1)
    padded = cv2.copyMakeBorder(
        resized, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(LETTERBOX_FILL,) * 3
    )
    return np.asarray(padded, dtype=np.uint8), Letterbox(
        scale=scale, pad_x=float(left), pad_y=float(top)
    )


class OnnxYoloDetector:
    """YOLOv8/YOLO11 detection export (``.onnx``) run on the CPU with ONNX Runtime.

    Args:
        model_path: the ``.onnx`` file.
        input_size: square input side the model was exported at (multiple of 32).
        confidence: minimum class score kept.
        iou: NMS IoU threshold.
        threads: ONNX Runtime intra-op threads; 0 uses every core.
        classes: class indices kept (COCO person is 0).

    Raises:
        ModelError: the file is missing, not ONNX, or not a YOLO detection head of that size.

    Example:
        >>> detector = OnnxYoloDetector("yolo11n_coco_640.onnx")  # doctest: +SKIP
        >>> len(detector.detect(cv2.imread("walkway.jpg")))  # doctest: +SKIP
        6
    """

    def __init__(
        self,
        model_path: str | Path,
        input_size: int = 640,
        confidence: float = 0.25,
        iou: float = 0.7,
        threads: int = 0,
        classes: Sequence[int] = (PERSON,),
    ) -> None:
        self.model_path = Path(model_path)
        self.input_size = input_size
        self.confidence = confidence
        self.iou = iou
        self.classes = np.array(sorted(set(classes)), dtype=np.int64)
        if self.classes.size == 0:
            raise ModelError("classes: expected at least one class index, got none")
        self.threads = threads or os.cpu_count() or 1
        self.forward_s = 0.0
        self._session = self._load()
        self._input_name: str = self._session.get_inputs()[0].name
        # A fixed batch dimension (the shared exports have 1) means tiles run one by one.
        batch_dim = self._session.get_inputs()[0].shape[0]
        self.max_batch: int = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else 64

    def _load(self) -> Any:
        path = self.model_path
        if path.suffix.lower() != ".onnx":
            kind = f"a {path.suffix} file" if path.suffix else "a file without suffix"
            raise ModelError(
                f"{path}: the onnxruntime backend reads ONNX models, got {kind}; "
                "use an .onnx export, or detector.backend: ultralytics for .pt/OpenVINO"
            )
        if not path.is_file():
            raise ModelError(f"{path}: model file not found (expected a YOLO .onnx export)")
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # ORT warns about unused initialisers on every load
        try:
            session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except _ORT_LOAD_ERRORS as exc:
            raise ModelError(f"{path}: not a loadable ONNX model: {exc}") from exc
        check_yolo_signature(
            path,
            [i.shape for i in session.get_inputs()],
            [o.shape for o in session.get_outputs()],
            input_size=self.input_size,
            classes=int(self.classes.max()) + 1,
        )
        logger.info(
            "loaded detector %s (input %d, %d threads)", path, self.input_size, self.threads
        )
        return session

    def detect(self, frame: NDArray[np.uint8]) -> Detections:
        """Find objects of the configured classes in one BGR frame.

        Args:
            frame: ``(H, W, 3)`` uint8 BGR image (as OpenCV decodes it).

        Returns:
            Boxes in pixels of ``frame``.

        Raises:
            ValueError: the frame is not a BGR image.
            ModelError: the model's output does not have the shape the head needs.
        """
        return self.detect_batch([frame])[0]

    def detect_batch(self, frames: Sequence[NDArray[np.uint8]]) -> list[Detections]:
        """Detect on several frames (tiles); one forward pass per ``max_batch`` of them.

        Args:
            frames: ``(H, W, 3)`` uint8 BGR images, any sizes.

        Returns:
            One :class:`Detections` per frame, in pixels of that frame.

        Raises:
            ValueError: a frame is not a BGR image.
            ModelError: the model's output does not have the shape the head needs.
        """
        results: list[Detections] = []
        for start in range(0, len(frames), self.max_batch):
            chunk = frames[start : start + self.max_batch]
            boxes, blobs = [], []
            for frame in chunk:
                if frame.ndim != 3 or frame.shape[2] != 3:
                    raise ValueError(f"expected a BGR frame of shape (H, W, 3), got {frame.shape}")
                padded, box = letterbox(frame, self.input_size)
                boxes.append(box)
                blobs.append(padded)
            blob = cv2.dnn.blobFromImages(blobs, scalefactor=1 / 255.0, swapRB=True)
            started = time.perf_counter()
            output = np.asarray(self._session.run(None, {self._input_name: blob})[0])
            self.forward_s += time.perf_counter() - started
            anchors = expected_anchors(self.input_size)
            if output.ndim != 3 or output.shape[0] != len(chunk) or output.shape[2] != anchors:
                # Only reachable with symbolic output dims that the load-time check could not pin.
                raise ModelError(
                    f"{self.model_path}: expected output ({len(chunk)}, 4 + classes, {anchors}), "
                    f"got {output.shape}"
                )
            for i, (frame, box) in enumerate(zip(chunk, boxes, strict=True)):
                results.append(self._postprocess(output[i], box, frame.shape[1], frame.shape[0]))
        return results

    def _postprocess(
        self, output: NDArray[np.float32], box: Letterbox, width: int, height: int
    ) -> Detections:
        scores = output[4 + self.classes]  # (classes kept, anchors)
        best = scores.argmax(axis=0)
        confidence = scores[best, np.arange(scores.shape[1])]
        keep = confidence >= self.confidence
        if not keep.any():
            return Detections.empty()
        cx, cy, w, h = output[:4, keep]
        confidence, class_id = confidence[keep], self.classes[best[keep]]
        xyxy = np.stack(
            [
                ((cx - w / 2 - box.pad_x) / box.scale).clip(0, width),
                ((cy - h / 2 - box.pad_y) / box.scale).clip(0, height),
                ((cx + w / 2 - box.pad_x) / box.scale).clip(0, width),
                ((cy + h / 2 - box.pad_y) / box.scale).clip(0, height),
            ],
            axis=1,
        ).astype(np.float32)
        xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
        # Batched NMS suppresses only within a class: a person never hides a bicycle.
        kept = cv2.dnn.NMSBoxesBatched(
            xywh.tolist(),
            confidence.tolist(),
            class_id.tolist(),
            self.confidence,
            self.iou,
            top_k=MAX_DETECTIONS,
        )
        index = np.asarray(kept, dtype=np.int64).reshape(-1)
        return Detections(
            xyxy=xyxy[index],
            confidence=confidence[index].astype(np.float32),
            class_id=class_id[index].astype(np.int64),
        )


Shape = list[int | str | None]
"""An ONNX tensor shape as ONNX Runtime reports it: symbolic dimensions are str or None."""


def check_yolo_signature(
    path: Path, inputs: list[Shape], outputs: list[Shape], *, input_size: int, classes: int
) -> None:
    """Check that a model is a YOLOv8/YOLO11 detection export usable at ``input_size``.

    Args:
        path: the model file (for the message).
        inputs: shapes of the model's inputs.
        outputs: shapes of the model's outputs.
        input_size: the square input the config asks for.
        classes: how many class rows the head must have at least.

    Raises:
        ModelError: naming what was expected and what the model has.
    """
    if len(inputs) != 1 or len(inputs[0]) != 4:
        raise ModelError(f"{path}: expected one NCHW image input, got inputs {inputs}")
    in_h, in_w = inputs[0][2:]
    if not (
        _dim_matches(in_h, lambda h: h == input_size)
        and _dim_matches(in_w, lambda w: w == input_size)
    ):
        raise ModelError(
            f"{path}: model input is {in_w}x{in_h} but detector.input_size is {input_size}; "
            "set input_size to the size the model was exported at"
        )
    anchors, min_rows = expected_anchors(input_size), 4 + classes
    shape = outputs[0] if len(outputs) == 1 else []
    if not (
        len(shape) == 3
        and _dim_matches(shape[1], lambda rows: rows >= min_rows)
        and _dim_matches(shape[2], lambda n: n == anchors)
    ):
        raise ModelError(
            f"{path}: expected a YOLOv8/YOLO11 detection output of shape "
            f"[1, 4 + classes (>= {min_rows}), {anchors}] at input {input_size}, got {outputs}"
        )


def _dim_matches(dim: object, check: Callable[[int], bool]) -> bool:
    """A fixed ONNX dimension must pass ``check``; a symbolic one (str/None) is checked later."""
    return check(dim) if isinstance(dim, int) else dim is None or isinstance(dim, str)


def load_detector(
    config: DetectorConfig,
    threads: int | None = None,
    classes: Sequence[TrackedClass | str] = (TrackedClass.PERSON,),
) -> Detector:
    """Build the detector that the config's ``detector`` section describes.

    Backends (``config.backend``): ``auto`` runs ``.onnx`` files on ONNX Runtime and hands
    everything else (``.pt``, an OpenVINO folder, a model name) to Ultralytics, which is
    imported only then (it needs ``pip install 'crowdwatch[ultralytics]'`` and pulls in torch).
    With ``config.tiles`` the model runs on overlapping tiles and the boxes are merged.

    Args:
        config: the ``detector`` section.
        threads: overrides ``config.threads`` (``run_edge`` splits the cores between cameras).
        classes: what to detect (``Camera.classes``); default people only.

    Returns:
        A ready detector of those classes (COCO indices in ``class_id``).

    Raises:
        ModelError: the model is missing or unusable, or its backend is not installed.

    Example:
        >>> cfg = DetectorConfig(model="yolo11n_coco_640.onnx", tiles={"size": 320})  # doctest: +SKIP
        >>> load_detector(cfg, classes=["person", "bus"]).detect(frame)  # doctest: +SKIP
    """
    backend = load_backend(config, threads=threads, classes=classes)
    if config.tiles is None:
        return backend
    from crowdwatch.edge.tiling import TiledDetector

    return TiledDetector(
        backend,
        size=config.tiles.size,
        overlap=config.tiles.overlap,
        full_frame=config.tiles.full_frame,
        iou=config.iou,
    )


def resolve_backend(config: DetectorConfig) -> DetectorBackend:
    """The backend ``auto`` stands for: ONNX Runtime for ``.onnx`` files, else Ultralytics.

    Args:
        config: the ``detector`` section.

    Returns:
        ``onnxruntime`` or ``ultralytics``.
    """
    if config.backend is not DetectorBackend.AUTO:
        return config.backend
    if Path(config.model).suffix.lower() == ".onnx":
        return DetectorBackend.ONNXRUNTIME
    return DetectorBackend.ULTRALYTICS


def load_backend(
    config: DetectorConfig,
    threads: int | None = None,
    classes: Sequence[TrackedClass | str] = (TrackedClass.PERSON,),
) -> BatchDetector:
    """The model backend alone (no tiling): see :func:`load_detector`.

    Args:
        config: the ``detector`` section.
        threads: overrides ``config.threads``.
        classes: what to detect.

    Returns:
        An :class:`OnnxYoloDetector` or an ``UltralyticsDetector``.

    Raises:
        ModelError: the model is missing or unusable, or its backend is not installed.
    """
    class_ids = coco_class_ids(classes)
    n_threads = config.threads if threads is None else threads
    if resolve_backend(config) is DetectorBackend.ULTRALYTICS:
        from crowdwatch.edge.ultralytics_adapter import UltralyticsDetector

        return UltralyticsDetector(
            config.model,
            input_size=config.input_size,
            confidence=config.confidence,
            iou=config.iou,
            threads=n_threads,
            classes=class_ids,
        )
    return OnnxYoloDetector(
        config.model,
        input_size=config.input_size,
        confidence=config.confidence,
        iou=config.iou,
        threads=n_threads,
        classes=class_ids,
    )
