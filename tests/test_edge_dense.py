"""The density-map crowd counter on the edge, with a tiny ONNX model whose density is known.

The model (``factories.red_density_model``) is one fixed convolution: each 8x8 cell's density
is the mean red level of its pixels (RGB in [0, 1]), so a fully red cell holds exactly one
person and the padding (black) holds none.  That pins every count without depending on the
trained network.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from factories import make_config, red_density_model, site_dict
from numpy.typing import NDArray

import crowdwatch
from crowdwatch.contracts.config import (
    Camera,
    CountMode,
    DenseAutoConfig,
    DenseConfig,
    DetectorConfig,
    TilingConfig,
    TrackingConfig,
    default_crowd_counter_path,
)
from crowdwatch.contracts.errors import ConfigError, ModelError
from crowdwatch.contracts.messages import (
    CountMessage,
    CountMethod,
    StatusMessage,
    ZoneCount,
    decode_counts,
    decode_status,
    encode,
)
from crowdwatch.edge.counting import (
    CameraCounter,
    DetectorView,
    auto_method,
    detector_magnification,
    uses_density,
)
from crowdwatch.edge.dense import (
    DensityCounter,
    DensityMap,
    FrameQuality,
    rasterise_polygon,
)
from crowdwatch.edge.density_correction import DensityCorrection, correction_path, save_correction
from crowdwatch.edge.detections import Detections
from crowdwatch.edge.source import open_camera
from crowdwatch.edge.worker import CameraWorker, DensitySchedule

onnx = pytest.importorskip("onnx")

Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, end exclusive


@pytest.fixture(scope="module")
def red_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``density = conv8x8/stride8(R) / 64``: a cell's mean red level, free height and width."""
    return red_density_model(tmp_path_factory.mktemp("models") / "red_density.onnx")


@pytest.fixture(scope="module")
def counter(red_model: Path) -> DensityCounter:
    return DensityCounter(red_model, threads=1)


def red_frame(height: int, width: int, rects: list[Rect], *, base: int = 60) -> NDArray[np.uint8]:
    """A BGR frame, grey-green textured background without red, red rectangles.

    The texture is smooth over a few pixels, as a scene is: pixel-by-pixel noise is what
    the quality check calls static.
    """
    rng = np.random.default_rng(height * 10_007 + width)
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    coarse = rng.integers(base, base + 80, (height // 4 + 1, width // 4 + 1), dtype=np.uint8)
    frame[:, :, 1] = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR)
    for x0, y0, x1, y1 in rects:
        frame[y0:y1, x0:x1, 2] = 255
    return frame


def box(rect: Rect) -> list[tuple[float, float]]:
    x0, y0, x1, y1 = rect
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


# --- preprocessing: any frame, cells in the frame's coordinates ---------------------------


def as_format(frame: NDArray[np.uint8], fmt: str) -> NDArray[np.uint8]:
    """The frame as the format asked for; grey takes the red channel as its level."""
    if fmt == "bgr":
        return frame
    if fmt == "bgra":
        return np.asarray(cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA), dtype=np.uint8)
    grey = np.ascontiguousarray(frame[:, :, 2])
    return grey if fmt == "grey" else grey[:, :, None]


@pytest.mark.parametrize(
    ("height", "width", "fmt", "red", "max_side", "cell_px"),
    [
        # odd size: the last cell row (5 px) and column (5 px) reach past the frame
        (37, 53, "bgr", (0, 8, 24, 37), 1920, 8.0),
        (37, 53, "grey", (0, 8, 24, 37), 1920, 8.0),
        (37, 53, "grey1", (8, 0, 53, 16), 1920, 8.0),
        (480, 641, "bgra", (320, 240, 641, 480), 1920, 8.0),
        # tiny: padded up to the 64x64 the backbone needs, the padding cropped off again
        (5, 7, "bgr", (0, 0, 7, 5), 1920, 8.0),
        (3, 100, "grey", (40, 0, 100, 3), 1920, 8.0),
        # larger than max_side: downscaled 4x, so a cell covers 32x32 frame pixels
        (1920, 2560, "bgr", (0, 640, 1024, 1920), 640, 32.0),
        (2560, 1280, "grey", (640, 0, 1280, 1280), 640, 32.0),
    ],
)
def test_cells_map_back_to_the_frame(
    red_model: Path,
    height: int,
    width: int,
    fmt: str,
    red: Rect,
    max_side: int,
    cell_px: float,
) -> None:
    counter = DensityCounter(red_model, threads=1, max_side=max_side)
    density = counter.density(as_format(red_frame(height, width, [red]), fmt))

    assert density.frame_shape == (height, width)
    assert density.cell_size == (cell_px, cell_px)
    assert density.cells.shape == (math.ceil(height / cell_px), math.ceil(width / cell_px))
    assert density.cells.dtype == np.float32
    # Every red pixel is 1/cell² of a person: the count is the red area in cells.
    x0, y0, x1, y1 = red
    people = (x1 - x0) * (y1 - y0) / cell_px**2
    assert density.total() == pytest.approx(people, rel=1e-5)
    # The red rectangle, drawn in frame pixels, holds them all; the rest of the frame none.
    assert density.in_polygon(box(red)) == pytest.approx(people, rel=1e-5)
    outside = np.ones((height, width), dtype=bool)
    outside[y0:y1, x0:x1] = False
    assert density.in_mask(outside) == pytest.approx(0.0, abs=1e-5)


