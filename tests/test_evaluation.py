"""`crowdwatch count` and `crowdwatch eval`: metrics, ground-truth loaders, the commands."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from pets import pets_truth_counts

from crowdwatch.cli import main
from crowdwatch.contracts.errors import ConfigError
from crowdwatch.edge.detections import Detections
from crowdwatch.evaluation.count_command import parse_tiles, parse_zone
from crowdwatch.evaluation.datasets import (
    load_beach,
    load_mall,
    load_pets,
    load_shanghaitech_b,
)
from crowdwatch.evaluation.scoring import count_errors, count_in_roi


@pytest.mark.parametrize(
    ("predicted", "truth", "mae", "rmse", "bias"),
    [
        ([3, 5], [4, 5], 0.5, 0.5**0.5, -0.5),
        ([10, 10, 10], [10, 10, 10], 0.0, 0.0, 0.0),
        ([0, 4], [2, 0], 3.0, 10**0.5, 1.0),
        ([], [], 0.0, 0.0, 0.0),
    ],
)
def test_count_errors(
    predicted: list[int], truth: list[int], mae: float, rmse: float, bias: float
) -> None:
    errors = count_errors(predicted, truth)
    assert (errors.mae, errors.rmse, errors.bias) == pytest.approx((mae, rmse, bias))


def test_count_errors_needs_pairs() -> None:
    with pytest.raises(ValueError, match="as many predictions as truths"):
        count_errors([1], [1, 2])


def test_count_in_roi_uses_the_head_point() -> None:
    roi = np.zeros((100, 100), dtype=bool)
    roi[:50] = True  # only the top half is counted
    people = Detections(
        xyxy=np.array([[10, 10, 20, 60], [40, 60, 50, 99]], dtype=np.float32),
        confidence=np.array([0.9, 0.9], dtype=np.float32),
        class_id=np.array([0, 0]),
    )
    assert count_in_roi(people, roi) == 1
    assert count_in_roi(people, None) == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0,0,100,0,100,50", [(0, 0), (100, 0), (100, 50)]),
        ("0,0,10,0,10,10,0,10", [(0, 0), (10, 0), (10, 10), (0, 10)]),
        ("0,0,100,0", ConfigError),
        ("0,0,100,0,100", ConfigError),
        ("a,b,c,d,e,f", ConfigError),
    ],
)
def test_parse_zone(text: str, expected: object) -> None:
    if expected is ConfigError:
        with pytest.raises(ConfigError, match="--zone"):
            parse_zone(text)
    else:
        assert parse_zone(text) == expected


@pytest.mark.parametrize(
    ("text", "size", "overlap"), [("320", 320, 0.2), ("256,0.3", 256, 0.3), ("x", None, None)]
)
def test_parse_tiles(text: str, size: int | None, overlap: float | None) -> None:
    if size is None:
        with pytest.raises(ConfigError, match="--tiles"):
            parse_tiles(text)
        return
    tiles = parse_tiles(text)
    assert (tiles.size, tiles.overlap) == (size, overlap)


@pytest.mark.data
def test_ground_truth_loaders(shared_dir: Path) -> None:
    pets = load_pets(shared_dir)
    assert dict(zip(pets.numbers, pets.truths, strict=True)) == pets_truth_counts(shared_dir)
    mall = load_mall(shared_dir)
    assert len(mall.truths) == 800 and mall.truths[:3] == [29, 30, 35]
    assert mall.roi is not None and mall.roi.shape == (480, 640)
    assert np.mean(mall.truths) == pytest.approx(29.54, abs=0.01)
    shb = load_shanghaitech_b(shared_dir)
    assert len(shb.truths) == 316 and np.mean(shb.truths) == pytest.approx(124.8, abs=1)
    beach = load_beach(shared_dir)
    # The counts the data set's README lists, one per hourly image.
    assert sorted(beach.truths) == sorted([26, 68, 92, 152, 156, 181, 140, 163, 171, 146])
    assert mall.select("odd", 4) == [0, 266, 532, 798]  # spread, frames 1, 267, 533, 799


@pytest.mark.data
def test_count_command_prints_one_json_object_per_frame(
    shared_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video = shared_dir / "data" / "pets2009_s2l1" / "vtest.avi"
    image = shared_dir / "data" / "mall" / "frames" / "seq_000001.jpg"
    status = main(["count", str(image), str(video), "--json", "--every", "400"])
    assert status == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(Path(r["source"]).name, r["frame"]) for r in rows] == [
        ("seq_000001.jpg", 0),
        ("vtest.avi", 0),
        ("vtest.avi", 400),
    ]
    truth = pets_truth_counts(shared_dir)
    assert abs(rows[1]["count"] - truth[0]) <= 1 and abs(rows[2]["count"] - truth[400]) <= 1
    assert rows[0]["width"] == 640 and all(r["ms"] > 0 for r in rows)


@pytest.mark.data
def test_count_in_a_zone_counts_fewer(shared_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    video = shared_dir / "data" / "pets2009_s2l1" / "vtest.avi"
    assert main(["count", str(video), "--json", "--every", "1000"]) == 0
    whole = json.loads(capsys.readouterr().out.splitlines()[0])["count"]
    empty_corner = "0,0,50,0,50,50,0,50"
    assert main(["count", str(video), "--json", "--every", "1000", "--zone", empty_corner]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    assert whole > 0 and row["count"] == 0 and row["zone"] is True


@pytest.mark.parametrize(
    ("make_source", "extra", "message"),
    [
        (lambda tmp: tmp / "missing.jpg", [], "no such file"),
        (lambda tmp: _write(tmp / "cut.avi", b"RIFF\x00\x00"), [], "cannot open|no frame"),
        (lambda tmp: _write(tmp / "x.jpg", b"\xff\xd8 not a jpeg"), [], "not a readable image"),
        (lambda tmp: tmp, [], "holds no image"),
        (lambda tmp: tmp / "a.jpg", ["--zone", "0,0,10,0"], "--zone"),
    ],
    ids=["missing", "truncated-video", "bad-image", "empty-folder", "bad-zone"],
)
def test_count_refuses_bad_input_with_a_clear_error(
    make_source,  # type: ignore[no-untyped-def]
    extra: list[str],
    message: str,
    tmp_path: Path,
    shared_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = make_source(tmp_path)
    assert main(["count", str(source), *extra]) == 2
    err = capsys.readouterr().err
    assert "crowdwatch count: error:" in err
    assert re.search(message, err), err


@pytest.mark.data
def test_zone_outside_the_frame_is_refused(
    shared_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = shared_dir / "data" / "mall" / "frames" / "seq_000001.jpg"
    assert main(["count", str(image), "--zone", "0,0,900,0,900,100"]) == 2
    assert "outside the 640x480 frames" in capsys.readouterr().err


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.data
def test_eval_reports_each_data_set_and_ends_with_json(
    shared_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--datasets", "pets,mall", "--limit", "6", "--no-lines", "--methods", "detect"]
    status = main(["eval", *args, "--json"])
    assert status == 0
    out = capsys.readouterr().out.splitlines()
    report = json.loads(out[-1])
    rows = {(r["dataset"], r["subset"]): r for r in report["datasets"]}
    assert set(rows) == {
        ("pets", "all"),
        ("pets", "odd (held out)"),
        ("mall", "all"),
        ("mall", "odd (held out)"),
    }
    assert rows[("pets", "all")]["frames"] == 6 and rows[("pets", "all")]["mae"] < 1.5
    assert rows[("mall", "all")]["mae"] < 8 and rows[("mall", "all")]["fps"] > 0
    assert any("MAE" in line for line in out)


def test_eval_skips_absent_data_with_a_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CROWDWATCH_SHARED_DIR", str(tmp_path))
    assert main(["eval", "--json"]) == 1
    captured = capsys.readouterr()
    for name in ("pets", "mall", "shanghaitech_b", "beach", "lines"):
        assert f"{name}: skipped" in captured.err
    assert json.loads(captured.out.splitlines()[-1])["datasets"] == []
