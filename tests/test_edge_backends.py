"""Detector backends behind one interface: ONNX Runtime (light) and Ultralytics (.pt, OpenVINO)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from frames import iou, read_frames
from pets import pets_truth_counts, pets_video

from crowdwatch.contracts.config import DetectorBackend, DetectorConfig
from crowdwatch.contracts.errors import ModelError
from crowdwatch.edge.detector import (
    OnnxYoloDetector,
    coco_class_ids,
    load_backend,
    load_detector,
    resolve_backend,
)

ultralytics = pytest.importorskip("ultralytics", reason="crowdwatch[ultralytics] not installed")
torch = pytest.importorskip("torch")

from crowdwatch.edge.ultralytics_adapter import UltralyticsDetector, from_ultralytics  # noqa: E402

FRAMES = range(0, 60, 20)


@pytest.fixture(scope="module")
def models(shared_dir: Path) -> Path:
    path = shared_dir / "models"
    if not (path / "yolo11n_coco.pt").is_file():
        pytest.skip(f"Ultralytics checkpoint not found under {path}")
    return path


@pytest.mark.parametrize(
    ("model", "backend", "resolved"),
    [
        ("m/yolo11n_coco_640.onnx", "auto", "onnxruntime"),
        ("m/YOLO.ONNX", "auto", "onnxruntime"),
        ("m/yolo11n_coco.pt", "auto", "ultralytics"),
        ("m/yolo11n_int8_openvino_model", "auto", "ultralytics"),
        ("yolo11n.pt", "auto", "ultralytics"),
        ("m/yolo11n_coco_640.onnx", "ultralytics", "ultralytics"),
    ],
)
def test_backend_is_chosen_from_the_model(model: str, backend: str, resolved: str) -> None:
    config = DetectorConfig(model=model, backend=DetectorBackend(backend))
    assert resolve_backend(config) is DetectorBackend(resolved)


@pytest.mark.parametrize(
    ("classes", "ids"),
    [(["person"], (0,)), (["person", "car", "bus", "truck"], (0, 2, 5, 7)), (["bus", "bus"], (5,))],
)
def test_camera_classes_map_to_coco(classes: list[str], ids: tuple[int, ...]) -> None:
    assert coco_class_ids(classes) == ids


def test_from_ultralytics_converts_a_real_result() -> None:
    from ultralytics.engine.results import Results

    image = np.zeros((100, 200, 3), dtype=np.uint8)
    data = torch.tensor([[10.0, 20.0, 50.0, 90.0, 0.9, 0.0], [60.0, 5.0, 120.0, 40.0, 0.4, 2.0]])
    result = Results(image, path="x.jpg", names={0: "person", 2: "car"}, boxes=data)
    detections = from_ultralytics(result)
    assert detections.xyxy.dtype == np.float32 and detections.class_id.dtype == np.int64
    assert detections.xyxy.tolist() == [[10, 20, 50, 90], [60, 5, 120, 40]]
    assert detections.confidence.tolist() == pytest.approx([0.9, 0.4])
    assert detections.class_id.tolist() == [0, 2]
    empty = Results(image, path="x.jpg", names={0: "person"}, boxes=torch.zeros((0, 6)))
    assert len(from_ultralytics(empty)) == 0
    with pytest.raises(ValueError, match="without boxes"):
        from_ultralytics(Results(image, path="x.jpg", names={0: "person"}))


@pytest.mark.data
def test_pt_and_onnx_backends_agree_on_pets(models: Path, shared_dir: Path) -> None:
    frames = read_frames(pets_video(shared_dir), FRAMES)
    truth = pets_truth_counts(shared_dir)
    pt = load_detector(DetectorConfig(model=str(models / "yolo11n_coco.pt"), threads=2))
    onnx = load_detector(DetectorConfig(model=str(models / "yolo11n_coco_640.onnx"), threads=2))
    assert isinstance(pt, UltralyticsDetector) and isinstance(onnx, OnnxYoloDetector)
    for number, image in frames.items():
        a, b = pt.detect(image), onnx.detect(image)
        assert set(a.class_id.tolist()) <= {0}
        assert abs(len(a) - truth[number]) <= 2, (number, len(a), truth[number])
        # Same weights: every confident box of one backend has a twin in the other.
        for box in a.xyxy[a.confidence > 0.5].tolist():
            assert max(iou(box, other) for other in b.xyxy.tolist()) > 0.8
    assert pt.forward_s > 0 and onnx.forward_s > 0


@pytest.mark.data
def test_ultralytics_detects_road_classes_and_batches(models: Path, shared_dir: Path) -> None:
    detector = load_backend(
        DetectorConfig(model=str(models / "yolo11n_coco.pt"), threads=2),
        classes=["person", "car", "bus", "truck"],
    )
    frames = list(read_frames(pets_video(shared_dir), range(2)).values())
    batch = detector.detect_batch(frames)
    assert len(batch) == 2 and all(len(d) > 0 for d in batch)
    assert set(np.concatenate([d.class_id for d in batch]).tolist()) <= {0, 2, 5, 7}


@pytest.mark.data
def test_openvino_folder_loads_through_ultralytics(models: Path, shared_dir: Path) -> None:
    if importlib.util.find_spec("openvino") is None:  # importing it starts threads
        pytest.skip("openvino not installed")
    folder = models / "yolo11n_int8_openvino_model"
    # In a child process: Ultralytics' OpenVINO backend leaves an executor thread behind.
    code = (
        "import cv2\n"
        "from crowdwatch.contracts.config import DetectorConfig\n"
        "from crowdwatch.edge.detector import load_detector\n"
        f"d = load_detector(DetectorConfig(model={str(folder)!r}, threads=2))\n"
        f"ok, image = cv2.VideoCapture({str(pets_video(shared_dir))!r}).read()\n"
        "print(type(d).__name__, len(d.detect(image)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    name, found = out.stdout.split()[-2:]
    assert name == "UltralyticsDetector" and int(found) > 0, out.stderr


@pytest.mark.parametrize(
    ("make_model", "message"),
    [
        (lambda tmp: str(tmp / "missing.pt"), "model file not found"),
        (lambda tmp: str(_write(tmp / "notes.pt", b"not a checkpoint")), "could not load"),
    ],
    ids=["missing", "not-a-checkpoint"],
)
def test_wrong_ultralytics_model_is_a_model_error(make_model, message: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = make_model(tmp_path)
    with pytest.raises(ModelError, match=message) as excinfo:
        load_detector(DetectorConfig(model=model, backend=DetectorBackend.ULTRALYTICS))
    assert model in str(excinfo.value)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.data
def test_the_light_path_never_imports_torch(shared_dir: Path) -> None:
    model = shared_dir / "models" / "yolo11n_coco_640.onnx"
    code = (
        "import sys, numpy as np\n"
        "from crowdwatch.contracts.config import DetectorConfig\n"
        "from crowdwatch.edge.detector import load_detector\n"
        "import crowdwatch.edge.service, crowdwatch.edge.tiling\n"
        f"d = load_detector(DetectorConfig(model={str(model)!r}, tiles={{'size': 320}}))\n"
        "d.detect(np.zeros((480, 640, 3), np.uint8))\n"
        "print(sorted(m for m in ('torch', 'ultralytics') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]", out.stderr