def test_a_downscaled_frame_keeps_its_counts(red_model: Path) -> None:
    small = DensityCounter(red_model, threads=1, max_side=640)
    full = DensityCounter(red_model, threads=1)
    frame = red_frame(1280, 1280, [(0, 0, 640, 320), (960, 960, 1280, 1280)])

    a, b = small.density(frame), full.density(frame)

    assert a.cells.shape == (80, 80) and b.cells.shape == (160, 160)
    assert a.total() == pytest.approx(b.total() / 4, rel=1e-5)  # cells 4x the area
    half = [(0.0, 0.0), (1280.0, 0.0), (1280.0, 640.0), (0.0, 640.0)]
    assert a.in_polygon(half) / a.total() == pytest.approx(b.in_polygon(half) / b.total())


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (None, "frame: expected a uint8 image array, got None"),
        ([[1, 2], [3, 4]], "frame: expected a uint8 image array, got list"),
        (np.zeros((32, 32, 3), dtype=np.float32), "frame: expected dtype uint8, got float32"),
        (np.zeros((0, 32, 3), dtype=np.uint8), r"frame: the image is empty \(shape \(0, 32, 3\)\)"),
        (np.zeros((32, 32, 2), dtype=np.uint8), r"got shape \(32, 32, 2\)"),
        (np.zeros((1, 32, 32, 3), dtype=np.uint8), r"got shape \(1, 32, 32, 3\)"),
    ],
)
def test_bad_frames_are_named(counter: DensityCounter, frame: Any, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        counter.density(frame)


# --- regions: polygons and masks ---------------------------------------------------------


@pytest.fixture(scope="module")
def noisy(red_model: Path) -> DensityMap:
    """A density map with a different value in every cell, of cells 12.5 frame pixels wide."""
    frame = np.random.default_rng(7).integers(0, 256, (700, 1000, 3), dtype=np.uint8)
    return DensityCounter(red_model, threads=1, max_side=640).density(frame)


def test_the_whole_frame_holds_the_total(noisy: DensityMap) -> None:
    height, width = noisy.frame_shape
    assert noisy.cell_size == (12.5, 12.5)
    assert noisy.in_polygon(box((0, 0, width, height))) == pytest.approx(noisy.total(), rel=1e-9)
    # Parts of a polygon outside the frame count nothing.
    assert noisy.in_polygon(box((-50, -50, width + 50, height + 50))) == pytest.approx(
        noisy.total(), rel=1e-9
    )
    assert noisy.in_mask(np.ones((height, width), dtype=bool)) == pytest.approx(noisy.total())


@pytest.mark.parametrize(
    ("first", "second"),
    [
        # a vertical split through the middle of cells (x = 333.3)
        (
            [(0, 0), (1000 / 3, 0), (1000 / 3, 700), (0, 700)],
            [(1000 / 3, 0), (1000, 0), (1000, 700), (1000 / 3, 700)],
        ),
        # a diagonal split, the shared edge drawn in opposite directions
        ([(0, 0), (1000, 0), (0, 700)], [(1000, 0), (1000, 700), (0, 700)]),
        # a slanted cut between two quadrilaterals
        (
            [(0, 0), (610.7, 0), (377.2, 700), (0, 700)],
            [(610.7, 0), (1000, 0), (1000, 700), (377.2, 700)],
        ),
    ],
)
def test_two_halves_add_up_to_the_total(
    noisy: DensityMap, first: list[tuple[float, float]], second: list[tuple[float, float]]
) -> None:
    a, b = noisy.in_polygon(first), noisy.in_polygon(second)
    assert 0 < a < noisy.total() and 0 < b < noisy.total()
    assert a + b == pytest.approx(noisy.total(), rel=1e-9)


def test_a_mask_and_its_polygon_agree(noisy: DensityMap) -> None:
    polygon = [(100.0, 50.0), (700.0, 120.0), (520.0, 640.0), (60.0, 500.0)]
    mask = rasterise_polygon(polygon, noisy.frame_shape)
    assert noisy.in_mask(mask) == pytest.approx(noisy.in_polygon(polygon), rel=1e-9)
    with pytest.raises(ValueError, match=r"mask: expected the frame's shape \(700, 1000\)"):
        noisy.in_mask(np.ones((70, 100), dtype=bool))
    with pytest.raises(ValueError, match="polygon: expected at least 3 points, got 2"):
        noisy.in_polygon([(0, 0), (10, 10)])


def test_adjacent_polygons_share_no_pixel() -> None:
    # OpenCV's fillPoly draws a shared edge into both polygons; zones must not count it twice.
    left = rasterise_polygon([(0, 0), (3.3, 0), (7.0, 10), (0, 10)], (10, 10))
    right = rasterise_polygon([(3.3, 0), (10, 0), (10, 10), (7.0, 10)], (10, 10))
    assert not (left & right).any()
    assert (left | right).all()
    # A pixel is left when its centre is left of the edge x = 3.3 + 0.37 y.
    centres_left = [[c + 0.5 < 3.3 + 0.37 * (r + 0.5) for c in range(10)] for r in range(10)]
    assert left.tolist() == centres_left


def test_a_density_map_must_cover_its_frame() -> None:
    ok = FrameQuality(True, None)
    with pytest.raises(ValueError, match="covering a 40x24 frame, got shape"):
        DensityMap(np.zeros((4, 3), dtype=np.float32), (40, 24), ok)


# --- frame quality ---------------------------------------------------------------------------


CELLS = 120 * 160 / 64  # a 160x120 frame all red would hold this many people


@pytest.mark.parametrize(
    ("frame", "reason", "people"),
    [
        (np.zeros((120, 160, 3), dtype=np.uint8), "too dark (mean 0/255)", 0.0),
        (np.full((120, 160, 3), 6, dtype=np.uint8), "too dark (mean 6/255)", CELLS * 6 / 255),
        (
            np.full((120, 160, 3), 255, dtype=np.uint8),
            "blown out (100% of pixels saturated)",
            CELLS,
        ),
        (
            np.full((120, 160), 128, dtype=np.uint8),
            "flat/no detail (grey levels vary by 0.0)",
            CELLS * 128 / 255,
        ),
        (red_frame(120, 160, [(8, 8, 48, 48)]), None, 40 * 40 / 64),
    ],
)
def test_frame_quality(
    counter: DensityCounter, frame: NDArray[np.uint8], reason: str | None, people: float
) -> None:
    density = counter.density(frame)
    assert density.quality == FrameQuality(reason is None, reason)
    # The count is made either way; callers warn about it.
    assert density.total() == pytest.approx(people, rel=1e-5, abs=1e-6)


# --- the model file ---------------------------------------------------------------------------


def test_a_missing_model_names_its_path(tmp_path: Path) -> None:
    path = tmp_path / "models" / "crowd_counter.onnx"
    with pytest.raises(ModelError, match=f"{path}: crowd-counter model not found"):
        DensityCounter(path)
    with pytest.raises(ModelError, match=f"{tmp_path}: crowd-counter model a folder"):
        DensityCounter(tmp_path)


def test_a_corrupt_model_names_its_path(tmp_path: Path) -> None:
    path = tmp_path / "crowd_counter.onnx"
    path.write_bytes(b"\x08\x07 this is not a protobuf" * 10)
    with pytest.raises(ModelError, match=f"{path}: not a loadable ONNX model"):
        DensityCounter(path)


def test_a_detector_is_not_a_density_model(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Flatten", ["images"], ["boxes"])],
        "not_density",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 12288])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "detector.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelError, match=f"{path}: expected a density model with input"):
        DensityCounter(path)


