"""The crowd counter's training pieces: targets, loss, a few real steps, and the ONNX export."""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs torch (crowdwatch[train])")
pytest.importorskip("ultralytics", reason="training needs crowdwatch[train]")

from crowdwatch.training.density_net import (  # noqa: E402
    STRIDE,
    DensityNet,
    export_onnx,
    load_onnx_weights,
    yolo_backbone,
)
from crowdwatch.training.head_points import PointImage, points_in_grid  # noqa: E402
from crowdwatch.training.textures import KINDS, ground_texture  # noqa: E402
from crowdwatch.training.train_counter import (  # noqa: E402
    _paste_ground,
    empty_ground_crop,
    loss_terms,
    make_crop,
)


def _sample(points: list[tuple[float, float]], mask: np.ndarray | None = None) -> PointImage:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    return PointImage("synthetic", "x", image, np.array(points, np.float32).reshape(-1, 2), mask)


def test_points_fall_into_the_cell_under_them() -> None:
    grid = points_in_grid(
        np.array([[0, 0], [15.9, 8], [16, 8], [-1, 3], [64, 0]], np.float32), (32, 64), STRIDE
    )
    assert grid.shape == (4, 8)
    assert grid[0, 0] == 1 and grid[1, 1] == 1 and grid[1, 2] == 1
    assert grid.sum() == 3  # the points left of and right of the image are dropped


def test_a_crop_keeps_every_head_inside_it() -> None:
    rng = random.Random(3)
    points = [(x, y) for x in range(20, 620, 40) for y in range(20, 460, 40)]
    for _ in range(20):
        image, target, mask, count = make_crop(_sample(points), 256, rng)
        assert image.shape == (256, 256, 3) and target.shape == (32, 32)
        # Blurring spreads heads but keeps their number (reflecting borders lose none).
        assert target.sum() == pytest.approx(count, abs=1e-3)
        assert mask.min() == 1.0


def test_a_crop_ignores_people_outside_the_region_of_interest() -> None:
    mask = np.zeros((480, 640), bool)
    mask[:, :320] = True  # only the left half is annotated, as in Mall
    rng = random.Random(1)
    partial = 0
    for _ in range(30):
        # One head inside the region, one outside it (which the truth would not list).
        _, target, cell_mask, count = make_crop(_sample([(100, 100), (500, 100)], mask), 320, rng)
        assert (target * (1 - cell_mask)).sum() == 0
        assert count <= 1
        partial += 0 < cell_mask.mean() < 1
    assert partial > 0


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_ground_textures_are_seeded_images_of_any_size(kind: str) -> None:
    first = ground_texture(120, 200, np.random.default_rng(5), kind)
    again = ground_texture(120, 200, np.random.default_rng(5), kind)
    other = ground_texture(120, 200, np.random.default_rng(6), kind)
    assert first.shape == (120, 200, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, again)  # a seed gives the same texture
    assert not np.array_equal(first, other)
    assert first.std() > 2.0  # a texture, not a flat colour the quality check would reject


def test_an_empty_ground_crop_must_count_zero_everywhere() -> None:
    image, target, mask, count = empty_ground_crop(160, random.Random(2))
    assert image.shape == (160, 160, 3)
    assert target.shape == mask.shape == (20, 20)
    assert count == 0.0 and target.sum() == 0.0 and mask.min() == 1.0


def test_pasted_ground_removes_the_heads_under_it_and_is_known_empty() -> None:
    crop = np.zeros((160, 160, 3), np.uint8)
    points = np.array([[x, y] for x in range(4, 160, 16) for y in range(4, 160, 16)], np.float32)
    mask = np.zeros((160, 160), bool)  # nothing annotated (outside a region of interest)
    for seed in range(10):
        pasted, kept, new_mask = _paste_ground(crop, points, mask, random.Random(seed))
        changed = pasted.any(axis=2)
        ys, xs = np.nonzero(changed)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        assert y0 % STRIDE == 0 and x0 % STRIDE == 0 and y1 % STRIDE == 0 and x1 % STRIDE == 0
        assert new_mask[y0:y1, x0:x1].all() and new_mask.sum() == (y1 - y0) * (x1 - x0)
        inside = (kept[:, 0] >= x0) & (kept[:, 0] < x1) & (kept[:, 1] >= y0) & (kept[:, 1] < y1)
        assert not inside.any()
        under = (
            (points[:, 0] >= x0) & (points[:, 0] < x1) & (points[:, 1] >= y0) & (points[:, 1] < y1)
        )
        assert len(kept) == len(points) - under.sum() < len(points)


