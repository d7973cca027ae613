"""Ultralytics YOLO behind the edge's detector interface (``.pt``, ONNX, OpenVINO, model names).

This is the only module of the edge that touches Ultralytics, and it is imported only when
``detector.backend`` resolves to ``ultralytics`` (Ultralytics imports torch: an edge box on the
light ONNX Runtime path never loads either).  Ultralytics and torch are loosely typed, so their
objects are ``Any`` here and nowhere else: :func:`from_ultralytics` turns a result into
:class:`~crowdwatch.edge.detections.Detections` at the boundary.

Ultralytics is made to work offline: no pip auto-install, settings in a writable folder, and no
hub look-ups when the model is a local file.
"""

from __future__ import annotations

import importlib
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from crowdwatch.contracts.errors import ModelError
from crowdwatch.edge.detections import Detections

logger = logging.getLogger(__name__)

MAX_DETECTIONS = 300
"""Ultralytics' own ``max_det`` default, kept explicit so both backends agree."""


def from_ultralytics(result: Any) -> Detections:
    """Convert one ``ultralytics.engine.results.Results`` into :class:`Detections`.

    Args:
        result: one element of what ``YOLO(...).predict()`` or ``.track()`` returns.

    Returns:
        The boxes in pixels of the original image, float32 scores, int64 COCO classes.

    Raises:
        ValueError: the result has no detection boxes (a classification or pose-only model).
    """
    boxes = getattr(result, "boxes", None)
    if boxes is None:
        raise ValueError(
            "expected an Ultralytics detection result with .boxes, got "
            f"{type(result).__name__} without boxes (is the model a detector?)"
        )
    if len(boxes) == 0:
        return Detections.empty()
    return Detections(
        xyxy=_numpy(boxes.xyxy).astype(np.float32).reshape(-1, 4),
        confidence=_numpy(boxes.conf).astype(np.float32).reshape(-1),
        class_id=_numpy(boxes.cls).astype(np.int64).reshape(-1),
    )


def _numpy(tensor: Any) -> NDArray[Any]:
    """A torch tensor (or already an array) as a NumPy array on the CPU."""
    if hasattr(tensor, "cpu"):
        tensor = tensor.cpu().numpy()
    return np.asarray(tensor)


def prepare_offline_environment(model: str) -> None:
    """Settings Ultralytics reads at import: no auto-install, writable config, offline for files.

    Values already in the environment win, so an installer can allow downloads.

    Args:
        model: the configured model (a path or a name to download).
    """
    os.environ.setdefault("YOLO_AUTOINSTALL", "0")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    if "YOLO_CONFIG_DIR" not in os.environ:
        folder = Path(tempfile.gettempdir()) / f"crowdwatch-ultralytics-{os.getuid()}"
        folder.mkdir(parents=True, exist_ok=True)
        os.environ["YOLO_CONFIG_DIR"] = str(folder)
    if Path(model).exists():
        # A local file needs no hub: never wait on a network that an edge box may not have.
        os.environ.setdefault("YOLO_OFFLINE", "1")


def import_ultralytics(model: str) -> Any:
    """Import ``ultralytics`` after :func:`prepare_offline_environment`.

    Args:
        model: the configured model, for the offline decision.

    Returns:
        The ``ultralytics`` module.

    Raises:
        ModelError: Ultralytics is not installed.
    """
    prepare_offline_environment(model)
    try:
        return importlib.import_module("ultralytics")
    except ImportError as exc:
        raise ModelError(
            f"{model}: detector.backend ultralytics needs Ultralytics and torch: "
            "pip install 'crowdwatch[ultralytics]' (or use an .onnx model on the onnxruntime "
            f"backend): {exc}"
        ) from exc


def set_torch_threads(threads: int) -> None:
    """Use ``threads`` cores (0 = all): Ultralytics leaves torch at cpu_count - 1."""
    torch = importlib.import_module("torch")
    torch.set_num_threads(threads or os.cpu_count() or 1)


