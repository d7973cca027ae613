"""Head-point label files: our image,annotator,x,y CSV with counts.json, and makesense.ai's export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crowdwatch.labeling.point_labels import (
    LabelError,
    Labels,
    load_folder,
    read_makesense_csv,
    read_points_csv,
    write_folder,
)


def test_labels_round_trip_through_the_folder_files_with_empty_frames(tmp_path: Path) -> None:
    labels = Labels()
    labels.set_marks("1660284000.jpg", "ana", [(10.5, 20.0), (1919.0, 1079.0)])
    labels.set_marks("1660284000.jpg", "bo", [(11.0, 21.0)])
    labels.set_marks("1660287600.jpg", "ana", [])  # marked empty: no CSV row, but done
    write_folder(tmp_path, labels)
    assert (tmp_path / "points.csv").read_text().splitlines()[:2] == [
        "image,annotator,x,y",
        "1660284000.jpg,ana,10.5,20.0",
    ]
    assert json.loads((tmp_path / "counts.json").read_text()) == {
        "1660284000.jpg": {"ana": 2, "bo": 1},
        "1660287600.jpg": {"ana": 0},
    }
    again = load_folder(tmp_path)
    assert again.marks == labels.marks
    assert again.done_images() == ["1660284000.jpg", "1660287600.jpg"]


def test_the_shared_days_file_reads_as_our_format(shared_dir: Path) -> None:
    folder = shared_dir / "data" / "beach_webcam_days"
    if not (folder / "points.csv").is_file():
        pytest.skip(f"no {folder}/points.csv")
    labels = load_folder(folder)
    expected = json.loads((folder / "counts.json").read_text())
    assert {i: {a: labels.count(i, a) for a in labels.annotators(i)} for i in expected} == expected


@pytest.mark.parametrize("header", [True, False], ids=["with-header", "without-header"])
def test_a_makesense_point_export_is_read(tmp_path: Path, header: bool) -> None:
    rows = ["Person,605,525,1660114800.jpg,1920,1080", "Person,593.5,527,1660114800.jpg,1920,1080"]
    if header:
        rows.insert(0, "label_name,point_x,point_y,image_name,image_width,image_height")
    path = tmp_path / "labels_points.csv"
    path.write_text("\n".join(rows) + "\n")
    labels = read_makesense_csv(path)
    assert labels.points("1660114800.jpg", "labels_points") == [(605.0, 525.0), (593.5, 527.0)]
    # load_folder finds it beside the frames without being told its name.
    assert load_folder(tmp_path).count("1660114800.jpg", "labels_points") == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("image,annotator,x\n", r"points\.csv:1: expected the header image,annotator,x,y"),
        ("image,annotator,x,y\na.jpg,ana,1\n", r"points\.csv:2: expected 4 cells"),
        ("image,annotator,x,y\na.jpg,ana,one,2\n", r"points\.csv:2: x must be a number, got 'one'"),
        ("image,annotator,x,y\na.jpg,ana,-3,2\n", r"points\.csv:2: x must be a pixel position"),
        ("image,annotator,x,y\na.jpg,ana,nan,2\n", r"points\.csv:2: x must be a pixel position"),
        ("image,annotator,x,y\n../a.jpg,ana,1,2\n", r"points\.csv:2: expected an image file name"),
        ("image,annotator,x,y\na.jpg,a b,1,2\n", r"annotator 'a b': use 1-64 letters"),
    ],
    ids=["header", "cells", "not-a-number", "negative", "nan", "folder", "annotator"],
)
def test_a_bad_points_file_is_one_line_naming_file_and_line(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "points.csv"
    path.write_text(text)
    with pytest.raises(LabelError, match=expected):
        read_points_csv(path)


def test_counts_that_disagree_with_the_marks_are_refused(tmp_path: Path) -> None:
    (tmp_path / "points.csv").write_text("image,annotator,x,y\na.jpg,ana,1,2\n")
    (tmp_path / "counts.json").write_text('{"a.jpg": {"ana": 3}}')
    with pytest.raises(LabelError, match=r"a\.jpg by ana says 3 people but points\.csv has 1"):
        load_folder(tmp_path)


def test_a_bad_makesense_row_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("Person,605,525,a.jpg,1920,1080\nPerson,x,525,a.jpg,1920,1080\n")
    with pytest.raises(LabelError, match=r"export\.csv:2: point_x must be a number"):
        read_makesense_csv(path)


def test_a_missing_folder_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(LabelError, match=r"no such folder \(capture frames into it first\)"):
        load_folder(tmp_path / "nowhere")