def test_the_loss_is_zero_for_a_perfect_density_and_grows_with_the_count_error() -> None:
    target = torch.zeros(2, 1, 8, 8)
    target[0, 0, 2, 3] = 1.0
    mask = torch.ones_like(target)
    counts = torch.tensor([1.0, 0.0])
    pixel, count = loss_terms(target.clone(), target, mask, counts)
    assert float(pixel) == 0.0 and float(count) == 0.0
    _, worse = loss_terms(target * 2.0, target, mask, counts)
    assert float(worse) > 0.0


def test_training_steps_lower_the_loss_and_the_export_runs_without_torch(
    yolo_weights: Path, tmp_path: Path
) -> None:
    import onnxruntime as ort

    torch.manual_seed(0)
    net = DensityNet(yolo_backbone(yolo_weights))
    image = torch.rand(2, 3, 128, 128)
    target = torch.zeros(2, 1, 16, 16)
    target[:, 0, 4:8, 4:8] = 0.25  # four people per image
    mask, counts = torch.ones_like(target), torch.tensor([4.0, 4.0])
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        pixel, count = loss_terms(net(image), target, mask, counts)
        loss = pixel + 30 * count
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]

    path = tmp_path / "counter.onnx"
    export_onnx(net, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for height, width in [(96, 160), (256, 320), (1088, 1920)]:
        frame = np.random.default_rng(height).random((1, 3, height, width), dtype=np.float32)
        (density,) = session.run(None, {"images": frame})
        assert density.shape == (1, 1, height // STRIDE, width // STRIDE)
        with torch.no_grad():
            expected = net(torch.from_numpy(frame)).numpy()
        np.testing.assert_allclose(density, expected, rtol=1e-3, atol=1e-5)


def test_an_exported_counter_loads_back_for_fine_tuning(yolo_weights: Path, tmp_path: Path) -> None:
    torch.manual_seed(2)
    trained = DensityNet(yolo_backbone(yolo_weights))
    with torch.no_grad():
        trained.head[1].bias.fill_(0.7)
    path = tmp_path / "counter.onnx"
    export_onnx(trained, path)
    fresh = DensityNet(yolo_backbone(yolo_weights))
    load_onnx_weights(fresh, path)
    frame = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(frame), trained.eval()(frame))


def test_a_file_of_another_network_is_refused_for_fine_tuning(
    yolo_weights: Path, tmp_path: Path
) -> None:
    pytest.importorskip("onnx")
    from factories import red_density_model

    net = DensityNet(yolo_backbone(yolo_weights))
    with pytest.raises(ValueError, match="not a crowd counter of this architecture"):
        load_onnx_weights(net, red_density_model(tmp_path / "red.onnx"))


def test_the_training_command_parses_its_documented_arguments(tmp_path: Path) -> None:
    from crowdwatch.training.train_counter import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser, tmp_path)
    args = parser.parse_args(["--steps", "12000", "--minutes", "95", "--seed", "0"])
    assert (args.steps, args.minutes, args.seed, args.crop) == (12000, 95.0, 0, 320)
    assert args.init is None
    tuned = parser.parse_args(["--init", "models/crowd_counter.onnx", "--lr", "4e-4"])
    assert tuned.init == Path("models/crowd_counter.onnx") and tuned.lr == 4e-4
    assert args.weights == tmp_path / "models" / "yolo11n_coco.pt"


def test_the_calibration_factor_minimises_the_relative_count_error() -> None:
    from crowdwatch.training.calibrate import fit_factor

    assert fit_factor([2.0, 4.0, 8.0], [1.0, 2.0, 4.0]) == pytest.approx(0.5)
    assert fit_factor([0.0, 0.0], [3.0, 5.0]) == 1.0
    # Relative weighting: the sparse image's 100% error outweighs the dense one's 10%.
    assert fit_factor([2.0, 1100.0], [1.0, 1000.0]) < 0.8


