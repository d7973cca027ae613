"""Ground truth of PETS 2009 S2L1 for the tests: the same readers ``crowdwatch eval`` uses."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from crowdwatch.contracts.config import Calibration
from crowdwatch.evaluation.datasets import pets_truth, pets_video

__all__ = ["pets_calibration", "pets_truth", "pets_truth_counts", "pets_video"]


def pets_truth_counts(shared_dir: Path) -> dict[int, int]:
    """People annotated per frame number."""
    return {frame: len(boxes) for frame, boxes in pets_truth(shared_dir).items()}


def pets_calibration(shared_dir: Path) -> Calibration:
    """The PETS camera's own Tsai calibration (``View_001.xml``) as the edge's 4-point form.

    Four pixels spread over the walkway are cast back through the Tsai model (radial
    distortion ``kappa1``, rotation and translation in millimetres) onto the ground plane
    ``z = 0``; the edge's :class:`~crowdwatch.contracts.config.Calibration` is those pixels and
    their ground positions in metres, as an installer would measure them.
    """
    xml = shared_dir / "data" / "pets2009_s2l1" / "annotations" / "View_001.xml"
    root = ET.parse(xml).getroot()
    geometry, intrinsic, extrinsic = (
        root.find(tag) for tag in ("Geometry", "Intrinsic", "Extrinsic")
    )
    assert geometry is not None and intrinsic is not None and extrinsic is not None, xml

    def value(node: ET.Element, name: str) -> float:
        return float(node.attrib[name])

    dpx, dpy = value(geometry, "dpx"), value(geometry, "dpy")
    focal, kappa = value(intrinsic, "focal"), value(intrinsic, "kappa1")
    cx, cy, sx = value(intrinsic, "cx"), value(intrinsic, "cy"), value(intrinsic, "sx")
    a, b, g = (value(extrinsic, k) for k in ("rx", "ry", "rz"))
    translation = np.array([value(extrinsic, k) for k in ("tx", "ty", "tz")])
    sa, ca, sb, cb, sg, cg = np.sin(a), np.cos(a), np.sin(b), np.cos(b), np.sin(g), np.cos(g)
    # Tsai's rotation (R. Willson's reference implementation): world -> camera.
    rotation = np.array(
        [
            [cb * cg, cg * sa * sb - ca * sg, sa * sg + ca * cg * sb],
            [cb * sg, sa * sb * sg + ca * cg, ca * sb * sg - cg * sa],
            [-sb, cb * sa, ca * cb],
        ]
    )
    pixels = [(60.0, 540.0), (740.0, 540.0), (700.0, 200.0), (100.0, 200.0)]
    ground = []
    for u, v in pixels:
        xd, yd = (u - cx) * dpx / sx, (v - cy) * dpy
        r2 = xd * xd + yd * yd
        ray = np.array([xd * (1 + kappa * r2), yd * (1 + kappa * r2), focal])
        # camera = R world + T; the world point on z = 0 along the ray lambda * ray.
        origin = -rotation.T @ translation
        direction = rotation.T @ ray
        scale = -origin[2] / direction[2]
        point = origin + scale * direction
        ground.append((float(point[0]) / 1000, float(point[1]) / 1000))
    return Calibration(image_points=pixels, ground_points_m=ground)
