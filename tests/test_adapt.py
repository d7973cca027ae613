"""`crowdwatch train counter --adapt`: one camera's fine-tune from its own labelled frames."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="adaptation needs torch (crowdwatch[train])")
pytest.importorskip("ultralytics", reason="adaptation needs crowdwatch[train]")

from crowdwatch.cli import main as crowdwatch_main  # noqa: E402
from crowdwatch.contracts.config import default_crowd_counter_path  # noqa: E402
from crowdwatch.edge.dense import DensityCounter  # noqa: E402
from crowdwatch.labeling.point_labels import Labels, write_folder  # noqa: E402
from crowdwatch.training.adapt import (  # noqa: E402
    FrameResult,
    decide,
    held_out_indices,
)
from crowdwatch.training.adapt_data import (  # noqa: E402
    LabelledFrame,
    backbone_features,
    decode,
    feature_frames,
    random_crop,
)
from crowdwatch.training.density_net import DensityNet, yolo_backbone  # noqa: E402
from crowdwatch.training.textures import ground_texture  # noqa: E402


def _beach_folder(folder: Path, frames: int = 3) -> Path:
    """Small frames of generated sand with dark 'people' (a head and a body), each marked."""
    rng = np.random.default_rng(7)
    labels = Labels()
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(frames):
        image = np.ascontiguousarray(ground_texture(256, 320, rng, kind="sand"))
        points = []
        for _ in range(4 * index):
            x, y = int(rng.integers(10, 310)), int(rng.integers(10, 240))
            cv2.ellipse(image, (x, y + 6), (3, 6), 0, 0, 360, (40, 50, 90), -1)
            cv2.circle(image, (x, y), 3, (30, 40, 60), -1)
            points.append((float(x), float(y)))
        name = f"{1660284000 + 3600 * index}.jpg"
        cv2.imwrite(str(folder / name), image)
        labels.set_marks(name, "ana", points)
    write_folder(folder, labels)
    return folder


def test_the_decoder_on_cached_features_is_the_network(yolo_weights: Path) -> None:
    # adapt_data.decode repeats DensityNet.forward after the backbone; a change there must fail here.
    net = DensityNet(yolo_backbone(yolo_weights)).eval()
    image = np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    blob = torch.zeros(1, 3, 224, 320)
    blob[0, :, :200, :300] = (
        torch.from_numpy(image[:, :, ::-1].copy()).float().permute(2, 0, 1) / 255
    )
    with torch.no_grad():
        whole = net(blob)
        cached = decode(net, backbone_features(net, image))
    assert cached.shape == whole.shape
    # The features are kept in float16 (memory): the sums agree to a fraction of a percent.
    assert float(cached.sum()) == pytest.approx(float(whole.sum()), rel=5e-3, abs=1e-3)


def test_crops_carry_the_frames_people_as_seen_and_mirrored(yolo_weights: Path) -> None:
    import random

    net = DensityNet(yolo_backbone(yolo_weights)).eval()
    points = np.array([[8.0, 8.0], [300.0, 200.0], [100.0, 50.0]], np.float32)
    frame = LabelledFrame("f.jpg", np.zeros((250, 310, 3), np.uint8), (points, points[:1]))
    assert frame.count == 2.0  # the annotators' mean
    (cached,) = feature_frames(net, [frame])
    assert cached.targets[0][1].sum() == pytest.approx(2.0)
    assert cached.targets[1][1].sum() == pytest.approx(2.0)
    # Mirrored: the first person (both annotators) moves to the right edge of the frame.
    assert cached.targets[1][1][1, (310 - 1 - 8) // 8] == pytest.approx(1.0)
    assert cached.valid.shape == (32, 40) and cached.valid.sum() == 32 * 39
    rng = random.Random(0)
    for _ in range(20):
        features, blurred, valid, count = random_crop(cached, 16, rng)
        assert features[0].shape[2:] == (16, 16) and features[2].shape[2:] == (4, 4)
        assert blurred.shape == valid.shape == (16, 16) and 0 <= count <= 2


@pytest.mark.parametrize(
    ("frames", "folds", "expected"),
    [(10, 5, [0, 2, 4, 6, 8]), (10, 0, []), (3, 5, [0, 1, 2]), (1, 5, []), (4, 2, [0, 2])],
)
def test_each_fold_keeps_out_a_different_frame(
    frames: int, folds: int, expected: list[int]
) -> None:
    assert held_out_indices(frames, folds) == expected


@pytest.mark.parametrize(
    ("results", "adopt", "reason"),
    [
        (
            [FrameResult("a", 10, 30, 12), FrameResult("b", 0, 8, 1)],
            True,
            "adopted: .* 1.5 < .* 14.0",
        ),
        ([FrameResult("a", 10, 12, 20)], False, "refused: .*MAE 10.0 is not clearly below .* 2.0"),
        ([FrameResult("a", 10, 20, 19.8)], False, "refused"),  # a tie within noise
        ([FrameResult("a", 10, 20, None)], False, "no frame was kept out"),
        ([FrameResult("a", 10, 20, 14), FrameResult("b", 5, 40, None)], True, "same 1 frame"),
    ],
    ids=["better", "worse", "tie", "no-fold", "only-kept-out-frames-compare"],
)
def test_the_adapted_counter_is_adopted_only_when_it_is_clearly_better(
    results: list[FrameResult], adopt: bool, reason: str
) -> None:
    decision = decide(results)
    assert decision.adopt is adopt
    assert __import__("re").search(reason, decision.reason), decision.reason


def _adapt(folder: Path, out: Path, weights: Path, *extra: str) -> int:
    return crowdwatch_main(
        ["train", "counter", "--adapt", str(folder), "--camera", "beach-x/cam-1", "--out", str(out),
         "--weights", str(weights), "--minutes", "10", "--threads", "2", *extra]
    )  # fmt: skip


def test_adaptation_runs_end_to_end_and_writes_a_model_the_edge_loads(
    yolo_weights: Path, tmp_path: Path
) -> None:
    if not default_crowd_counter_path().is_file():
        pytest.skip("no shipped crowd counter to adapt")
    folder = _beach_folder(tmp_path / "frames")
    out = tmp_path / "model"
    status = _adapt(
        folder, out, yolo_weights, "--steps", "30", "--folds", "2", "--score", str(folder)
    )
    report = json.loads((out / "adapt.json").read_text())
    kept_out = [f for f in report["frames"] if f["adapted"] is not None]
    assert len(kept_out) == 2 and report["fold_steps"] == [30, 30] and report["final_steps"] == 30
    assert report["planned_steps"] == 30  # 3 runs of 30 steps fit 10 minutes on any box
    assert report["decision"]["adopt"] is (status == 0)
    # --method auto compared the three methods on the frames the fine-tune kept out.
    loo = report["leave_one_out"]
    methods = ("correction", "finetune", "finetune+correction")
    assert loo["compared_on"] == [f["name"] for f in kept_out]
    assert report["method"] == min(methods, key=lambda m: (loo[m], methods.index(m)))
    model = out / ("crowd_counter.onnx" if status == 0 else "candidate.onnx")
    assert model.is_file() and (out / "crowd_counter.onnx").is_file() is (status == 0)
    counter = DensityCounter(model, threads=1)
    frame = cv2.imread(str(sorted(folder.glob("*.jpg"))[0]))
    assert counter.density(frame).total() >= 0
    card = (out / "card.md").read_text()
    assert report["decision"]["reason"] in card and "| 2022-08-12 | 3 |" in card
    assert [row["image"] for row in report["scored"]["rows"]] == sorted(
        p.name for p in folder.glob("*.jpg")
    )


def test_a_counter_no_better_than_the_shipped_one_is_refused(
    yolo_weights: Path, tmp_path: Path
) -> None:
    # No training steps: the "adapted" counter is the shipped one, which is no improvement.
    if not default_crowd_counter_path().is_file():
        pytest.skip("no shipped crowd counter to adapt")
    folder = _beach_folder(tmp_path / "frames")
    out = tmp_path / "model"
    (out).mkdir()
    (out / "crowd_counter.onnx").write_bytes(b"an earlier adoption")
    assert (
        _adapt(folder, out, yolo_weights, "--steps", "0", "--folds", "3", "--method", "finetune")
        == 1
    )
    report = json.loads((out / "adapt.json").read_text())
    assert report["decision"]["adopt"] is False
    assert report["decision"]["reason"].startswith("refused: leave-one-out MAE")
    # The refused model stays a candidate; the camera's config keeps pointing at nothing stale.
    assert (out / "candidate.onnx").is_file() and not (out / "crowd_counter.onnx").exists()


def test_a_folder_without_labels_is_one_line(
    yolo_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not default_crowd_counter_path().is_file():
        pytest.skip("no shipped crowd counter to adapt")
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "1.jpg"), np.zeros((64, 64, 3), np.uint8))
    assert _adapt(folder, tmp_path / "m", yolo_weights) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"crowdwatch train counter --adapt: error: {folder}: no labelled frame "
        f"(mark them with `crowdwatch label {folder}`)"
    ]


def test_a_camera_that_is_not_site_slash_cam_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        crowdwatch_main(["train", "counter", "--adapt", str(tmp_path), "--camera", "beach"])
    assert exit_info.value.code == 2
    assert (
        "--camera: expected SITE/CAM, e.g. beach-north/cam-1, got 'beach'"
        in capsys.readouterr().err
    )


def test_the_correction_learns_a_cameras_fixed_false_readings() -> None:
    # 10 frames of 160 x 160 (20 x 20 cells): people anywhere but the top-left quarter, which
    # is sand the counter reads as 30 people in every frame; it counts the people right.
    from crowdwatch.edge.dense import DensityMap, FrameQuality
    from crowdwatch.training.adapt_correction import fit_correction, region_counts

    rng = np.random.default_rng(5)
    maps, frames = [], []
    for index in range(10):
        points = rng.uniform(0, 160, (int(rng.integers(5, 60)), 2)).astype(np.float32)
        points = points[(points[:, 0] >= 80) | (points[:, 1] >= 80)]
        cells = np.zeros((20, 20), np.float32)
        np.add.at(cells, ((points[:, 1] // 8).astype(int), (points[:, 0] // 8).astype(int)), 1.0)
        cells[:10, :10] += 0.3  # 100 cells x 0.3
        maps.append(DensityMap(cells, (160, 160), FrameQuality(True, None)))
        frames.append(LabelledFrame(f"{index}.jpg", np.zeros((160, 160, 3), np.uint8), (points,)))
    fitted = fit_correction(region_counts(maps, frames))
    truth = [f.count for f in frames]
    shipped_mae = np.mean([abs(m.total() - t) for m, t in zip(maps, truth, strict=True)])
    held_mae = np.mean([abs(fitted.held_out[i] - truth[i]) for i in range(10)])
    assert shipped_mae == pytest.approx(30.0, rel=1e-4) and held_mae < 1.0
    assert (fitted.variant.rows, fitted.variant.cols) in {(2, 2), (4, 4), (8, 8)}
    corrected = [fitted.correction.apply(m.cells, m.frame_shape, m.cell_size).sum() for m in maps]
    assert corrected == pytest.approx(truth, abs=1.0)
    # The regions of the sand: (nearly) nothing left of the 30 people it was read as.
    rows, cols = fitted.correction.gains.shape
    assert fitted.correction.gains[: rows // 2, : cols // 2].max() < 0.05


def test_a_correction_is_written_beside_the_model_the_camera_names(
    yolo_weights: Path, tmp_path: Path
) -> None:
    if not default_crowd_counter_path().is_file():
        pytest.skip("no shipped crowd counter to adapt")
    from crowdwatch.edge.density_correction import correction_path

    folder = _beach_folder(tmp_path / "frames", frames=4)
    out = tmp_path / "model"
    out.mkdir()
    # What an earlier fine-tune left: neither may outlive this run's decision.
    (out / "crowd_counter.onnx").write_bytes(b"an earlier adoption")
    (out / "crowd_counter.correction.json").write_text("{}")
    status = _adapt(folder, out, yolo_weights, "--method", "correction", "--score", str(folder))
    report = json.loads((out / "adapt.json").read_text())
    assert report["method"] == "correction" and report["fold_steps"] == []
    assert all(f["adapted"] is not None for f in report["frames"])  # every frame kept out once
    model = out / ("crowd_counter.onnx" if status == 0 else "candidate.onnx")
    assert model.read_bytes() == default_crowd_counter_path().read_bytes()
    assert correction_path(model).is_file()
    if status == 1:
        assert not (out / "crowd_counter.onnx").exists()
        assert not correction_path(out / "crowd_counter.onnx").exists()
    # The scored counts are the corrected ones, as the edge would count them.
    counter = DensityCounter(model, threads=1)
    assert counter.correction is not None
    frame = cv2.imread(str(folder / report["scored"]["rows"][0]["image"]))
    assert report["scored"]["rows"][0]["adapted"] == round(counter.density(frame).total(), 2)
    assert "a gain per region of the frame" in (out / "card.md").read_text()