def test_the_default_model_lives_in_the_checkout() -> None:
    checkout = Path(crowdwatch.__file__).resolve().parents[1]
    assert default_crowd_counter_path() == checkout / "models" / "crowd_counter.onnx"
    assert DenseConfig().model_path() == default_crowd_counter_path()
    assert DenseConfig(model="/opt/cc.onnx").model_path() == Path("/opt/cc.onnx")


# --- config ------------------------------------------------------------------------------------


def config_with(*, mode: str = "dense", edge: dict[str, Any] | None = None) -> dict[str, Any]:
    site = site_dict()
    site["cameras"][0]["zones"][0]["mode"] = mode
    data: dict[str, Any] = {"sites": [site]}
    if edge is not None:
        data["edge"] = edge
    return data


def test_zones_count_by_detection_unless_told() -> None:
    config = make_config()
    assert [z.mode for _, c in config.cameras() for z in c.zones] == [CountMode.DETECT]
    assert not uses_density(config.sites[0].cameras[0])
    dense = config.edge.dense
    assert (dense.model, dense.every_n_frames, dense.run_interval_s()) == (None, None, 1.0)
    camera = make_config(**config_with(mode="auto")).sites[0].cameras[0]
    assert uses_density(camera)


@pytest.mark.parametrize(
    ("mode", "edge", "expected"),
    [
        (
            "crowd",
            None,
            r"sites\[0\]\.cameras\[0\]\.zones\[0\]\.mode: Input should be 'detect', 'dense' or 'auto'",
        ),
        (
            "dense",
            {"dense": {"every_n_frames": 5, "interval_s": 1}},
            r"edge\.dense: set every_n_frames \(5\) or interval_s \(1\), not both",
        ),
        (
            "dense",
            {"interval_s": 5, "dense": {"interval_s": 10}},
            r"edge: dense\.interval_s \(10 s\) is longer than interval_s \(5 s\)",
        ),
        (
            "auto",
            {
                "dense": {
                    "auto": {
                        "small_person_px": None,
                        "packed_share": None,
                        "unseen_min": None,
                        "crowded_count": None,
                        "undercount_ratio": None,
                        "quiet_max": None,
                    }
                }
            },
            r"edge\.dense\.auto: small_person_px, packed_share, unseen_min, crowded_count, "
            r"undercount_ratio and quiet_max are all null",
        ),
        (
            "dense",
            {"dense": {"model": "models/crowd_counter.pt"}},
            r"edge\.dense\.model: expected the path of an \.onnx file, got 'models/crowd_counter\.pt'",
        ),
        (
            "dense",
            {"dense": {"every_n_frames": 0}},
            r"edge\.dense\.every_n_frames: Input should be",
        ),
        ("dense", {"dense": {"max_side": 32}}, r"edge\.dense\.max_side: Input should be"),
        ("dense", {"dense": {"colour": "red"}}, r"edge\.dense\.colour: unknown key"),
    ],
)
def test_bad_dense_config_names_the_yaml_path(
    mode: str, edge: dict[str, Any] | None, expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        make_config(**config_with(mode=mode, edge=edge))


# --- the auto rule -------------------------------------------------------------------------------

RULE = DenseAutoConfig(small_person_px=40, crowded_count=30, undercount_ratio=0.5, undercount_min=5)


WHOLE_PETS = DetectorView(magnification=1.0, zone_area_px=640 * 480)
TILED_BEACH = DetectorView(magnification=2.0, zone_area_px=1920 * 1080)
WHOLE_BEACH = DetectorView(magnification=640 / 1920, zone_area_px=1920 * 1080)


@pytest.mark.parametrize(
    ("rule", "heights", "dense_count", "frame_ok", "view", "expected"),
    [
        (RULE, [90.0, 110.0, 100.0], 3.1, True, WHOLE_PETS, CountMethod.DETECT),  # big, agreeing
        (RULE, [20.0, 35.0, 90.0], 3.1, True, WHOLE_PETS, CountMethod.DENSE),  # median 35: small
        # the same people in 320 px tiles fitted to 640: 70 px to the detector, not small
        (RULE, [20.0, 35.0, 90.0], 3.1, True, TILED_BEACH, CountMethod.DETECT),
        # 25 px people over a whole 1920 px frame fitted to 640: 8 px to it, small
        (RULE, [25.0] * 5, 6.0, True, WHOLE_BEACH, CountMethod.DENSE),
        (
            RULE,
            [100.0] * 30,
            31.0,
            True,
            WHOLE_PETS,
            CountMethod.DENSE,
        ),  # 30 boxes: crowded, packed
        (RULE, [100.0] * 4, 12.0, True, WHOLE_PETS, CountMethod.DENSE),  # 4 of 12: missed people
        (RULE, [], 4.0, True, WHOLE_PETS, CountMethod.DETECT),  # nearly empty: density noise
        (RULE, [20.0, 35.0, 90.0], 40.0, False, WHOLE_PETS, CountMethod.DETECT),  # dark frame
        (
            DenseAutoConfig(small_person_px=None, crowded_count=None, undercount_ratio=0.9),
            [20.0] * 40,
            40.0,
            True,
            WHOLE_PETS,
            CountMethod.DETECT,  # the undercount rule does not hold; 40 x 20² is 5% of the zone
        ),
        # The defaults: packed people (squared heights cover >= 0.3 of the zone) go to density,
        (DenseAutoConfig(), [60.0] * 30, 20.0, True, WHOLE_PETS, CountMethod.DENSE),
        # 90 people spread over a beach do not, however much the density map says,
        (DenseAutoConfig(), [26.0] * 90, 300.0, True, TILED_BEACH, CountMethod.DETECT),
        # and neither do 4 walkers a density map reads as 12;
        (DenseAutoConfig(), [100.0] * 4, 12.0, True, WHOLE_PETS, CountMethod.DETECT),
        # people too small to detect at all, where the density map sees 9, do.
        (DenseAutoConfig(), [], 9.0, True, TILED_BEACH, CountMethod.DENSE),
        (DenseAutoConfig(), [], 4.0, True, TILED_BEACH, CountMethod.DETECT),
    ],
)
def test_auto_picks_a_method(
    rule: DenseAutoConfig,
    heights: list[float],
    dense_count: float,
    frame_ok: bool,
    view: DetectorView,
    expected: CountMethod,
) -> None:
    sure = np.full(len(heights), 0.9)  # the quiet rule has its own table below
    method = auto_method(rule, np.array(heights), dense_count, frame_ok, view, confidence=sure)
    assert method is expected


@pytest.mark.parametrize(
    ("heights", "confidence", "dense_count", "frame_ok", "expected"),
    [
        # Generated ground in 320 px tiles: boxes the detector half believes where the map
        # holds nobody (paving, rock, gravel, sand; scores 0.15-0.6): the map's reading.
        ([40.0, 30.0, 25.0], [0.61, 0.57, 0.45], 0.0, True, CountMethod.DENSE),
        ([318.0, 318.0, 318.0], [0.22, 0.21, 0.19], 0.0, True, CountMethod.DENSE),
        ([45.0], [0.2], 0.9, True, CountMethod.DENSE),
        # one box the detector is sure of is evidence of a person the map missed,
        ([40.0, 30.0, 25.0], [0.61, 0.92, 0.45], 0.0, True, CountMethod.DETECT),
        # a map that holds a person or more is no quiet zone (a real empty beach morning
        # reads 2.5-44: boxes stay, the rule is not about it),
        ([20.0, 25.0, 18.0, 25.0], [0.22, 0.21, 0.19, 0.16], 2.5, True, CountMethod.DETECT),
        ([45.0], [0.2], 1.0, True, CountMethod.DETECT),
        # nobody detected: boxes' 0 is already the quiet count,
        ([], [], 0.3, True, CountMethod.DETECT),
        # and an unusable frame's map is no evidence at all.
        ([40.0, 30.0, 25.0], [0.2, 0.2, 0.2], 0.0, False, CountMethod.DETECT),
    ],
)
def test_auto_counts_quiet_ground_by_its_density_map(
    heights: list[float],
    confidence: list[float],
    dense_count: float,
    frame_ok: bool,
    expected: CountMethod,
) -> None:
    method = auto_method(
        DenseAutoConfig(),
        np.array(heights),
        dense_count,
        frame_ok,
        TILED_BEACH,
        confidence=np.array(confidence),
    )
    assert method is expected


def test_the_quiet_rule_can_be_switched_off() -> None:
    rule = DenseAutoConfig(quiet_max=None)
    unsure = np.array([0.2, 0.3])
    heights = np.array([40.0, 50.0])
    assert auto_method(rule, heights, 0.0, True, TILED_BEACH, confidence=unsure) is (
        CountMethod.DETECT
    )


def test_the_detector_sees_tiled_people_larger_and_whole_frames_smaller() -> None:
    tiled = DetectorConfig(model="m.onnx", tiles=TilingConfig(size=320), input_size=640)
    assert detector_magnification(tiled, (1920, 1080)) == 2.0
    assert detector_magnification(DetectorConfig(model="m.onnx"), (768, 576)) == 640 / 768
    assert detector_magnification(None, (1920, 1080)) == 1.0


# --- CameraCounter: zones counted by density ---------------------------------------------------

WIDTH, HEIGHT = 96, 64
LEFT = (0, 0, 48, 64)
RIGHT = (48, 0, 96, 64)


def dense_camera(
    left_mode: str = "dense", right_mode: str = "detect", source: str = "simulated"
) -> Camera:
    site = site_dict(source=source)
    cam = site["cameras"][0]
    cam["frame_size"] = [WIDTH, HEIGHT]
    cam["zones"] = [
        {"id": "left", "name": {"zh": "左", "en": "Left"}, "polygon": box(LEFT), "mode": left_mode},
        {
            "id": "right",
            "name": {"zh": "右", "en": "Right"},
            "polygon": box(RIGHT),
            "mode": right_mode,
        },
    ]
    # 10 pixels a metre: the left zone is 4.8 m x 6.4 m of ground.
    cam["calibration"] = {
        "image_points": [[0, 0], [96, 0], [96, 64], [0, 64]],
        "ground_points_m": [[0, 0], [9.6, 0], [9.6, 6.4], [0, 6.4]],
    }
    return make_config(sites=[site]).sites[0].cameras[0]


def people(xyxy: list[tuple[float, float, float, float]]) -> Detections:
    return Detections(
        xyxy=np.array(xyxy, dtype=np.float32).reshape(-1, 4),
        confidence=np.full(len(xyxy), 0.9, dtype=np.float32),
        class_id=np.zeros(len(xyxy), dtype=np.int64),
    )


def zones_of(message: CountMessage | None) -> dict[str, ZoneCount]:
    assert message is not None
    return {z.zone_id: z for z in message.zones}


def test_a_dense_zone_publishes_the_density_integral(counter: DensityCounter) -> None:
    camera = dense_camera()
    cc = CameraCounter("stop-a", camera, TrackingConfig(enabled=False), 10.0)
    # Six red cells and a half-red one in the left zone, three red cells in the right one.
    frame = red_frame(HEIGHT, WIDTH, [(8, 8, 32, 24), (8, 24, 16, 28), (56, 40, 80, 48)])
    density = counter.density(frame)
    expected_left = density.in_polygon(box(LEFT))
    assert expected_left == pytest.approx(6.5, rel=1e-5)
    # The detector sees one person on the right, nobody on the left.
    one_right = people([(60, 30, 70, 50)])

    cc.observe(one_right, 0.0, (WIDTH, HEIGHT), density)
    cc.observe(one_right, 0.1, (WIDTH, HEIGHT))  # between passes the zone keeps its count
    zones = zones_of(cc.finish(datetime.now(UTC), 1.0))

    left, right = zones["left"], zones["right"]
    assert (left.method, right.method) == (CountMethod.DENSE, CountMethod.DETECT)
    assert left.count == round(expected_left) and left.count_max == round(expected_left)
    assert left.count_mean == pytest.approx(round(expected_left, 3))
    assert left.density_per_m2 == pytest.approx(round(expected_left / (4.8 * 6.4), 3))
    assert (right.count, right.count_mean) == (1, 1.0)
    assert right.density_per_m2 == pytest.approx(round(1 / (4.8 * 6.4), 3))
    # The new field survives the wire.
    assert decode_counts(encode(cc_message(zones))).zones[0].method is CountMethod.DENSE


def cc_message(zones: dict[str, ZoneCount]) -> CountMessage:
    return CountMessage(
        site_id="stop-a",
        camera_id="cam1",
        ts=datetime.now(UTC),
        interval_s=1.0,
        frames=2,
        zones=list(zones.values()),
    )


def test_a_dense_zone_counts_by_detection_until_the_first_pass() -> None:
    cc = CameraCounter("stop-a", dense_camera(), TrackingConfig(enabled=False), 10.0)
    cc.observe(people([(10, 10, 20, 40)]), 0.0, (WIDTH, HEIGHT))
    left = zones_of(cc.finish(datetime.now(UTC), 1.0))["left"]
    assert (left.count, left.method) == (1, CountMethod.DETECT)


def test_an_auto_zone_switches_with_what_it_sees(counter: DensityCounter) -> None:
    # The undercount rule alone: in this 48x64 toy zone two people already cover it (packed).
    rule = DenseAutoConfig(packed_share=None, undercount_ratio=0.5)
    cc = CameraCounter(
        "stop-a",
        dense_camera(left_mode="auto"),
        TrackingConfig(enabled=False),
        10.0,
        DenseConfig(auto=rule),
    )
    # Two tall people on the left, and the density map agrees: detection is trusted.
    two_tall = people([(4, 2, 20, 60), (24, 2, 40, 60)])
    calm = counter.density(red_frame(HEIGHT, WIDTH, [(8, 8, 24, 16)]))
    cc.observe(two_tall, 0.0, (WIDTH, HEIGHT), calm)
    left = zones_of(cc.finish(datetime.now(UTC), 1.0))["left"]
    assert (left.count, left.method) == (2, CountMethod.DETECT)

    # A packed crowd the detector misses: 2 boxes against 24 people of density.
    packed = counter.density(red_frame(HEIGHT, WIDTH, [(0, 0, 48, 32)]))
    cc.observe(two_tall, 1.0, (WIDTH, HEIGHT), packed)
    left = zones_of(cc.finish(datetime.now(UTC), 1.0))["left"]
    assert (left.count, left.method) == (round(packed.in_polygon(box(LEFT))), CountMethod.DENSE)
    assert left.count == 24


def test_an_auto_zone_takes_an_empty_map_over_boxes_the_detector_doubts(
    counter: DensityCounter,
) -> None:
    # Tall boxes (not small; the toy zone is too small for the packed rule) on bare ground.
    rule = DenseAutoConfig(packed_share=None)
    cc = CameraCounter(
        "stop-a",
        dense_camera(left_mode="auto"),
        TrackingConfig(enabled=False),
        10.0,
        DenseConfig(auto=rule),
    )
    bare = counter.density(red_frame(HEIGHT, WIDTH, []))
    assert rule.quiet_max is not None and bare.in_polygon(box(LEFT)) < rule.quiet_max
    doubted = people([(4, 2, 20, 60), (24, 2, 40, 60)])
    doubted = Detections(doubted.xyxy, np.array([0.3, 0.5], np.float32), doubted.class_id)
    cc.observe(doubted, 0.0, (WIDTH, HEIGHT), bare)
    left = zones_of(cc.finish(datetime.now(UTC), 1.0))["left"]
    assert (left.count, left.method) == (0, CountMethod.DENSE)
    # One box the detector is sure of: the people are there, whatever the map says.
    sure = Detections(doubted.xyxy, np.array([0.3, 0.9], np.float32), doubted.class_id)
    cc.observe(sure, 1.0, (WIDTH, HEIGHT), bare)
    left = zones_of(cc.finish(datetime.now(UTC), 1.0))["left"]
    assert (left.count, left.method) == (2, CountMethod.DETECT)


def test_a_density_map_of_another_frame_is_refused(counter: DensityCounter) -> None:
    cc = CameraCounter("stop-a", dense_camera(), TrackingConfig(enabled=False), 10.0)
    other = counter.density(red_frame(HEIGHT * 2, WIDTH, []))
    with pytest.raises(ValueError, match="expected a map of the 96x64 frame, got one of 96x128"):
        cc.observe(Detections.empty(), 0.0, (WIDTH, HEIGHT), other)


@pytest.mark.parametrize(
    ("config", "times", "expected"),
    [
        (DenseConfig(every_n_frames=3), [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [1, 0, 0, 1, 0, 0, 1]),
        (
            DenseConfig(interval_s=0.5),
            [i / 10 for i in range(12)],
            [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0],
        ),
        (DenseConfig(), [0.0, 0.9, 1.0, 5.0, 5.5, 6.0], [1, 0, 1, 1, 0, 1]),
    ],
)
def test_density_schedule(config: DenseConfig, times: list[float], expected: list[int]) -> None:
    schedule = DensitySchedule(config)
    assert [int(schedule.due(ts)) for ts in times] == expected


# --- the worker: a video through the whole edge loop ------------------------------------------


class NobodyDetector:
    """The detector seam: this test is about the density path, which needs no boxes."""

    def detect(self, frame: NDArray[np.uint8]) -> Detections:
        return Detections.empty()


@dataclass
class Sink:
    messages: list[tuple[str, bytes]] = field(default_factory=list)

    def __call__(self, topic: str, payload: bytes, retain: bool) -> None:
        self.messages.append((topic, payload))

    def counts(self) -> list[CountMessage]:
        return [decode_counts(p) for t, p in self.messages if t.endswith("/counts")]

    def statuses(self) -> list[StatusMessage]:
        return [decode_status(p) for t, p in self.messages if t.endswith("/status")]


def write_video(path: Path, frames: list[NDArray[np.uint8]], fps: float = 10.0) -> None:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"FFV1"), fps, (width, height))
    assert writer.isOpened(), "OpenCV cannot write FFV1 here"
    for frame in frames:
        writer.write(frame)
    writer.release()


