"""The dense counter in ``crowdwatch eval``, ``count --mode`` and ``bench dense``.

The density model (``factories.red_density_model``) is one fixed convolution: each 8x8
cell's density is the mean red level of its pixels (RGB in [0, 1]), so a fully red cell holds
exactly one person.  It pins the counts without depending on the trained network
(``models/crowd_counter.onnx``), whose accuracy ``crowdwatch eval`` itself reports.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from factories import red_density_model
from services.components import run_bench

from crowdwatch.cli import main
from crowdwatch.contracts.config import DenseAutoConfig, default_crowd_counter_path
from crowdwatch.contracts.messages import CountMethod
from crowdwatch.edge.counting import DetectorView, auto_method, detector_magnification
from crowdwatch.edge.dense import DensityCounter
from crowdwatch.edge.detector import load_detector
from crowdwatch.evaluation.bench_dense import FRAME_SIZE, bench_frames
from crowdwatch.evaluation.datasets import CountDataset, load_mall, load_pets
from crowdwatch.evaluation.scoring import DatasetRun, run_auto
from crowdwatch.evaluation.settings import recommended_detector

pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def red_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``density = conv8x8/stride8(R) / 64``: a cell's mean red level."""
    return red_density_model(tmp_path_factory.mktemp("models") / "red_density.onnx")


