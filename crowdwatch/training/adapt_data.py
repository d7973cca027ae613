"""The labelled frames of one camera, and their backbone features, for :mod:`adapt`.

Adaptation trains only the counter's decoder, so the backbone's features of each frame (and of its
mirror image) are computed once, at the full frame as the edge sees it, and training draws crops of
those features. That is what makes an afternoon's fine-tune fit on an edge box's CPU: a step costs
the decoder alone, and the crops keep the context of the whole frame.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from numpy.typing import NDArray

from crowdwatch.labeling.point_labels import LabelError, Labels, frame_files, load_folder
from crowdwatch.training.density_net import MULTIPLE, STRIDE, DensityNet
from crowdwatch.training.head_points import points_in_grid
from crowdwatch.training.textures import ground_texture

MAX_SIDE = 1920
"""As the edge's ``edge.dense.max_side`` default: larger frames are shrunk first."""

Features = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""The backbone's maps at 1/8, 1/16 and 1/32 of the padded frame."""


@dataclass(frozen=True, slots=True)
class LabelledFrame:
    """One frame (BGR, at most ``MAX_SIDE``) and its annotators' marks (scaled with it).

    Attributes:
        points: one ``(N, 2)`` array per annotator who did the frame.
    """

    name: str
    image: NDArray[np.uint8]
    points: tuple[NDArray[np.float32], ...]

    @property
    def count(self) -> float:
        """The annotators' mean count: the truth this project scores against."""
        return float(np.mean([len(p) for p in self.points]))

    def target(self, *, mirror: bool = False) -> NDArray[np.float32]:
        """People per 8x8 cell of the padded frame, the annotators' mean (before blurring).

        Args:
            mirror: the target of the frame mirrored left-right (padding still on the right).
        """
        height, width = padded_size(self.image.shape[:2])
        grids = []
        for points in self.points:
            if mirror:
                points = points.copy()
                points[:, 0] = self.image.shape[1] - 1 - points[:, 0]
            grids.append(points_in_grid(points, (height, width), STRIDE))
        return np.asarray(np.mean(grids, axis=0), dtype=np.float32)


def padded_size(shape: tuple[int, ...]) -> tuple[int, int]:
    """The frame's size padded right and bottom to multiples of 32, as the edge pads it."""
    return (
        max(2 * MULTIPLE, math.ceil(shape[0] / MULTIPLE) * MULTIPLE),
        max(2 * MULTIPLE, math.ceil(shape[1] / MULTIPLE) * MULTIPLE),
    )


def image_folder(folder: Path) -> Path:
    """Where a labelled folder keeps its frames: ``DIR/images`` when present (the shared data
    sets), else ``DIR`` (what ``crowdwatch capture`` writes)."""
    return folder / "images" if (folder / "images").is_dir() else folder


def load_labelled_frames(folder: Path) -> list[LabelledFrame]:
    """Every frame of ``folder`` that some annotator has done, sorted by name.

    Raises:
        LabelError: the folder, a label file or a labelled frame cannot be read, or no frame is
            labelled.
    """
    labels: Labels = load_folder(folder)
    images = {p.name: p for p in frame_files(image_folder(folder))}
    done = labels.done_images()
    missing = [name for name in done if name not in images]
    if missing:
        raise LabelError(f"{folder}: labels name {missing[0]}, which is not in the folder")
    if not done:
        raise LabelError(
            f"{folder}: no labelled frame (mark them with `crowdwatch label {folder}`)"
        )
    frames = []
    for name in done:
        image = cv2.imread(str(images[name]), cv2.IMREAD_COLOR)
        if image is None:
            raise LabelError(f"{images[name]}: not a readable image")
        scale = min(1.0, MAX_SIDE / max(image.shape[:2]))
        if scale < 1.0:
            size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        points = tuple(
            np.asarray(labels.points(name, who) or [], np.float32).reshape(-1, 2) * scale
            for who in labels.annotators(name)
        )
        frames.append(LabelledFrame(name, np.asarray(image, np.uint8), points))
    return frames


def _tensor(image: NDArray[np.uint8]) -> torch.Tensor:
    height, width = padded_size(image.shape[:2])
    blob = torch.zeros(1, 3, height, width)
    rgb = torch.from_numpy(np.ascontiguousarray(image[:, :, ::-1])).float() / 255.0
    blob[0, :, : image.shape[0], : image.shape[1]] = rgb.permute(2, 0, 1)
    return blob


