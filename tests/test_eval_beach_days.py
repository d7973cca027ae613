"""``crowdwatch eval --datasets beach_days``: per day, against the annotators' mean and beside them.

The scoring is checked on small hand-made frames; the command on the shared data with the
``red`` density model of ``factories`` (a cell's mean red level), so the expected counts are
computed here from the same frames, independent of the trained network.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from factories import red_density_model

from crowdwatch.cli import main
from crowdwatch.edge.dense import DensityCounter
from crowdwatch.evaluation.beach_days import (
    TEST_DAYS,
    TRAIN_DAYS,
    BeachFrame,
    load_beach_frames,
    read_point_csv,
)
from crowdwatch.evaluation.beach_eval import ALL_HELD_OUT, format_beach_table, score_beach_days


def frame(name: str, day: str, **counts: int) -> BeachFrame:
    return BeachFrame(
        Path(name), day, {who: np.zeros((n, 2), np.float32) for who, n in counts.items()}
    )


def test_each_day_is_scored_against_the_annotators_mean_beside_their_own_error() -> None:
    frames = [
        frame("a.jpg", "2022-08-18", alex=10, victor=20),  # mean 15, each 5 off
        frame("b.jpg", "2022-08-18", alex=100, victor=60),  # mean 80, each 20 off
        frame("c.jpg", "2022-08-09", mira=50),
    ]
    rows = score_beach_days(frames, {"dense": [13.0, 90.0, 70.0], "detect": [0.0, 4.0, 2.0]})
    by_day = {row.day: row for row in rows}
    assert list(by_day) == ["2022-08-09", "2022-08-18"]  # one held-out day: no pooled row

    held = by_day["2022-08-18"]
    assert held.held_out and held.frames == 2 and held.mean_truth == 47.5
    assert held.annotators["alex"].mean_count == 55.0
    assert held.annotators["alex"].mae_vs_mean == 12.5
    assert held.pairwise_mae == 25.0
    assert held.human_mae == 12.5
    assert held.methods["dense"].mae == 6.0  # |13-15| and |90-80|
    assert held.methods["detect"].bias == pytest.approx(-45.5)

    trained = by_day["2022-08-09"]
    assert not trained.held_out and trained.human_mae is None and trained.pairwise_mae is None
    assert trained.methods["dense"].mae == 20.0

    table = format_beach_table(rows)
    assert "train split" in table and "held out" in table
    assert "mark to beat 12.5" in table and "(within human)" in table and "(worse)" in table


def test_several_held_out_days_are_also_pooled() -> None:
    frames = [frame("a.jpg", "2022-08-18", a=10), frame("b.jpg", "2022-08-19", a=30)]
    rows = score_beach_days(frames, {"dense": [12.0, 30.0]})
    assert [row.day for row in rows] == ["2022-08-18", "2022-08-19", ALL_HELD_OUT]
    assert rows[-1].methods["dense"].mae == 1.0 and rows[-1].frames == 2


def test_a_method_needs_one_count_per_frame() -> None:
    with pytest.raises(ValueError, match="dense: expected 2 counts"):
        score_beach_days([frame("a.jpg", "d", a=1), frame("b.jpg", "d", a=2)], {"dense": [1.0]})


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("image,annotator,x,y\na.jpg,ann,1.5,2\na.jpg,ann,3,4\n", None),
        ("image,annotator,x,y\na.jpg,ann,left,2\n", r"points.csv:2: expected columns"),
        ("image,who,x,y\na.jpg,ann,1,2\n", r"points.csv:2: expected columns"),
    ],
)
def test_point_csv_rows_are_checked(tmp_path: Path, text: str, error: str | None) -> None:
    path = tmp_path / "points.csv"
    path.write_text(text)
    if error is None:
        assert read_point_csv(path) == {"a.jpg": {"ann": [(1.5, 2.0), (3.0, 4.0)]}}
    else:
        with pytest.raises(Exception, match=error):
            read_point_csv(path)


def test_the_split_holds_out_18_august_and_training_refuses_it(shared_dir: Path) -> None:
    frames = load_beach_frames(shared_dir)
    days = {f.day for f in frames}
    assert days == TRAIN_DAYS | TEST_DAYS and not TRAIN_DAYS & TEST_DAYS
    held = [f for f in frames if f.day in TEST_DAYS]
    assert len(held) == 10 and all(len(f.points) == 2 for f in held)
    # counts.json and points.csv agree, empty beaches included
    assert sum(f.mean_count == 0 for f in frames) == 5

    pytest.importorskip("torch")
    from crowdwatch.training.head_points import load_beach_train

    with pytest.raises(ValueError, match=r"\['2022-08-18'\] are held out"):
        load_beach_train(shared_dir, frozenset({"2022-08-12", "2022-08-18"}))


def test_eval_beach_days_prints_each_day_and_the_held_out_frames(
    shared_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("onnx")
    model = red_density_model(tmp_path / "red.onnx")
    args = ["eval", "--datasets", "beach_days", "--methods", "dense", "--no-lines", "--json"]
    assert main([*args, "--dense-model", str(model)]) == 0
    out = capsys.readouterr().out
    report = json.loads(out.splitlines()[-1])["beach_days"]

    frames = load_beach_frames(shared_dir)
    counter = DensityCounter(model)
    import cv2

    expected = [counter.density(cv2.imread(str(f.path))).total() for f in frames]
    assert [f["dense"] for f in report["frames"]] == pytest.approx(expected, abs=0.051)
    held = next(r for r in report["rows"] if r["day"] == "2022-08-18")
    truth = [f.mean_count for f in frames if f.day == "2022-08-18"]
    ours = [e for e, f in zip(expected, frames, strict=True) if f.day == "2022-08-18"]
    assert held["methods"]["dense"]["mae"] == pytest.approx(
        float(np.mean(np.abs(np.subtract(ours, truth)))), abs=0.01
    )
    assert held["human_mae"] == pytest.approx(15.25)  # the annotators differ by 30.5
    assert "held out" in out and "1660834800.jpg 108/49; 78.5;" in out