def red_image(path: Path, size: tuple[int, int], red: tuple[int, int, int, int] | None) -> Path:
    """A lossless BGR image: textured green (no red) with a fully red rectangle x0, y0, x1, y1."""
    width, height = size
    rng = np.random.default_rng(width * 7 + height)
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    # Smooth over a few pixels, as a scene is (pixel-by-pixel noise is "static").
    coarse = rng.integers(60, 140, (height // 4 + 1, width // 4 + 1), dtype=np.uint8)
    frame[:, :, 1] = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR)
    if red is not None:
        x0, y0, x1, y1 = red
        frame[y0:y1, x0:x1, 2] = 255
    assert cv2.imwrite(str(path), frame)
    return path


def json_lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


# --- crowdwatch count --mode ----------------------------------------------------------------


def test_count_dense_prints_the_density_count(
    red_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A 32x32 red square: 16 cells of one person each; the left zone holds half of it.
    image = red_image(tmp_path / "square.png", (96, 64), (16, 8, 48, 40))
    args = ["count", str(image), "--mode", "dense", "--dense-model", str(red_model)]
    assert main([*args, "--json"]) == 0
    (row,) = json_lines(capsys.readouterr().out)
    assert row["count"] == pytest.approx(16.0, abs=0.01)
    assert (row["method"], row["quality"], row["zone"]) == ("dense", None, False)
    assert main([*args, "--json", "--zone", "0,0,32,0,32,64,0,64"]) == 0
    (half,) = json_lines(capsys.readouterr().out)
    assert half["count"] == pytest.approx(8.0, abs=0.01) and half["zone"] is True
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "16.0 people" in captured.out and "[dense]" in captured.out
    assert "1 frames, mean 16.00 people per frame" in captured.err


@pytest.mark.data
def test_count_auto_follows_the_edge_rule(
    shared_dir: Path, red_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dense = ["--mode", "auto", "--dense-model", str(red_model), "--json"]
    # Nobody to detect on a textured field, 9 people by density (>= unseen_min 5): dense.
    field = red_image(tmp_path / "field.png", (640, 480), (100, 100, 124, 124))
    assert main(["count", str(field), *dense]) == 0
    (row,) = json_lines(capsys.readouterr().out)
    assert row["method"] == "dense" and row["count"] == pytest.approx(9.0, abs=0.01)
    # PETS walkers (60-150 px tall) and no red at all, so a density of 0: detection counts.
    capture = cv2.VideoCapture(str(shared_dir / "data" / "pets2009_s2l1" / "vtest.avi"))
    ok, frame = capture.read()
    capture.release()
    assert ok
    frame[:, :, 2] = 0
    walkway = tmp_path / "walkway.png"
    assert cv2.imwrite(str(walkway), frame)
    assert main(["count", str(walkway), "--json"]) == 0
    (detected,) = json_lines(capsys.readouterr().out)
    assert main(["count", str(walkway), *dense]) == 0
    (auto,) = json_lines(capsys.readouterr().out)
    assert auto["method"] == "detect" and auto["count"] == detected["count"]
    assert isinstance(detected["count"], int) and detected["count"] > 0


def test_count_refuses_a_missing_or_broken_density_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = red_image(tmp_path / "x.png", (64, 64), None)
    missing = tmp_path / "nowhere" / "crowd_counter.onnx"
    assert main(["count", str(image), "--mode", "dense", "--dense-model", str(missing)]) == 2
    err = capsys.readouterr().err
    assert "crowdwatch count: error: --dense-model: no crowd-counter model at" in err
    assert str(missing) in err
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a protobuf")
    assert main(["count", str(image), "--mode", "auto", "--dense-model", str(broken)]) == 2
    err = capsys.readouterr().err
    assert f"{broken}: not a loadable ONNX model" in err


# --- crowdwatch eval --------------------------------------------------------------------------


def test_eval_refuses_bad_methods_and_a_missing_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "crowd_counter.onnx"
    assert main(["eval", "--methods", "dense", "--dense-model", str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"crowdwatch eval: error: --dense-model: no density model at {missing}" in err
    assert main(["eval", "--methods", "detect,boxes"]) == 2
    assert "--methods: expected a comma-separated list of detect, dense" in capsys.readouterr().err


def test_eval_without_data_names_what_it_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CROWDWATCH_SHARED_DIR", str(tmp_path))
    assert main(["eval", "--json"]) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out.splitlines()[-1])
    if default_crowd_counter_path().is_file():
        assert report["methods"] == ["detect", "dense"]
    else:  # detection alone, and the message says why
        assert report["methods"] == ["detect"]
        assert f"dense: skipped, no density model at {default_crowd_counter_path()}" in (
            captured.err
        )


@pytest.mark.data
def test_eval_scores_dense_on_the_mall_frames_it_was_not_trained_on(
    shared_dir: Path, red_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["eval", "--datasets", "mall", "--no-lines", "--json", "--dense-model", str(red_model)]
    assert main([*args, "--methods", "dense"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out.splitlines()[-1])
    (row,) = report["datasets"]
    truths = load_mall(shared_dir).truths  # frame N is truths[N - 1]
    assert (row["method"], row["numbers"], row["frames"]) == ("dense", "641-800", 160)
    assert row["mean_truth"] == pytest.approx(np.mean(truths[640:800]), abs=0.005)
    assert row["mae_pct"] == pytest.approx(100 * row["mae"] / row["mean_truth"], rel=1e-3)
    assert "dense" in captured.out and "641-800" in captured.out  # the table says so too


@pytest.mark.data
def test_eval_reports_both_methods_on_the_same_frames(
    shared_dir: Path, red_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["eval", "--datasets", "mall", "--limit", "2", "--no-lines", "--json"]
    assert main([*args, "--dense-model", str(red_model)]) == 0
    out = capsys.readouterr().out.splitlines()
    report = json.loads(out[-1])
    assert report["methods"] == ["detect", "dense"]
    rows = {(r["method"], r["subset"]): r for r in report["datasets"]}
    assert set(rows) == {
        ("detect", "all"),
        ("detect", "odd (held out)"),
        ("detect", "as dense"),
        ("dense", "not trained on"),
    }
    dense, like = rows[("dense", "not trained on")], rows[("detect", "as dense")]
    assert dense["numbers"] == like["numbers"] == "641-800"
    assert dense["frames"] == like["frames"] == 2
    assert dense["mean_truth"] == like["mean_truth"]
    assert rows[("detect", "all")]["numbers"] == "1-800"
    for row in report["datasets"]:
        assert row["ms_per_frame"] > 0 and {"mae", "rmse", "mae_pct", "mean_truth"} <= set(row)
    # The dense counter sums the density over Mall's ROI: its error on frames 641 and 800.
    mall = load_mall(shared_dir)
    counter = DensityCounter(red_model)
    errors = []
    for number in (641, 800):
        image = cv2.imread(str(shared_dir / "data" / "mall" / "frames" / f"seq_{number:06d}.jpg"))
        assert image is not None and mall.roi is not None
        predicted = counter.density(np.asarray(image, dtype=np.uint8)).in_mask(mall.roi)
        errors.append(abs(predicted - mall.truths[number - 1]))
    assert dense["mae"] == pytest.approx(np.mean(errors), abs=0.001)
    # Detection's own rows do not change when the dense counter runs beside it.
    assert main([*args, "--methods", "detect"]) == 0
    alone = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert alone["methods"] == ["detect"]
    keep = ("frames", "numbers", "mean_truth", "mae", "rmse", "bias")
    assert [{k: r[k] for k in keep} for r in alone["datasets"]] == [
        {k: rows[("detect", s)][k] for k in keep} for s in ("all", "odd (held out)")
    ]
    assert any("MAE %" in line for line in out)


@pytest.mark.data
def test_eval_dense_only_skips_the_line_crossing(
    shared_dir: Path, red_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["eval", "--datasets", "pets", "--limit", "2", "--methods", "dense", "--json"]
    assert main([*args, "--dense-model", str(red_model)]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out.splitlines()[-1])
    assert [(r["method"], r["subset"], r["frames"]) for r in report["datasets"]] == [
        ("dense", "all", 2)
    ]
    assert report["lines"] == [] and "lines: skipped, line crossing follows" in captured.err


def test_select_never_picks_skipped_samples() -> None:
    dataset = CountDataset(
        name="toy",
        description="ten samples",
        keys=[str(n) for n in range(1, 11)],
        numbers=list(range(1, 11)),
        truths=[0] * 10,
        read=lambda indices: iter([]),
    )
    assert dataset.select(skip=range(1, 7)) == [6, 7, 8, 9]
    assert dataset.select("odd", skip=range(1, 7)) == [6, 8]  # numbers 7 and 9
    assert dataset.select(limit=2, skip=range(1, 7)) == [6, 9]


# --- crowdwatch bench dense -------------------------------------------------------------------


def test_bench_frames_fall_back_to_a_synthetic_1080p_frame(tmp_path: Path) -> None:
    frames = bench_frames(tmp_path, 5, synthetic=False)
    (image,) = frames.images
    assert (frames.source, frames.truths) == ("synthetic", None)
    assert image.shape == (FRAME_SIZE[1], FRAME_SIZE[0], 3) and image.std() > 10


@pytest.mark.data
def test_bench_dense_times_both_sides_on_beach_frames(shared_dir: Path, red_model: Path) -> None:
    _, report = run_bench(
        "dense", *("--frames", "1", "--repeat", "3", "--dense-model", str(red_model)), timeout_s=240
    )
    dense, detect = report["dense"], report["detect_tiles_320"]
    assert (report["source"], report["frames"], report["frame_size"]) == (
        "beach_webcam_a",
        1,
        [1920, 1080],
    )
    assert (dense["timings"], detect["timings"]) == (3, 1)
    assert 0 < dense["median_s"] <= dense["p90_s"] and detect["median_s"] > 0
    assert report["ratio"] == pytest.approx(detect["median_s"] / dense["median_s"], rel=0.01)
    assert report["target_s"] == 1.5
    assert report["target_met"] == (dense["median_s"] <= 1.5)
    assert dense["mae"] is not None and detect["mae"] is not None
    assert detect["peak_rss_mib"] >= dense["peak_rss_mib"] >= report["rss_before_models_mib"] > 0
    assert "tiles 320/0.2" in detect["settings"]


def test_eval_scores_generated_empty_ground_against_zero(
    red_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from crowdwatch.evaluation.datasets import load_empty_ground

    monkeypatch.setenv("CROWDWATCH_SHARED_DIR", str(tmp_path))  # generated: needs no shared data
    args = ["eval", "--datasets", "empty_ground", "--limit", "3", "--methods", "dense", "--json"]
    assert main([*args, "--dense-model", str(red_model)]) == 0
    (row,) = json.loads(capsys.readouterr().out.splitlines()[-1])["datasets"]

    dataset = load_empty_ground(tmp_path)
    indices = dataset.select("all", 3)
    assert [dataset.truths[i] for i in indices] == [0, 0, 0]
    frames = list(dataset.read(indices))
    assert all(f.shape == (1080, 1920, 3) for f in frames)
    np.testing.assert_array_equal(next(dataset.read(indices[:1])), frames[0])  # seeded
    counter = DensityCounter(red_model)
    counts = [counter.density(frame).total() for frame in frames]
    # Sand and rock are reddish: the red model counts them, and every count is an error.
    assert row["frames"] == 3 and row["mae"] == pytest.approx(np.mean(counts), abs=0.01)
    assert row["bias"] == pytest.approx(row["mae"], abs=0.01) and row["mae"] > 0


# --- crowdwatch eval --methods auto -----------------------------------------------------------


@pytest.fixture(scope="module")
def dim_red_model(red_model: Path) -> Path:
    """The red model with densities 1000 times lower: a whole PETS frame holds about 3 people."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(red_model))
    (weight,) = model.graph.initializer
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) / 1000, weight.name))
    path = red_model.with_name("dim_red_density.onnx")
    onnx.save(model, str(path))
    return path


def expected_auto(
    dataset: CountDataset, indices: list[int], detector_name: str, shared_dir: Path, model: Path
) -> tuple[list[float], list[CountMethod]]:
    """Each sample counted as ``crowdwatch count --mode auto`` counts a frame, in the ROI."""
    settings = recommended_detector(detector_name, shared_dir / "models")
    detector = load_detector(settings)
    counter = DensityCounter(model)
    counts: list[float] = []
    methods: list[CountMethod] = []
    for image in dataset.read(indices):
        people = detector.detect(image)
        density = counter.density(image)
        heights = people.heights()
        dense = density.total()
        if dataset.roi is not None:  # the people whose head point is in the ROI
            x0, y0, x1, y1 = people.xyxy.T
            rows = (y0 + 0.1 * (y1 - y0)).astype(int).clip(0, dataset.roi.shape[0] - 1)
            cols = ((x0 + x1) / 2).astype(int).clip(0, dataset.roi.shape[1] - 1)
            heights = heights[dataset.roi[rows, cols]]
            dense = density.in_mask(dataset.roi)
        height, width = image.shape[:2]
        area = float(width * height) if dataset.roi is None else float(dataset.roi.sum())
        view = DetectorView(detector_magnification(settings, (width, height)), area)
        confidence = people.confidence
        if dataset.roi is not None:
            confidence = confidence[dataset.roi[rows, cols]]
        method = auto_method(
            DenseAutoConfig(), heights, dense, density.quality.ok, view, confidence=confidence
        )
        methods.append(method)
        counts.append(dense if method is CountMethod.DENSE else len(heights))
    return counts, methods


@pytest.mark.data
def test_eval_auto_counts_each_pets_frame_the_way_the_edge_rule_picks(
    shared_dir: Path, dim_red_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["eval", "--datasets", "pets", "--limit", "4", "--no-lines", "--json"]
    methods = ["--methods", "detect,dense,auto", "--dense-model", str(dim_red_model)]
    assert main([*args, *methods]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out.splitlines()[-1])
    assert report["methods"] == ["detect", "dense", "auto"]
    rows = {(r["method"], r["subset"]): r for r in report["datasets"]}
    assert set(rows) == {
        ("detect", "all"),
        ("detect", "odd (held out)"),
        ("dense", "all"),
        ("auto", "all"),
    }
    auto, detect, dense = rows[("auto", "all")], rows[("detect", "all")], rows[("dense", "all")]
    assert auto["settings"] == f"auto: {detect['settings']} | {dense['settings']}"
    assert auto["numbers"] == dense["numbers"] and auto["frames"] == dense["frames"] == 4
    assert detect["dense_frames"] is None and dense["dense_frames"] is None

    pets = load_pets(shared_dir)
    indices = pets.select("all", 4)
    counts, picked = expected_auto(pets, indices, "pets", shared_dir, dim_red_model)
    truths = [pets.truths[i] for i in indices]
    assert auto["mae"] == pytest.approx(np.mean(np.abs(np.subtract(counts, truths))), abs=0.001)
    assert auto["bias"] == pytest.approx(np.mean(np.subtract(counts, truths)), abs=0.001)
    # Walkers 60-150 px tall, a few of them, and about 3 by density (below undercount_min 5):
    # no rule holds, so every frame keeps detection.
    assert picked == [CountMethod.DETECT] * 4 and auto["dense_frames"] == 0
    assert (auto["mae"], auto["bias"]) == (detect["mae"], detect["bias"])
    # Both counters ran once per frame: auto costs what the two cost together.
    assert auto["ms_per_frame"] == pytest.approx(
        detect["ms_per_frame"] + dense["ms_per_frame"], abs=0.15
    )
    assert f"({auto['dense_frames']}/4 dense)" in captured.out


@pytest.mark.data
def test_eval_auto_alone_runs_both_counters_on_the_mall_frames_not_trained_on(
    shared_dir: Path, red_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["eval", "--datasets", "mall", "--limit", "2", "--no-lines", "--json"]
    assert main([*args, "--methods", "auto", "--dense-model", str(red_model)]) == 0
    report = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert report["methods"] == ["auto"]
    (row,) = report["datasets"]  # neither detection's nor the dense counter's own rows
    assert (row["method"], row["subset"], row["numbers"], row["frames"]) == (
        "auto",
        "not trained on",
        "641-800",
        2,
    )
    mall = load_mall(shared_dir)
    indices = mall.select("all", 2, skip=range(1, 641))
    counts, picked = expected_auto(mall, indices, "mall", shared_dir, red_model)
    truths = [mall.truths[i] for i in indices]
    # The red model counts thousands in the ROI (every pixel has some red): the undercount
    # rule sends both frames to the density map.
    assert picked == [CountMethod.DENSE] * 2 and row["dense_frames"] == 2
    assert row["mae"] == pytest.approx(np.mean(np.abs(np.subtract(counts, truths))), abs=0.001)


def test_eval_auto_needs_the_density_model_like_dense(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "crowd_counter.onnx"
    for methods in ("dense", "auto", "detect,auto"):
        assert main(["eval", "--methods", methods, "--dense-model", str(missing)]) == 2
        err = capsys.readouterr().err
        assert f"crowdwatch eval: error: --dense-model: no density model at {missing}" in err
    assert main(["eval", "--methods", "auto,boxes"]) == 2
    err = capsys.readouterr().err
    assert "--methods: expected a comma-separated list of detect, dense, auto" in err


def test_run_auto_takes_each_samples_count_from_the_method_the_rule_picks() -> None:
    toy = CountDataset(
        name="toy",
        description="five samples",
        keys=["a", "b", "c", "d", "e"],
        numbers=[1, 2, 3, 4, 5],
        truths=[0, 12, 2, 30, 0],
        read=lambda indices: iter([]),
    )
    tall = np.array([100.0, 120.0], dtype=np.float32)
    heights = [
        tall,
        np.full(3, 20.0, dtype=np.float32),
        tall,
        np.full(3, 90.0, dtype=np.float32),
        np.full(3, 60.0, dtype=np.float32),
    ]
    sure = np.full(3, 0.9, dtype=np.float32)
    confidences = [sure[:2], sure, sure[:2], sure, np.array([0.2, 0.4, 0.6], dtype=np.float32)]
    views = [DetectorView(magnification=1.0, zone_area_px=640 * 480)] * 5
    detected = DatasetRun.of(
        toy,
        [0, 1, 2, 3, 4],
        [len(h) for h in heights],
        [0.1, 0.2, 0.3, 0.4, 0.5],
        heights=heights,
        views=views,
        confidences=confidences,
    )
    # Sample 4 holds 30 by density against 3 detected, but its frame is flagged (too dark).
    dense = DatasetRun.of(
        toy, [1, 2, 3, 4], [11.5, 2.4, 30.0, 0.2], [0.01, 0.02, 0.03, 0.04], frozenset({4})
    )
    auto = run_auto(detected, dense, DenseAutoConfig())
    # 20 px people are small (< 40): dense; two tall people and 2.4 by density: detect;
    # three boxes the detector is unsure of where the density map holds 0.2: dense.
    assert auto.numbers == [2, 3, 4, 5] and auto.predicted == [11.5, 2, 3, 0.2]
    assert auto.dense_picked == frozenset({2, 5}) and auto.flagged == frozenset({4})
    assert auto.sample_s == pytest.approx([0.21, 0.32, 0.43, 0.54])
    assert auto.count_s == pytest.approx(1.5)
    with pytest.raises(ValueError, match="missing 2 of 4 samples"):
        run_auto(
            DatasetRun.of(
                toy,
                [1, 2],
                [3, 2],
                [0.2, 0.3],
                heights=heights[1:3],
                views=views[1:3],
                confidences=confidences[1:3],
            ),
            dense,
            DenseAutoConfig(),
        )