def test_calibration_runs_the_edge_counter_on_training_images(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    from factories import DENSITY_CELL, red_density_model

    from crowdwatch.edge.dense import DensityCounter
    from crowdwatch.training.calibrate import calibrate

    counter = DensityCounter(red_density_model(tmp_path / "red.onnx"))
    samples = []
    for people in (2, 5):
        image = np.zeros((64, 96, 3), np.uint8)
        for i in range(people):  # each fully red cell reads as one person; the truth says two
            image[:DENSITY_CELL, i * DENSITY_CELL : (i + 1) * DENSITY_CELL, 2] = 255  # BGR red
        points = np.array([[4.0, 4.0]] * (2 * people), np.float32)
        samples.append(PointImage("synthetic", f"{people}", image, points))
    result = calibrate(counter, {"synthetic": samples})
    assert result.factor == pytest.approx(2.0, rel=1e-4)
    assert result.before["synthetic"]["bias"] == pytest.approx(-3.5, abs=1e-3)
    assert result.after["synthetic"]["mae"] == pytest.approx(0.0, abs=1e-3)


def test_the_export_folds_the_calibration_into_the_model(
    yolo_weights: Path, tmp_path: Path
) -> None:
    import onnxruntime as ort

    torch.manual_seed(1)
    net = DensityNet(yolo_backbone(yolo_weights))
    with torch.no_grad():
        net.head[1].bias.fill_(1.0)  # a positive density everywhere, so the factor shows
    outputs = []
    for factor in (1.0, 2.5):
        path = tmp_path / f"counter-{factor}.onnx"
        export_onnx(net, path, factor=factor)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        frame = np.random.default_rng(0).random((1, 3, 64, 96), dtype=np.float32)
        outputs.append(session.run(None, {"images": frame})[0])
    assert outputs[0].sum() > 0
    np.testing.assert_allclose(outputs[1], 2.5 * outputs[0], rtol=1e-5)


def test_a_factor_is_applied_only_when_it_helps_the_sources_on_average() -> None:
    from crowdwatch.training.calibrate import Calibration

    def errors(mae: float, mean: float) -> dict[str, float]:
        return {"mae": mae, "bias": 0.0, "mean_truth": mean}

    # Both sources undercount by 10%: the factor fixes both.
    both = Calibration(
        1.1, {"a": errors(10, 100), "b": errors(1, 10)}, {"a": errors(1, 100), "b": errors(0.1, 10)}
    )
    # Opposite errors: one source gains what the other loses.
    opposite = Calibration(
        0.94,
        {"a": errors(14, 123), "b": errors(3.3, 28)},
        {"a": errors(18, 123), "b": errors(2.4, 28)},
    )
    assert both.helps and both.relative_mae("after") < both.relative_mae("before")
    assert not opposite.helps


def test_beach_webcam_crops_come_in_their_share() -> None:
    """``--real-beach``: that share of crops comes from the webcam days, at the edge's scale."""
    from crowdwatch.training.train_counter import MIX, batches

    crowd = _sample([(100.0, 100.0)])
    # Beach frames: 4,000 heads fill every crop; one frame labelled by two people.
    dense = [(float(x), float(y)) for x in range(4, 1000, 8) for y in range(4, 600, 8)]
    webcam = [
        PointImage("beach_webcam", f"{name}#{who}", np.zeros((600, 1000, 3), np.uint8), pts)
        for name, who in (("a.jpg", "one"), ("b.jpg", "one"), ("b.jpg", "two"))
        for pts in [np.array(dense, np.float32)]
    ]
    sources = {name: [crowd] for name in MIX} | {"beach_webcam": webcam}
    data = batches(sources, 8, 160, seed=1, real_beach=0.5)
    crops = [float(c) for _ in range(25) for c in next(data)[3]]
    # A full 160 px crop at scale 0.7-1.4 holds at least 160² / (8 / 0.7)² = 196 heads.
    beach = sum(c >= 150 for c in crops)
    assert 0.35 < beach / len(crops) < 0.65

    with pytest.raises(ValueError, match="needs labelled frames"):
        next(batches({name: [crowd] for name in MIX}, 8, 160, seed=1, real_beach=0.5))
