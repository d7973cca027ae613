"""``crowdwatch eval --datasets beach_days``: the beach webcam per day, beside its annotators.

People who label the same beach frame disagree (25-60% on these days), so a count is scored
against the annotators' mean and shown beside the annotators' own error against that mean:
the honest ceiling is to be as close to the mean as a single annotator is. Per day:

- each annotator's mean count and MAE against the annotators' mean (their disagreement), and
  the pairwise MAE between two annotators;
- per counting method: MAE, bias and RMSE against the annotators' mean;
- whether the day is in the train split (:data:`~crowdwatch.evaluation.beach_days.TRAIN_DAYS`):
  for a counter trained on those days their figures are not results (the card says which
  days a counter saw; the shipped stage 3 counter saw none).

Example:
    >>> import numpy as np
    >>> from pathlib import Path
    >>> two = {"a": np.zeros((10, 2), np.float32), "b": np.zeros((20, 2), np.float32)}
    >>> frame = BeachFrame(Path("1660798800.jpg"), "2022-08-18", two)
    >>> row = score_beach_days([frame], {"dense": [14.0]})[0]
    >>> row.human_mae, row.methods["dense"].mae, row.held_out
    (5.0, 1.0, True)
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from crowdwatch.evaluation.beach_days import TRAIN_DAYS, BeachFrame
from crowdwatch.evaluation.scoring import CountErrors, count_errors

ALL_HELD_OUT = "held out"
"""The day label of the row that pools every held-out day."""


@dataclass(frozen=True, slots=True)
class AnnotatorFigures:
    """One annotator on one day: their mean count and MAE against the annotators' mean."""

    frames: int
    mean_count: float
    mae_vs_mean: float


@dataclass(frozen=True, slots=True)
class BeachDayRow:
    """The figures of one day (or of all held-out days pooled).

    Args:
        day: ``YYYY-MM-DD`` or :data:`ALL_HELD_OUT`.
        frames: frames of the day.
        held_out: not in the train split; ``False``: a day of the train split (no result for a
            counter trained on it).
        mean_truth: mean over frames of the annotators' mean count.
        annotators: per annotator, their own figures.
        pairwise_mae: MAE between the two annotators of a day with two (``None`` otherwise).
        methods: per counting method, its errors against the annotators' mean.
    """

    day: str
    frames: int
    held_out: bool
    mean_truth: float
    annotators: dict[str, AnnotatorFigures]
    pairwise_mae: float | None
    methods: dict[str, CountErrors]

    @property
    def human_mae(self) -> float | None:
        """The larger annotator MAE against the mean: the mark to beat (``None``: one annotator)."""
        if len(self.annotators) < 2:
            return None
        return max(figures.mae_vs_mean for figures in self.annotators.values())


def _row(
    day: str,
    frames: Sequence[BeachFrame],
    predictions: Mapping[str, Sequence[float]],
    held_out: bool,
) -> BeachDayRow:
    truth = [frame.mean_count for frame in frames]
    names = sorted({name for frame in frames for name in frame.points})
    annotators = {}
    for name in names:
        own = [(frame.counts[name], frame.mean_count) for frame in frames if name in frame.points]
        counts = [float(count) for count, _ in own]
        annotators[name] = AnnotatorFigures(
            frames=len(own),
            mean_count=float(np.mean(counts)),
            mae_vs_mean=count_errors(counts, [mean for _, mean in own]).mae,
        )
    pairwise = None
    if len(names) == 2:
        both = [frame for frame in frames if all(n in frame.points for n in names)]
        first, second = ([float(f.counts[n]) for f in both] for n in names)
        pairwise = count_errors(first, second).mae if both else None
    return BeachDayRow(
        day=day,
        frames=len(frames),
        held_out=held_out,
        mean_truth=float(np.mean(truth)),
        annotators=annotators,
        pairwise_mae=pairwise,
        methods={method: count_errors(counts, truth) for method, counts in predictions.items()},
    )


def score_beach_days(
    frames: Sequence[BeachFrame], predictions: Mapping[str, Sequence[float]]
) -> list[BeachDayRow]:
    """Per-day figures, then one row pooling every held-out day.

    Args:
        frames: the labelled frames.
        predictions: method name -> one count per frame, in the order of ``frames``.

    Returns:
        A row per day in date order, then the pooled held-out row (when there are held-out
        days among ``frames``).

    Raises:
        ValueError: a method has not one count per frame.
    """
    for method, counts in predictions.items():
        if len(counts) != len(frames):
            raise ValueError(
                f"{method}: expected {len(frames)} counts (one per frame), got {len(counts)}"
            )
    rows = []
    # Any day not trained on is held out (TEST_DAYS, or a day added to the data later).
    held = [i for i, frame in enumerate(frames) if frame.day not in TRAIN_DAYS]
    for day, members in itertools.groupby(
        sorted(range(len(frames)), key=lambda i: frames[i].day), key=lambda i: frames[i].day
    ):
        chosen = list(members)
        picked = {m: [counts[i] for i in chosen] for m, counts in predictions.items()}
        rows.append(_row(day, [frames[i] for i in chosen], picked, day not in TRAIN_DAYS))
    if len({frames[i].day for i in held}) > 1:
        picked = {m: [counts[i] for i in held] for m, counts in predictions.items()}
        rows.append(_row(ALL_HELD_OUT, [frames[i] for i in held], picked, True))
    return rows


def format_beach_table(rows: Sequence[BeachDayRow]) -> str:
    """The rows as text: one line per day and method, the annotators beside each day."""
    header = (
        f"{'day':<12}{'split':<12}{'n':>3}{'mean':>7}  {'method':<8}{'MAE':>7}{'bias':>8}"
        f"{'RMSE':>7}  annotators: count, MAE vs their mean"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        split = "held out" if row.held_out else "train split"
        people = ", ".join(
            f"{name} {figures.mean_count:.1f}, {figures.mae_vs_mean:.1f}"
            for name, figures in row.annotators.items()
        )
        if row.pairwise_mae is not None:
            people += f"; between them {row.pairwise_mae:.1f}"
        if row.human_mae is not None:
            people += f"; mark to beat {row.human_mae:.1f}"
        for i, (method, errors) in enumerate(row.methods.items()):
            lead = (
                f"{row.day:<12}{split:<12}{row.frames:>3}{row.mean_truth:>7.1f}"
                if i == 0
                else " " * 34
            )
            verdict = ""
            if row.human_mae is not None:
                verdict = "  (within human)" if errors.mae <= row.human_mae else "  (worse)"
            lines.append(
                f"{lead}  {method:<8}{errors.mae:>7.2f}{errors.bias:>+8.2f}{errors.rmse:>7.2f}"
                f"  {people if i == 0 else ''}{verdict}"
            )
    lines.append(
        "split: days of the train split are no result for a counter trained on them "
        "(models/crowd_counter.md says which days each counter saw)"
    )
    return "\n".join(lines)