@torch.no_grad()
def backbone_features(net: DensityNet, image: NDArray[np.uint8]) -> Features:
    """The frozen backbone's maps of a BGR frame, zero-padded as the edge pads it (float16)."""
    p3 = net.to_p3(_tensor(image))
    p4 = net.to_p4(p3)
    p5 = net.to_p5(p4)
    return p3.half(), p4.half(), p5.half()


def decode(net: DensityNet, features: Features) -> torch.Tensor:
    """The decoder of :class:`DensityNet` on precomputed features (``forward`` minus backbone).

    ``tests/test_adapt.py`` checks this against ``net(image)``, so a change to the network that
    is not made here too fails there.
    """
    import torch.nn.functional as F  # noqa: N812 (the usual name)

    from crowdwatch.training.density_net import DENSITY_SCALE

    p3, p4, p5 = (f.float() for f in features)
    top = net.lateral5(p5)
    top = net.fuse4(F.interpolate(top, scale_factor=2.0, mode="nearest") + net.lateral4(p4))
    top = net.fuse3(F.interpolate(top, scale_factor=2.0, mode="nearest") + net.lateral3(p3))
    density: torch.Tensor = F.relu(net.head(top)) / DENSITY_SCALE
    return density


@dataclass(frozen=True, slots=True)
class FeatureFrame:
    """A frame's features, as seen and mirrored, with the cell targets of each.

    Attributes:
        targets: per view, the annotators' mean people per cell (``raw``, which the count term
            sums) and that blurred over ~3x3 cells (``blurred``, for the pixel term).
        valid: 1 on cells of the frame, 0 on the padding (which the edge crops off the map).
    """

    name: str
    count: float
    features: tuple[Features, Features]
    targets: tuple[tuple[NDArray[np.float32], NDArray[np.float32]], ...]
    valid: NDArray[np.float32]


def _blur(grid: NDArray[np.float32]) -> NDArray[np.float32]:
    # As train_counter's target: each head spread over ~3x3 cells; the count uses the raw sum.
    blurred = cv2.GaussianBlur(grid, (5, 5), sigmaX=1.0, borderType=cv2.BORDER_REFLECT)
    return np.asarray(blurred, dtype=np.float32)


def feature_frames(net: DensityNet, frames: list[LabelledFrame]) -> list[FeatureFrame]:
    """Backbone features of every frame and of its mirror image, computed once."""
    result = []
    for frame in frames:
        mirrored = np.ascontiguousarray(frame.image[:, ::-1])
        raw = (frame.target(), frame.target(mirror=True))
        valid = np.zeros_like(raw[0])
        rows, cols = (math.ceil(side / STRIDE) for side in frame.image.shape[:2])
        valid[:rows, :cols] = 1.0
        result.append(
            FeatureFrame(
                frame.name,
                frame.count,
                (backbone_features(net, frame.image), backbone_features(net, mirrored)),
                tuple((_blur(grid) * valid, grid) for grid in raw),
                valid,
            )
        )
    return result


def negative_bank(net: DensityNet, count: int, side: int, seed: int) -> list[Features]:
    """Backbone features of generated empty ground (sand, water, rock...), whose target is 0."""
    rng = np.random.default_rng(seed)
    return [backbone_features(net, ground_texture(side, side, rng)) for _ in range(count)]


def crop_features(features: Features, top: int, left: int, cells: int) -> Features:
    """The features of a square crop ``cells`` 1/8-cells wide at cell ``(top, left)``.

    ``top``, ``left`` and ``cells`` are multiples of 4, so the crop falls on 1/32 cells too.
    """
    p3, p4, p5 = features
    return (
        p3[:, :, top : top + cells, left : left + cells],
        p4[:, :, top // 2 : (top + cells) // 2, left // 2 : (left + cells) // 2],
        p5[:, :, top // 4 : (top + cells) // 4, left // 4 : (left + cells) // 4],
    )


def random_crop(
    frame: FeatureFrame, cells: int, rng: random.Random
) -> tuple[Features, NDArray[np.float32], NDArray[np.float32], float]:
    """A random crop of a frame's features (as seen or mirrored): features, blurred target,
    valid cells and the crop's count."""
    rows, cols = frame.valid.shape
    cells = min(cells, rows - rows % 4, cols - cols % 4)
    top = 4 * rng.randrange(0, (rows - cells) // 4 + 1)
    left = 4 * rng.randrange(0, (cols - cells) // 4 + 1)
    view = int(rng.random() < 0.5)
    blurred, raw = frame.targets[view]
    window = (slice(top, top + cells), slice(left, left + cells))
    return (
        crop_features(frame.features[view], top, left, cells),
        blurred[window],
        frame.valid[window],
        float(raw[window].sum()),
    )
