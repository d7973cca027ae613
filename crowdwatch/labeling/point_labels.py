"""Head-point labels of a folder of frames, in the shared data's format.

A labelled folder holds the frames and two files, as ``beach_webcam_days`` does::

    DIR/1660114800.jpg ...        the frames
    DIR/points.csv                image,annotator,x,y   one row per person mark (frame pixels)
    DIR/counts.json               {image: {annotator: count}}: who has done which frame; a
                                  count of 0 is a frame marked empty (it has no row in the CSV)

makesense.ai's point export (``label_name,point_x,point_y,image_name,image_width,image_height``,
with or without that header, e.g. ``beach_webcam_a/labels_points.csv``) is read too: every image it
names counts as done by one annotator (the file's stem), since it lists only marked points.

Example:
    >>> labels = Labels()
    >>> labels.set_marks("a.jpg", "ana", [(10.0, 20.0), (30.0, 40.0)])
    >>> labels.set_marks("b.jpg", "ana", [])
    >>> labels.count("a.jpg", "ana"), labels.count("b.jpg", "ana"), labels.done_images()
    (2, 0, ['a.jpg', 'b.jpg'])
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from crowdwatch.contracts.errors import CrowdwatchError

__all__ = [
    "COUNTS_FILE",
    "IMAGE_SUFFIXES",
    "POINTS_FILE",
    "LabelError",
    "Labels",
    "frame_files",
    "load_folder",
    "read_makesense_csv",
    "read_points_csv",
    "write_folder",
]

POINTS_FILE = "points.csv"
COUNTS_FILE = "counts.json"
POINTS_HEADER = ("image", "annotator", "x", "y")
MAKESENSE_HEADER = ("label_name", "point_x", "point_y", "image_name", "image_width", "image_height")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
ANNOTATOR_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
"""Annotator names end up in CSV cells and file names: no commas, quotes or slashes."""

Point = tuple[float, float]


class LabelError(CrowdwatchError):
    """A label file cannot be read or written; the message names the file and the line."""


@dataclass(slots=True)
class Labels:
    """Marks per image and annotator; an empty list is a frame marked empty."""

    marks: dict[str, dict[str, list[Point]]] = field(default_factory=dict)

    def set_marks(self, image: str, annotator: str, points: Iterable[Point]) -> None:
        """Replace one annotator's marks on one image (an empty iterable: marked empty)."""
        self.marks.setdefault(image, {})[annotator] = [(float(x), float(y)) for x, y in points]

    def add_mark(self, image: str, annotator: str, point: Point) -> None:
        self.marks.setdefault(image, {}).setdefault(annotator, []).append(point)

    def points(self, image: str, annotator: str) -> list[Point] | None:
        """The marks, or ``None`` when this annotator has not done this image."""
        return self.marks.get(image, {}).get(annotator)

    def count(self, image: str, annotator: str) -> int | None:
        points = self.points(image, annotator)
        return None if points is None else len(points)

    def annotators(self, image: str) -> list[str]:
        return sorted(self.marks.get(image, {}))

    def done_images(self) -> list[str]:
        """Images that at least one annotator has done, sorted."""
        return sorted(image for image, by in self.marks.items() if by)

    def merge(self, other: Labels) -> None:
        """Add ``other``'s marks; where both have an image and annotator, ``other`` wins."""
        for image, by in other.marks.items():
            for annotator, points in by.items():
                self.set_marks(image, annotator, points)


