"""Count calibration of an exported crowd counter, on its own training images.

Training sees 320 px crops; the edge runs the model on whole frames. The totals on whole frames
can sit a few percent off (the count term keeps crop totals right, not whole-image ones), so after
training one factor is fitted on the **training** images at full size, run exactly as the edge runs
them (:class:`~crowdwatch.edge.dense.DensityCounter`), and folded into the exported model. It
minimises the squared relative count error, so the sparse Mall and ShanghaiTech B images weigh as
much as the dense ShanghaiTech A ones. No evaluation image is read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from crowdwatch.edge.dense import DensityCounter
from crowdwatch.training.head_points import PointImage

MIN_GAIN = 0.005
"""Smallest drop of the mean relative MAE (half a percentage point) worth a factor."""


@dataclass(frozen=True, slots=True)
class Calibration:
    """The factor and what it does to each source's error on the training images."""

    factor: float
    before: dict[str, dict[str, float]]
    after: dict[str, dict[str, float]]

    def relative_mae(self, which: str) -> float:
        """The mean over sources of MAE / mean count, ``before`` or ``after`` the factor."""
        table = self.before if which == "before" else self.after
        return float(np.mean([e["mae"] / max(e["mean_truth"], 1.0) for e in table.values()]))

    @property
    def helps(self) -> bool:
        """Whether the factor lowers the sources' mean relative MAE by half a point or more.

        One factor cannot fix sources that err in opposite directions; then the network is
        shipped as trained rather than trading one scene's error for another's.
        """
        return self.relative_mae("after") <= self.relative_mae("before") - MIN_GAIN

    def summary(self) -> str:
        return json.dumps(
            {
                "factor": round(self.factor, 4),
                "applied": self.helps,
                "relative_mae_before": round(self.relative_mae("before"), 4),
                "relative_mae_after": round(self.relative_mae("after"), 4),
                "before": self.before,
                "after": self.after,
            }
        )


def _errors(predicted: Sequence[float], truth: Sequence[float]) -> dict[str, float]:
    diff = np.asarray(predicted) - np.asarray(truth)
    return {
        "mae": round(float(np.abs(diff).mean()), 2),
        "bias": round(float(diff.mean()), 2),
        "mean_truth": round(float(np.mean(truth)), 1),
    }


def fit_factor(predicted: Sequence[float], truth: Sequence[float]) -> float:
    """``f`` minimising ``sum(((f * p - t) / (t + 1)) ** 2)``; 1.0 when nothing was predicted."""
    p, t = np.asarray(predicted, dtype=float), np.asarray(truth, dtype=float)
    weight = 1.0 / (t + 1.0) ** 2
    denominator = float((weight * p * p).sum())
    return float((weight * p * t).sum() / denominator) if denominator > 0 else 1.0


def calibrate(
    counter: DensityCounter, sources: Mapping[str, Sequence[PointImage]], every: int = 1
) -> Calibration:
    """Run ``counter`` over every ``every``-th training image of each source and fit the factor."""
    predicted: dict[str, list[float]] = {}
    truth: dict[str, list[float]] = {}
    for name, samples in sources.items():
        for sample in samples[::every]:
            density = counter.density(sample.image)
            if sample.mask is None:
                predicted.setdefault(name, []).append(density.total())
            else:
                predicted.setdefault(name, []).append(density.in_mask(sample.mask))
            truth.setdefault(name, []).append(float(len(sample.points)))
    names = list(predicted)
    factor = fit_factor(
        [p for n in names for p in predicted[n]], [t for n in names for t in truth[n]]
    )
    return Calibration(
        factor=factor,
        before={n: _errors(predicted[n], truth[n]) for n in predicted},
        after={n: _errors([factor * p for p in predicted[n]], truth[n]) for n in predicted},
    )