def load_yolo(model: str) -> Any:
    """``ultralytics.YOLO(model, task="detect")`` with load errors as :class:`ModelError`.

    Args:
        model: ``.pt``/``.onnx`` file, OpenVINO export folder, or a name Ultralytics downloads.

    Returns:
        The ``YOLO`` model object.

    Raises:
        ModelError: Ultralytics is missing, or the model cannot be found or loaded.
    """
    ultralytics = import_ultralytics(model)
    path = Path(model)
    looks_like_path = path.is_absolute() or len(path.parts) > 1
    if looks_like_path and not path.exists():
        raise ModelError(f"{model}: model file not found (expected .pt, .onnx or OpenVINO folder)")
    try:
        yolo = ultralytics.YOLO(model, task="detect")
    except Exception as exc:
        # Ultralytics raises whatever its loaders raise (FileNotFoundError, TypeError,
        # ModuleNotFoundError for a missing runtime, pickle errors): all mean "unusable model".
        raise ModelError(f"{model}: Ultralytics could not load the model: {exc}") from exc
    task = getattr(yolo, "task", "detect")
    if task != "detect":
        raise ModelError(f"{model}: expected a detection model, got task {task!r}")
    return yolo


class UltralyticsDetector:
    """A YOLO model run through Ultralytics' own predictor (letterbox, NMS, device handling).

    Args:
        model: ``.pt``/``.onnx`` file, OpenVINO export folder (``*_openvino_model``), or a model
            name Ultralytics downloads where the internet is reachable.
        input_size: ``imgsz`` (square side; Ultralytics letterboxes to the stride).
        confidence: minimum score kept.
        iou: NMS IoU threshold.
        threads: torch CPU threads; 0 uses every core.
        classes: COCO class indices kept.

    Raises:
        ModelError: Ultralytics is missing or the model cannot be loaded.

    Example:
        >>> detector = UltralyticsDetector("yolo11n_coco.pt")  # doctest: +SKIP
        >>> len(detector.detect(frame))  # doctest: +SKIP
        6
    """

    def __init__(
        self,
        model: str | Path,
        input_size: int = 640,
        confidence: float = 0.25,
        iou: float = 0.7,
        threads: int = 0,
        classes: Sequence[int] = (0,),
    ) -> None:
        self.model = str(model)
        self.input_size = input_size
        self.confidence = confidence
        self.iou = iou
        self.classes = sorted(set(classes))
        if not self.classes:
            raise ModelError("classes: expected at least one class index, got none")
        self.forward_s = 0.0
        self.yolo: Any = load_yolo(self.model)
        set_torch_threads(threads)
        logger.info("loaded detector %s through Ultralytics (input %d)", self.model, input_size)

    def detect(self, frame: NDArray[np.uint8]) -> Detections:
        """Find objects of the configured classes in one BGR frame.

        Args:
            frame: ``(H, W, 3)`` uint8 BGR image.

        Returns:
            Boxes in pixels of ``frame``.

        Raises:
            ValueError: the frame is not a BGR image.
        """
        return self.detect_batch([frame])[0]

    def detect_batch(self, frames: Sequence[NDArray[np.uint8]]) -> list[Detections]:
        """Detect on several frames in one Ultralytics call (it batches them).

        Args:
            frames: ``(H, W, 3)`` uint8 BGR images.

        Returns:
            One :class:`Detections` per frame.

        Raises:
            ValueError: a frame is not a BGR image.
        """
        for frame in frames:
            if frame.ndim != 3 or frame.shape[2] != 3:
                raise ValueError(f"expected a BGR frame of shape (H, W, 3), got {frame.shape}")
        if not frames:
            return []
        results = self.yolo.predict(
            list(frames),
            imgsz=self.input_size,
            conf=self.confidence,
            iou=self.iou,
            classes=self.classes,
            max_det=MAX_DETECTIONS,
            verbose=False,
        )
        # Ultralytics times the forward pass itself (ms per image) in result.speed.
        self.forward_s += sum(float(r.speed.get("inference") or 0.0) for r in results) / 1000
        return [from_ultralytics(r) for r in results]
