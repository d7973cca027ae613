"""The installer's debug snapshot: a local JPEG with people blurred and zones/lines drawn.

Off by default (``edge.debug_snapshot``).  No frame ever leaves the edge: the snapshot is
written to a folder on the box (``{dir}/{site}_{camera}.jpg``, replaced in place) for the
installer who aims the camera and draws the zones; it is never published.  Every detected
person's box is blurred before anything is drawn, so the file shows where people stand,
not who they are.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from crowdwatch.edge.detections import Detections

logger = logging.getLogger(__name__)

ZONE_COLOUR = (0, 200, 255)  # BGR amber
LINE_COLOUR = (255, 120, 0)  # BGR blue
BOX_COLOUR = (80, 220, 80)


def blur_people(image: NDArray[np.uint8], detections: Detections) -> NDArray[np.uint8]:
    """A copy of ``image`` with each detected box blurred beyond recognition.

    Args:
        image: BGR frame ``(H, W, 3)``.
        detections: the people in it (pixels of ``image``).

    Returns:
        The blurred copy; ``image`` is not changed.
    """
    out = image.copy()
    height, width = out.shape[:2]
    for x1, y1, x2, y2 in np.round(detections.xyxy).astype(int):
        x1, x2 = max(x1, 0), min(x2, width)
        y1, y2 = max(y1, 0), min(y2, height)
        if x2 <= x1 or y2 <= y1:
            continue
        roi = out[y1:y2, x1:x2]
        # A kernel about a third of the box wipes out faces whatever the person's size.
        k = max(3, (max(x2 - x1, y2 - y1) // 3) | 1)
        out[y1:y2, x1:x2] = cv2.GaussianBlur(roi, (k, k), 0)
    return out


def render_snapshot(
    image: NDArray[np.uint8],
    detections: Detections,
    zones: list[NDArray[np.float64]],
    lines: list[tuple[NDArray[np.float64], NDArray[np.float64]]],
) -> NDArray[np.uint8]:
    """People blurred, then zones, lines and box outlines drawn.

    Args:
        image: BGR frame.
        detections: the people in it.
        zones: zone polygons in pixels of ``image``.
        lines: ``(start, end)`` of each counting line in pixels of ``image``.

    Returns:
        The annotated copy.
    """
    out = blur_people(image, detections)
    for polygon in zones:
        cv2.polylines(out, [np.round(polygon).astype(np.int32)], True, ZONE_COLOUR, 2)
    for start, end in lines:
        a = tuple(int(v) for v in np.round(start))
        b = tuple(int(v) for v in np.round(end))
        cv2.line(out, a, b, LINE_COLOUR, 2)
    for x1, y1, x2, y2 in np.round(detections.xyxy).astype(int):
        cv2.rectangle(out, (int(x1), int(y1)), (int(x2), int(y2)), BOX_COLOUR, 1)
    return out


def write_snapshot(path: Path, image: NDArray[np.uint8]) -> None:
    """Write a JPEG atomically (a viewer never sees half a file).

    Args:
        path: the ``.jpg`` to (re)place; its folder is created.
        image: BGR image.

    Raises:
        OSError: the folder cannot be written or the image cannot be encoded.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise OSError(f"{path}: cannot encode the snapshot as JPEG")
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(encoded.tobytes())
    tmp.replace(path)
