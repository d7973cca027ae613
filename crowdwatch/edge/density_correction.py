"""One camera's correction of its crowd counter: a gain per region of the frame.

A fixed camera's counter makes the same mistakes frame after frame in the same places (sand
ripples, foam, umbrellas read as people; far-off heads missed). ``crowdwatch train counter
--adapt`` fits, from the camera's labelled frames, a coarse grid of gains over the frame (``rows x
cols`` equal parts of its height and width) and writes it beside the camera's model as
``MODEL.correction.json``. :class:`crowdwatch.edge.dense.DensityCounter` multiplies every density
cell by the gain of the region holding the cell's centre, so zone counts, totals and the
plausibility checks all see the corrected map. Gains are never negative, so the map stays >= 0.

Fitting (numpy only, so it is tested without torch): per region, ``(truth + s * g0) / (counted +
s)`` summed over the labelled frames, where ``g0`` is the gain of the whole frame and ``s`` (in
people) shrinks regions with little evidence towards it.

Example:
    >>> counted = np.array([[[10.0, 30.0]], [[20.0, 10.0]]])  # 2 frames, 1 x 2 regions
    >>> truth = np.array([[[10.0, 0.0]], [[20.0, 0.0]]])  # the right half only misreads
    >>> fit_gains(counted, truth, strength=0.0).tolist()
    [[1.0, 0.0]]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from crowdwatch.contracts.errors import ModelError

MAX_GAIN = 4.0
"""A region's count is at most multiplied by this: more is a miss the counter cannot see."""


@dataclass(frozen=True, slots=True)
class DensityCorrection:
    """Gains over a ``rows x cols`` grid of equal parts of the frame.

    Example:
        >>> correction = DensityCorrection(np.array([[1.0, 0.5]], np.float32))
        >>> correction.apply(np.ones((2, 4), np.float32), (16, 32), (8.0, 8.0)).tolist()
        [[1.0, 1.0, 0.5, 0.5], [1.0, 1.0, 0.5, 0.5]]
    """

    gains: NDArray[np.float32]

    def __post_init__(self) -> None:
        gains = np.asarray(self.gains)
        if gains.ndim != 2 or not gains.size or not np.all(np.isfinite(gains)) or gains.min() < 0:
            raise ValueError(f"gains: expected a 2-D grid of finite gains >= 0, got {gains!r}")

    def cell_gains(
        self,
        grid_shape: tuple[int, int],
        frame_shape: tuple[int, int],
        cell_size: tuple[float, float],
    ) -> NDArray[np.float32]:
        """The gain of each density cell: that of the region holding the cell's centre."""
        rows, cols = (
            region_index(
                grid_shape[axis], frame_shape[axis], cell_size[axis], self.gains.shape[axis]
            )
            for axis in (0, 1)
        )
        return np.asarray(self.gains[np.ix_(rows, cols)], dtype=np.float32)

    def apply(
        self,
        cells: NDArray[np.float32],
        frame_shape: tuple[int, int],
        cell_size: tuple[float, float],
    ) -> NDArray[np.float32]:
        """The corrected density cells of one frame."""
        gains = self.cell_gains((cells.shape[0], cells.shape[1]), frame_shape, cell_size)
        return np.asarray(cells * gains, dtype=np.float32)


def region_index(cells: int, frame_side: int, cell_side: float, regions: int) -> NDArray[np.intp]:
    """Which of ``regions`` equal parts of a frame side each cell's centre falls in.

    Example:
        >>> region_index(4, 32, 8.0, 2).tolist(), region_index(3, 20, 8.0, 2).tolist()
        ([0, 0, 1, 1], [0, 1, 1])
    """
    centres = (np.arange(cells) + 0.5) * cell_side
    index = np.floor(np.minimum(centres, frame_side - 1e-6) / frame_side * regions)
    return np.asarray(np.clip(index, 0, regions - 1), dtype=np.intp)


def region_sums(
    cells: NDArray[np.float32],
    frame_shape: tuple[int, int],
    cell_size: tuple[float, float],
    regions: tuple[int, int],
) -> NDArray[np.float64]:
    """A density map's people per region of a ``regions`` grid."""
    rows = region_index(cells.shape[0], frame_shape[0], cell_size[0], regions[0])
    cols = region_index(cells.shape[1], frame_shape[1], cell_size[1], regions[1])
    sums = np.zeros(regions, np.float64)
    np.add.at(sums, (rows[:, None], cols[None, :]), cells.astype(np.float64))
    return sums


def point_sums(
    points: NDArray[np.float32], frame_shape: tuple[int, int], regions: tuple[int, int]
) -> NDArray[np.float64]:
    """People per region from head marks ``(N, 2)`` as ``(x, y)`` pixels of the frame."""
    sums = np.zeros(regions, np.float64)
    if len(points):
        ys = np.clip(np.floor(points[:, 1] / frame_shape[0] * regions[0]), 0, regions[0] - 1)
        xs = np.clip(np.floor(points[:, 0] / frame_shape[1] * regions[1]), 0, regions[1] - 1)
        np.add.at(sums, (ys.astype(np.intp), xs.astype(np.intp)), 1.0)
    return sums


def fit_gains(
    counted: NDArray[np.float64], truth: NDArray[np.float64], *, strength: float
) -> NDArray[np.float32]:
    """Gains per region from frames' counted and true people per region (``(frames, rows,
    cols)`` each), shrunk towards the whole frame's gain by ``strength`` people of evidence.

    Example:
        >>> fit_gains(np.full((1, 1, 2), 10.0), np.array([[[5.0, 15.0]]]), strength=10.0).tolist()
        [[0.75, 1.25]]
    """
    counted_sum, truth_sum = counted.sum(axis=0), truth.sum(axis=0)
    whole = float(truth_sum.sum()) / float(counted_sum.sum()) if counted_sum.sum() > 0 else 1.0
    whole = min(max(whole, 0.0), MAX_GAIN)
    with np.errstate(invalid="ignore", divide="ignore"):
        gains = (truth_sum + strength * whole) / (counted_sum + strength)
    # A region the counter never put anyone in keeps the whole frame's gain.
    gains = np.where(counted_sum + strength > 0, gains, whole)
    return np.asarray(np.clip(gains, 0.0, MAX_GAIN), dtype=np.float32)


def correction_path(model: Path) -> Path:
    """Where a model's correction lives: ``crowd_counter.onnx`` -> ``crowd_counter.correction.json``."""
    return model.with_suffix(".correction.json")


def save_correction(path: Path, correction: DensityCorrection, about: dict[str, object]) -> None:
    """Write a correction and what it was fitted on (``about``, for people reading it)."""
    gains = [[round(float(g), 4) for g in row] for row in correction.gains]
    path.write_text(json.dumps({"gains": gains, "about": about}, indent=1) + "\n")


def load_correction(model: Path) -> DensityCorrection | None:
    """The correction beside ``model``, ``None`` when there is none.

    Raises:
        ModelError: the file is there but is not a grid of gains.
    """
    path = correction_path(model)
    if not path.is_file():
        return None
    try:
        gains = np.asarray(json.loads(path.read_text())["gains"], dtype=np.float32)
        return DensityCorrection(gains)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(
            f"{path}: not a density correction ({exc}); rerun `crowdwatch train counter "
            "--adapt` or delete the file to count without it"
        ) from exc