def _number(text: str, where: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise LabelError(f"{where}: {what} must be a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise LabelError(f"{where}: {what} must be a pixel position >= 0, got {text!r}")
    return value


def _image_name(text: str, where: str) -> str:
    name = text.strip()
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise LabelError(f"{where}: expected an image file name without folders, got {text!r}")
    return name


def check_annotator(name: str) -> str:
    """The annotator name, or a :class:`LabelError` saying what a name may hold."""
    if not ANNOTATOR_PATTERN.match(name):
        raise LabelError(
            f"annotator {name!r}: use 1-64 letters, digits, '_', '-', '.' or '@' (no spaces or commas)"
        )
    return name


def _rows(path: Path) -> list[list[str]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LabelError(f"{path}: cannot read it as CSV ({exc})") from exc


def read_points_csv(path: Path) -> Labels:
    """Our ``image,annotator,x,y`` file (the header is required: it tells the two formats apart).

    Raises:
        LabelError: a row that is not four cells, or a coordinate that is not a pixel position.
    """
    rows = _rows(path)
    labels = Labels()
    if not rows:
        return labels
    header = tuple(cell.strip().lower() for cell in rows[0])
    if header != POINTS_HEADER:
        raise LabelError(
            f"{path}:1: expected the header {','.join(POINTS_HEADER)}, got {','.join(rows[0])!r}"
        )
    for number, row in enumerate(rows[1:], start=2):
        where = f"{path}:{number}"
        if len(row) != 4:
            raise LabelError(f"{where}: expected 4 cells (image,annotator,x,y), got {len(row)}")
        image = _image_name(row[0], where)
        annotator = check_annotator(row[1].strip())
        labels.add_mark(
            image, annotator, (_number(row[2], where, "x"), _number(row[3], where, "y"))
        )
    return labels


def read_makesense_csv(path: Path, annotator: str | None = None) -> Labels:
    """makesense.ai's point export; every row one mark of ``annotator`` (default: the file's stem).

    Raises:
        LabelError: a row that is not six cells or whose coordinates are not pixel positions.
    """
    rows = _rows(path)
    name = check_annotator(annotator or re.sub(r"[^A-Za-z0-9_.@-]", "_", path.stem)[:64])
    labels = Labels()
    if rows and tuple(cell.strip().lower() for cell in rows[0]) == MAKESENSE_HEADER:
        rows = [[], *rows[1:]]  # keep line numbers right
    for number, row in enumerate(rows, start=1):
        if not row:
            continue
        where = f"{path}:{number}"
        if len(row) != 6:
            raise LabelError(
                f"{where}: expected makesense.ai's 6 cells ({','.join(MAKESENSE_HEADER)}), "
                f"got {len(row)}"
            )
        image = _image_name(row[3], where)
        labels.add_mark(
            image, name, (_number(row[1], where, "point_x"), _number(row[2], where, "point_y"))
        )
    return labels


def _read_counts(path: Path) -> dict[str, dict[str, int]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LabelError(f"{path}: not readable JSON ({exc})") from exc
    if not isinstance(data, dict) or not all(
        isinstance(by, dict) and all(isinstance(n, int) and n >= 0 for n in by.values())
        for by in data.values()
    ):
        raise LabelError(f"{path}: expected {{image: {{annotator: count}}}} with counts >= 0")
    return data


def frame_files(folder: Path) -> list[Path]:
    """The frames of a folder (jpg/png, not hidden), sorted by name."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def _is_makesense(path: Path) -> bool:
    rows = _rows(path)
    return bool(rows) and (
        tuple(c.strip().lower() for c in rows[0]) == MAKESENSE_HEADER or len(rows[0]) == 6
    )


def load_folder(folder: Path) -> Labels:
    """Every label of a folder: ``points.csv`` with ``counts.json``, then any makesense.ai CSV.

    Raises:
        LabelError: the folder is missing, or a label file in it cannot be read (file and line).
    """
    if not folder.is_dir():
        raise LabelError(f"{folder}: no such folder (capture frames into it first)")
    labels = Labels()
    for path in sorted(folder.glob("*.csv")):
        if path.name != POINTS_FILE and _is_makesense(path):
            labels.merge(read_makesense_csv(path))
    points_file, counts_file = folder / POINTS_FILE, folder / COUNTS_FILE
    ours = read_points_csv(points_file) if points_file.is_file() else Labels()
    if counts_file.is_file():
        for image, by in _read_counts(counts_file).items():
            for annotator, count in by.items():
                marked = ours.points(image, annotator) or []
                if len(marked) != count:
                    raise LabelError(
                        f"{counts_file}: {image} by {annotator} says {count} people but "
                        f"{points_file.name} has {len(marked)} marks; fix or delete {counts_file.name}"
                    )
                ours.set_marks(image, annotator, marked)
    labels.merge(ours)
    return labels


def _atomic_write(path: Path, text: str) -> None:
    # A crash or a full disk mid-write must never leave half a label file behind.
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_folder(folder: Path, labels: Labels) -> None:
    """Write ``points.csv`` and ``counts.json`` (each replaced atomically).

    Raises:
        LabelError: the files cannot be written (a read-only folder, a full disk).
    """
    lines = [",".join(POINTS_HEADER)]
    counts: dict[str, dict[str, int]] = {}
    for image in sorted(labels.marks):
        for annotator in sorted(labels.marks[image]):
            points = labels.marks[image][annotator]
            counts.setdefault(image, {})[annotator] = len(points)
            lines += [f"{image},{annotator},{x:.1f},{y:.1f}" for x, y in points]
    try:
        _atomic_write(folder / POINTS_FILE, "\n".join(lines) + "\n")
        _atomic_write(folder / COUNTS_FILE, json.dumps(counts, indent=1, sort_keys=True) + "\n")
    except OSError as exc:
        raise LabelError(
            f"{folder}: cannot save the labels ({exc}); nothing was lost in memory"
        ) from exc
