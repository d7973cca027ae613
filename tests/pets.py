"""Ground truth of PETS 2009 S2L1 (CVML XML annotations: frame N = video frame N)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

Box = tuple[float, float, float, float]


def pets_video(shared_dir: Path) -> Path:
    return shared_dir / "data" / "pets2009_s2l1" / "vtest.avi"


def pets_truth(shared_dir: Path) -> dict[int, list[Box]]:
    """Ground-truth boxes (x1, y1, x2, y2) per frame number."""
    xml = shared_dir / "data" / "pets2009_s2l1" / "annotations" / "PETS2009-S2L1.xml"
    truth: dict[int, list[Box]] = {}
    for frame in ET.parse(xml).getroot().iter("frame"):
        boxes = []
        for box in frame.iter("box"):
            xc, yc = float(box.get("xc", 0)), float(box.get("yc", 0))
            w, h = float(box.get("w", 0)), float(box.get("h", 0))
            boxes.append((xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2))
        truth[int(frame.get("number", -1))] = boxes
    return truth


def pets_truth_counts(shared_dir: Path) -> dict[int, int]:
    """People annotated per frame number."""
    return {frame: len(boxes) for frame, boxes in pets_truth(shared_dir).items()}
