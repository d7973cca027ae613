"""Vehicles: class names, one box per vehicle, ``count --classes vehicle``, ``eval --datasets ngsim``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from crowdwatch.cli import main
from crowdwatch.contracts.errors import ConfigError
from crowdwatch.edge.detections import Detections
from crowdwatch.edge.vehicles import counts_by_class, merge_vehicle_classes, parse_classes
from crowdwatch.evaluation.datasets import DatasetMissing, load_ngsim

CAR, MOTORCYCLE, BUS, TRUCK, PERSON = 2, 3, 5, 7, 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("vehicle", ["car", "bus", "truck", "motorcycle"]),
        ("person", ["person"]),
        ("person, Vehicle", ["person", "car", "bus", "truck", "motorcycle"]),
        ("bus,car,bus", ["bus", "car"]),
        ("car,vehicle", ["car", "bus", "truck", "motorcycle"]),
    ],
)
def test_parse_classes(text: str, expected: list[str]) -> None:
    assert [c.value for c in parse_classes(text)] == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("boat", r"--classes: unknown class 'boat', expected one of person, .*vehicle"),
        (" , ", r"--classes: expected one or more of"),
    ],
)
def test_parse_classes_refuses_unknown_names(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_classes(text)


def boxes(*rows: tuple[float, float, float, float, float, int]) -> Detections:
    array = np.array(rows, dtype=np.float64).reshape(-1, 6)
    return Detections(
        xyxy=array[:, :4].astype(np.float32),
        confidence=array[:, 4].astype(np.float32),
        class_id=array[:, 5].astype(np.int64),
    )


@pytest.mark.parametrize(
    ("found", "kept"),
    [
        pytest.param(
            boxes((0, 0, 40, 20, 0.5, CAR), (1, 0, 41, 21, 0.8, TRUCK)),
            [TRUCK],
            id="one van as a car and a truck: one vehicle, the surer class",
        ),
        pytest.param(
            boxes((0, 0, 40, 20, 0.5, CAR), (60, 0, 100, 20, 0.8, CAR)),
            [CAR, CAR],
            id="two cars apart: two",
        ),
        pytest.param(
            boxes((0, 0, 40, 20, 0.9, CAR), (20, 0, 60, 20, 0.8, BUS)),
            [CAR, BUS],
            id="touching bumpers (IoU 0.33): two",
        ),
        pytest.param(
            boxes((0, 0, 20, 40, 0.9, MOTORCYCLE), (0, 0, 20, 40, 0.9, PERSON)),
            [MOTORCYCLE, PERSON],
            id="a rider and the motorcycle: people are never merged into vehicles",
        ),
        pytest.param(boxes((0, 0, 40, 20, 0.5, CAR)), [CAR], id="one box"),
        pytest.param(boxes(), [], id="nothing"),
    ],
)
def test_merge_vehicle_classes(found: Detections, kept: list[int]) -> None:
    assert sorted(merge_vehicle_classes(found).class_id.tolist()) == sorted(kept)


def test_counts_by_class() -> None:
    found = boxes((0, 0, 1, 1, 0.5, CAR), (0, 0, 1, 1, 0.5, CAR), (0, 0, 1, 1, 0.5, TRUCK))
    assert counts_by_class(found) == {"car": 2, "truck": 1}


def test_ngsim_loader_refuses_a_broken_ground_truth_in_one_line(tmp_path: Path) -> None:
    sequence = tmp_path / "data" / "ngsim_us101" / "Sequence1"
    sequence.mkdir(parents=True)
    (sequence / "GT.json").write_text('{"images": [{"id": 1}]', encoding="utf-8")
    with pytest.raises(DatasetMissing, match=r"GT.json: expected COCO JSON") as caught:
        load_ngsim(tmp_path, "Sequence1")
    assert "\n" not in str(caught.value)
    with pytest.raises(DatasetMissing, match=r"NGSIM Sequence2 ground truth not found"):
        load_ngsim(tmp_path, "Sequence2")


@pytest.mark.data
def test_ngsim_ground_truth(shared_dir: Path) -> None:
    first, second = load_ngsim(shared_dir, "Sequence1"), load_ngsim(shared_dir, "Sequence2")
    assert (len(first.truths), len(second.truths)) == (177, 156)
    assert np.mean(first.truths) == pytest.approx(35.5, abs=0.1)
    assert np.mean(second.truths) == pytest.approx(28.4, abs=0.1)
    assert first.numbers == sorted(first.numbers)  # frames in the order of the video


@pytest.mark.data
def test_count_classes_vehicle_counts_per_class(
    shared_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = shared_dir / "data" / "ngsim_us101" / "Sequence1" / "images" / "99.jpg"
    assert main(["count", str(image), "--json", "--classes", "vehicle"]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    assert row["count"] > 5
    assert set(row["by_class"]) <= {"car", "bus", "truck", "motorcycle"}
    assert sum(row["by_class"].values()) == row["count"]
    assert main(["count", str(image), "--json"]) == 0  # people: the default
    assert json.loads(capsys.readouterr().out.splitlines()[0])["count"] < row["count"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--classes", "boat"], r"unknown class 'boat'"),
        (["--classes", "vehicle", "--mode", "dense"], r"--mode dense counts people"),
    ],
)
def test_count_refuses_bad_classes(
    extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), np.zeros((32, 32, 3), dtype=np.uint8))
    assert main(["count", str(image), *extra]) == 2
    err = capsys.readouterr().err
    assert "crowdwatch count: error:" in err and len(err.strip().splitlines()) == 1
    assert re.search(message, err), err


@pytest.mark.data
def test_eval_ngsim_reports_each_sequence(
    shared_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["eval", "--datasets", "ngsim", "--limit", "2", "--no-lines", "--methods", "detect"]
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out.splitlines()[-1])
    rows = {r["dataset"]: r for r in report["datasets"]}
    assert set(rows) == {"ngsim_seq1", "ngsim_seq2"}
    assert rows["ngsim_seq1"]["subset"] == "all (tuned)"
    assert rows["ngsim_seq2"]["subset"] == "all (held out)"
    for row in rows.values():
        assert row["frames"] == 2 and row["mean_truth"] > 10 and row["ms_per_frame"] > 0
        assert row["mae"] < row["mean_truth"]  # vehicles were found at all
        assert "tiles" in row["settings"]
