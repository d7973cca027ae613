"""The ONNX YOLO detector on real PETS 2009 frames, and its refusals of wrong model files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from frames import iou, read_frames
from pets import pets_truth, pets_video

from crowdwatch.contracts.errors import ModelError
from crowdwatch.edge.detector import (
    OnnxYoloDetector,
    Shape,
    check_yolo_signature,
    expected_anchors,
    letterbox,
)

FRAMES = range(0, 100, 10)  # ten frames, 1 s apart


@pytest.fixture(scope="module")
def model_path(shared_dir: Path) -> Path:
    path = shared_dir / "models" / "yolo11n_coco_640.onnx"
    if not path.is_file():
        pytest.skip(f"detector model not found at {path}")
    return path


@pytest.fixture(scope="module")
def detector(model_path: Path) -> OnnxYoloDetector:
    return OnnxYoloDetector(model_path, input_size=640, confidence=0.25, iou=0.7)


@pytest.mark.data
def test_counts_people_on_pets_frames(detector: OnnxYoloDetector, shared_dir: Path) -> None:
    truth = pets_truth(shared_dir)
    frames = read_frames(pets_video(shared_dir), FRAMES)
    errors, overlaps = [], []
    for number, image in frames.items():
        detections = detector.detect(image)
        assert set(detections.class_id.tolist()) <= {0}
        errors.append(abs(len(detections) - len(truth[number])))
        # Boxes must land on the people in frame pixels (letterbox undone correctly).
        for gt in truth[number]:
            overlaps.append(max((iou(gt, tuple(d)) for d in detections.xyxy.tolist()), default=0.0))
    assert float(np.mean(errors)) < 1.0, f"count errors per frame: {errors}"
    assert float(np.median(overlaps)) > 0.5, f"IoU of ground-truth boxes: {overlaps}"


@pytest.mark.data
def test_boxes_stay_inside_the_frame(detector: OnnxYoloDetector, shared_dir: Path) -> None:
    image = read_frames(pets_video(shared_dir), range(1))[0]
    xyxy = detector.detect(image).xyxy
    assert len(xyxy) > 0
    assert (xyxy[:, [0, 2]] >= 0).all() and (xyxy[:, [0, 2]] <= 768).all()
    assert (xyxy[:, [1, 3]] >= 0).all() and (xyxy[:, [1, 3]] <= 576).all()
    assert (xyxy[:, 2] > xyxy[:, 0]).all() and (xyxy[:, 3] > xyxy[:, 1]).all()


@pytest.mark.data
def test_a_blank_frame_has_nobody(detector: OnnxYoloDetector) -> None:
    blank = np.full((480, 640, 3), 128, dtype=np.uint8)
    assert len(detector.detect(blank)) == 0


@pytest.mark.parametrize(
    ("make_file", "input_size", "message"),
    [
        (lambda tmp, models: tmp / "missing.onnx", 640, "model file not found"),
        (lambda tmp, models: models / "yolo11n_coco.pt", 640, "use an .onnx export"),
        (lambda tmp, models: models / "yolo11n_int8_openvino_model", 640, "use an .onnx export"),
        (
            lambda tmp, models: _write(tmp / "notes.onnx", b"not a protobuf at all"),
            640,
            "not a loadable ONNX model",
        ),
        # A real YOLO export, but at 320: its head has 2100 anchors, not the 8400 of 640.
        (lambda tmp, models: models / "yolo11n_coco_int8_320.onnx", 640, "input_size is 640"),
    ],
    ids=["missing", "pt-checkpoint", "openvino-dir", "not-onnx", "wrong-size"],
)
@pytest.mark.data
def test_wrong_model_file_is_a_model_error(
    make_file: Callable[[Path, Path], Path],
    input_size: int,
    message: str,
    tmp_path: Path,
    model_path: Path,
) -> None:
    path = make_file(tmp_path, model_path.parent)
    with pytest.raises(ModelError, match=message) as excinfo:
        OnnxYoloDetector(path, input_size=input_size)
    assert str(path) in str(excinfo.value)


@pytest.mark.parametrize(
    ("inputs", "outputs", "input_size", "message"),
    [
        ([[1, 3, 640, 640]], [[1, 84, 8400]], 640, None),
        ([[1, 3, "h", "w"]], [[1, 84, "anchors"]], 640, None),  # dynamic export
        ([[1, 3, 320, 320]], [[1, 84, 2100]], 320, None),
        ([[1, 3, 640, 640]], [[1, 5, 8400]], 640, None),  # a one-class person model
        ([[1, 3, 640, 640]], [[1, 3, 640, 640]], 640, "detection output of shape"),
        ([[1, 3, 640, 640]], [[1, 84, 2100]], 640, r"\[1, 4 \+ classes \(>= 5\), 8400\]"),
        ([[1, 3, 640, 640]], [[1, 4, 8400]], 640, "detection output"),  # no class row
        ([[1, 3, 640, 640]], [[1, 84, 8400], [1, 32, 160, 160]], 640, "detection output"),  # seg
        ([[1, 3, 320, 320]], [[1, 84, 2100]], 640, "model input is 320x320"),
        ([[1, 640, 640]], [[1, 84, 8400]], 640, "one NCHW image input"),
    ],
    ids=[
        "yolo11-640",
        "dynamic",
        "yolo11-320",
        "one-class",
        "identity",
        "anchors-of-320",
        "no-classes",
        "segmentation",
        "input-size",
        "not-nchw",
    ],
)
def test_yolo_signature_check(
    inputs: list[Shape], outputs: list[Shape], input_size: int, message: str | None
) -> None:
    path = Path("model.onnx")
    if message is None:
        check_yolo_signature(path, inputs, outputs, input_size=input_size, classes=1)
        return
    with pytest.raises(ModelError, match=message):
        check_yolo_signature(path, inputs, outputs, input_size=input_size, classes=1)


@pytest.mark.data
def test_a_320_export_runs_at_its_own_size(model_path: Path, shared_dir: Path) -> None:
    small = model_path.parent / "yolo11n_coco_int8_320.onnx"
    if not small.is_file():
        pytest.skip(f"{small} not found")
    detector = OnnxYoloDetector(small, input_size=320, threads=1)
    image = read_frames(pets_video(shared_dir), range(1))[0]
    assert len(detector.detect(image)) > 0


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(("size", "anchors"), [(640, 8400), (320, 2100), (1280, 33600)])
def test_expected_anchors(size: int, anchors: int) -> None:
    assert expected_anchors(size) == anchors


@pytest.mark.parametrize(
    ("frame_hw", "scale", "pad_xy"),
    [((576, 768), 640 / 768, (0, 80)), ((1080, 1920), 1 / 3, (0, 140)), ((640, 480), 1.0, (80, 0))],
    ids=["pets", "full-hd", "portrait"],
)
def test_letterbox_keeps_aspect_and_pads_grey(
    frame_hw: tuple[int, int], scale: float, pad_xy: tuple[int, int]
) -> None:
    frame = np.zeros((*frame_hw, 3), dtype=np.uint8)
    padded, box = letterbox(frame, 640)
    assert padded.shape == (640, 640, 3)
    assert box.scale == pytest.approx(scale)
    assert (box.pad_x, box.pad_y) == pad_xy
    if pad_xy[1]:
        assert (padded[0] == 114).all() and (padded[pad_xy[1]] == 0).all()
    if pad_xy[0]:
        assert (padded[:, 0] == 114).all()