def run_dense_worker(
    video: Path, counter: DensityCounter, *, interval_s: float, dense: DenseConfig | None = None
) -> Sink:
    """Run a worker over ``video`` (a :func:`dense_camera`, nobody detected) to its end."""
    camera = dense_camera(source=str(video))
    sink = Sink()
    with open_camera(camera) as source:
        CameraWorker(
            "stop-a",
            camera,
            source,
            NobodyDetector(),
            sink,
            topic_prefix="cw",
            interval_s=interval_s,
            density=counter,
            dense=dense,
        ).run(threading.Event())
    return sink


def test_a_worker_publishes_density_counts(tmp_path: Path, counter: DensityCounter) -> None:
    # 20 frames at 10 fps; frame i has i + 1 red cells in the left zone (one person each).
    frames = [
        red_frame(
            HEIGHT,
            WIDTH,
            [(8 * (i % 5), 8 * (i // 5), 8 * (i % 5) + 8, 8 * (i // 5) + 8) for i in range(n + 1)],
        )
        for n in range(20)
    ]
    # One red cell in the right zone too: counted by detection, which sees nobody.
    for frame in frames:
        frame[48:56, 64:72, 2] = 255
    video = tmp_path / "crowd.avi"
    write_video(video, frames)
    sink = run_dense_worker(video, counter, interval_s=1.0, dense=DenseConfig(every_n_frames=1))

    counts = sink.counts()
    assert [m.frames for m in counts] == [10, 10]
    for message, last in zip(counts, (10, 20), strict=True):
        zones = {z.zone_id: z for z in message.zones}
        assert (zones["left"].method, zones["right"].method) == (
            CountMethod.DENSE,
            CountMethod.DETECT,
        )
        assert zones["left"].count == last  # the interval's last frame
        assert zones["left"].count_max == last
        assert zones["left"].count_mean == pytest.approx(last - 4.5)  # mean of last-9 .. last
        assert zones["right"].count == 0
    assert all(s.inference_ms > 0 for s in sink.statuses())
    assert not any("density" in s.detail for s in sink.statuses())


def test_a_worker_says_when_frames_are_too_dark(tmp_path: Path, counter: DensityCounter) -> None:
    video = tmp_path / "night.avi"
    write_video(video, [np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)] * 10)
    sink = run_dense_worker(video, counter, interval_s=0.5)
    first, last = sink.statuses()
    assert first.detail == "density map unreliable: too dark (mean 0/255)"
    # The last status closes with the file: offline says why, which matters more.
    assert "density" not in last.detail
    counts = sink.counts()
    assert len(counts) == 2
    for message in counts:  # the dark map is not used: detection until a usable frame
        zones = {z.zone_id: z for z in message.zones}
        assert (zones["left"].count, zones["left"].method) == (0, CountMethod.DETECT)


# --- a camera's correction (crowdwatch train counter --adapt) -----------------------------------


def corrected_model(red_model: Path, folder: Path, gains: list[list[float]]) -> Path:
    """A copy of the red model as a camera's own, with a correction of ``gains`` beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    model = folder / "crowd_counter.onnx"
    model.write_bytes(red_model.read_bytes())
    save_correction(correction_path(model), DensityCorrection(np.array(gains, np.float32)), {})
    return model


def test_a_cameras_correction_applies_to_every_map_it_counts(
    red_model: Path, counter: DensityCounter, tmp_path: Path
) -> None:
    # Red everywhere: one person per cell, 8 x 12 cells; the left half is read at 0.25.
    frame = red_frame(HEIGHT, WIDTH, [(0, 0, WIDTH, HEIGHT)])
    model = corrected_model(red_model, tmp_path / "cam1", [[0.25, 1.0]])
    corrected = DensityCounter(model, threads=1).density(frame)
    assert counter.density(frame).total() == pytest.approx(96.0, rel=1e-5)
    assert corrected.in_polygon(box(LEFT)) == pytest.approx(0.25 * 48, rel=1e-5)
    assert corrected.in_polygon(box(RIGHT)) == pytest.approx(48.0, rel=1e-5)
    assert corrected.total() == pytest.approx(60.0, rel=1e-5)


def test_the_edge_counts_a_camera_through_its_correction(red_model: Path, tmp_path: Path) -> None:
    # As run_edge builds it: the counter of the camera's dense_model, correction beside it.
    model = corrected_model(red_model, tmp_path / "cameras" / "stop-a" / "cam1", [[0.5]])
    camera = dense_camera().model_copy(update={"dense_model": str(model)})
    counter = DensityCounter(camera.crowd_counter_path(DenseConfig()), threads=1)
    frames = [red_frame(HEIGHT, WIDTH, [(8, 8, 40, 24)])] * 10  # 8 red cells in the left zone
    video = tmp_path / "crowd.avi"
    write_video(video, frames)
    sink = run_dense_worker(video, counter, interval_s=1.0, dense=DenseConfig(every_n_frames=1))
    (message,) = sink.counts()
    left = {z.zone_id: z for z in message.zones}["left"]
    assert left.method is CountMethod.DENSE and left.count == 4  # 8 people read, gain 0.5


def test_a_broken_correction_names_its_file_and_the_fix(red_model: Path, tmp_path: Path) -> None:
    model = corrected_model(red_model, tmp_path, [[1.0]])
    correction_path(model).write_text('{"gains": [[1.0, -2.0]]}')
    with pytest.raises(
        ModelError,
        match=r"crowd_counter.correction.json: not a density "
        r"correction .*rerun `crowdwatch train counter --adapt` or delete the file",
    ):
        DensityCounter(model, threads=1)
