"""``crowdwatch eval``: the counter against the ground truth of the shared data sets.

Prints one table row per data set (MAE, RMSE, bias, frames/s of detection) with the
settings of :mod:`crowdwatch.evaluation.settings`; where those were tuned on the even samples
the odd (held-out) samples get their own row.  Then the PETS line-crossing accuracy.  With
``--json`` the last stdout line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from crowdwatch.contracts.config import DetectorConfig, default_shared_dir
from crowdwatch.contracts.errors import CrowdwatchError
from crowdwatch.edge.detector import load_detector
from crowdwatch.evaluation.cli_arguments import DATASETS
from crowdwatch.evaluation.datasets import LOADERS, DatasetMissing, Subset, pets_video
from crowdwatch.evaluation.scoring import run_dataset
from crowdwatch.evaluation.settings import TUNED_ON_EVEN, describe, recommended_detector

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EvalRow:
    """One line of the report."""

    dataset: str
    subset: str
    settings: str
    frames: int
    mean_truth: float
    mae: float
    rmse: float
    bias: float
    fps: float
    ms_per_frame: float


def _override(config: DetectorConfig, args: argparse.Namespace) -> DetectorConfig:
    update: dict[str, Any] = {}
    if args.model:
        update["model"] = args.model
    if args.confidence is not None:
        update["confidence"] = args.confidence
    return DetectorConfig.model_validate({**config.model_dump(), **update}) if update else config


def evaluate(args: argparse.Namespace, shared_dir: Path) -> tuple[list[EvalRow], list[str]]:
    """Run every requested data set; returns the rows and the skip messages."""
    rows: list[EvalRow] = []
    skipped: list[str] = []
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    for name in names:
        if name not in LOADERS:
            raise CrowdwatchError(f"--datasets: unknown data set {name!r}, expected {DATASETS}")
        try:
            dataset = LOADERS[name](shared_dir)
        except DatasetMissing as exc:
            skipped.append(f"{name}: skipped, {exc}")
            continue
        config = _override(recommended_detector(name, shared_dir / "models"), args)
        detector = load_detector(config)
        subset: Subset = args.subset
        run = run_dataset(dataset, detector, dataset.select(subset, args.limit))
        subsets = [subset]
        if subset == "all" and name in TUNED_ON_EVEN:
            subsets.append("odd")  # the held-out half of a set the settings were tuned on
        for part in subsets:
            errors = run.errors(part)
            rows.append(
                EvalRow(
                    dataset=name,
                    subset=_subset_label(name, part),
                    settings=describe(config),
                    frames=errors.samples,
                    mean_truth=round(errors.mean_truth, 2),
                    mae=round(errors.mae, 3),
                    rmse=round(errors.rmse, 3),
                    bias=round(errors.bias, 3),
                    fps=round(1000 / run.ms_per_frame, 2) if run.ms_per_frame else 0.0,
                    ms_per_frame=round(run.ms_per_frame, 1),
                )
            )
        logger.info("%s: MAE %.3f over %d samples", name, rows[-1].mae, rows[-1].frames)
    return rows, skipped


def _subset_label(dataset: str, subset: str) -> str:
    if dataset not in TUNED_ON_EVEN:
        return subset
    return {"all": "all", "even": "even (tuned)", "odd": "odd (held out)"}[subset]


def evaluate_lines(shared_dir: Path, limit: int | None) -> tuple[list[dict[str, Any]], str | None]:
    """PETS line crossing through the edge's line counter; a skip message when impossible."""
    try:
        from crowdwatch.evaluation.lines import evaluate_pets_lines
    except ImportError as exc:  # the line evaluation is a separate piece of work
        return [], f"lines: skipped, crowdwatch.evaluation.lines is not available ({exc})"
    video = pets_video(shared_dir)
    if not video.is_file():  # before loading a model that may be absent too
        return [], f"lines: skipped, PETS 2009 video not found at {video}"
    detector = load_detector(recommended_detector("pets", shared_dir / "models"))
    try:
        results = evaluate_pets_lines(shared_dir, detector, max_frames=limit)
    except DatasetMissing as exc:
        return [], f"lines: skipped, {exc}"
    return [
        {**asdict(r), "in_error_pct": r.in_error_pct, "out_error_pct": r.out_error_pct}
        for r in results
    ], None


def format_table(rows: list[EvalRow]) -> str:
    """The rows as an aligned text table."""
    header = (
        f"{'data set':<16}{'samples':<20}{'n':>5}{'mean':>8}{'MAE':>8}{'RMSE':>8}"
        f"{'bias':>8}{'fps':>7}  settings"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r.dataset:<16}{r.subset:<20}{r.frames:>5}{r.mean_truth:>8.1f}{r.mae:>8.2f}"
            f"{r.rmse:>8.2f}{r.bias:>+8.2f}{r.fps:>7.1f}  {r.settings}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """``crowdwatch eval``: print the table (and the JSON line); 0 when something ran."""
    shared_dir = default_shared_dir()
    rows, skipped = evaluate(args, shared_dir)
    lines: list[dict[str, Any]] = []
    if not args.no_lines:
        lines, skip = evaluate_lines(shared_dir, args.limit)
        if skip:
            skipped.append(skip)
    for message in skipped:
        print(message, file=sys.stderr)
    print(format_table(rows))
    if lines:
        print("\nPETS line crossing (annotated tracks vs counted):")
        for item in lines:
            print(
                f"  {item['line_id']:<8} in {item['counted_in']}/{item['true_in']} "
                f"({item['in_error_pct']:.1f} %)  out {item['counted_out']}/{item['true_out']} "
                f"({item['out_error_pct']:.1f} %)"
            )
    if args.json:
        print(
            json.dumps(
                {
                    "shared_dir": str(shared_dir),
                    "datasets": [asdict(r) for r in rows],
                    "lines": lines,
                    "skipped": skipped,
                }
            )
        )
    if not rows and not lines:
        print(f"nothing evaluated: no data set found under {shared_dir / 'data'}", file=sys.stderr)
        return 1
    return 0
