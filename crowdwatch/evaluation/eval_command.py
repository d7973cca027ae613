"""``crowdwatch eval``: the counters against the ground truth of the shared data sets.

Prints table rows per data set and counting method (MAE, RMSE, MAE as % of the mean count,
bias, ms/frame): ``detect`` with the settings of :mod:`crowdwatch.evaluation.settings` (where
those were tuned on the even samples the odd, held-out, samples get their own row) and
``dense``, the density-map counter, on the samples it was not trained on (Mall: frames
641-800; detection gets a row on those frames too).  On request (``--methods ...,auto``)
``auto``: on the dense counter's samples, per frame the count a zone in ``mode: auto`` would
report, the edge's rule choosing between that frame's detection and density map (both runs
are reused, nothing counts twice).  ``beach_days`` (the beach webcam's labelled days) gets its
own table per day, against the annotators' mean and beside their own disagreement
(:mod:`crowdwatch.evaluation.beach_eval`).  Then the PETS line-crossing accuracy.
With ``--json`` the last stdout line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from crowdwatch.contracts.config import (
    DenseAutoConfig,
    DetectorConfig,
    default_crowd_counter_path,
    default_shared_dir,
)
from crowdwatch.contracts.errors import CrowdwatchError
from crowdwatch.edge.dense import DensityCounter
from crowdwatch.edge.detector import load_detector
from crowdwatch.edge.vehicles import VehicleDetector
from crowdwatch.evaluation.beach_days import TEST_DAYS, load_beach_frames
from crowdwatch.evaluation.beach_eval import BeachDayRow, format_beach_table, score_beach_days
from crowdwatch.evaluation.cli_arguments import (
    DATASETS,
    DEFAULT_METHODS,
    GENERATED,
    METHODS,
    VEHICLE_SETS,
)
from crowdwatch.evaluation.datasets import (
    LOADERS,
    CountDataset,
    DatasetMissing,
    Subset,
    pets_video,
)
from crowdwatch.evaluation.scoring import DatasetRun, run_auto, run_dataset, run_dense
from crowdwatch.evaluation.settings import (
    DENSE_TRAINING_FRAMES,
    HELD_OUT_SEQUENCES,
    TUNED_ON_EVEN,
    VEHICLE_DATASETS,
    describe,
    describe_dense,
    recommended_classes,
    recommended_detector,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EvalRow:
    """One line of the report: one counting method on some samples of one data set."""

    dataset: str
    method: str
    """``detect`` (people boxes), ``dense`` (density map) or ``auto`` (the edge's choice)"""
    subset: str
    numbers: str
    """first and last sample number scored (frame number, image number), e.g. ``641-800``"""
    settings: str
    frames: int
    mean_truth: float
    mae: float
    rmse: float
    mae_pct: float
    """MAE as a percentage of the mean true count"""
    bias: float
    fps: float
    ms_per_frame: float
    flagged: int
    """samples the counter judged unusable (dense only: dark, blurred...), scored anyway"""
    dense_frames: int | None = None
    """auto only: samples the rule counted by density map (the others by detection)"""


@dataclass(frozen=True, slots=True)
class Methods:
    """The counting methods to report, and the density model when ``dense`` or ``auto`` is one.

    ``auto`` needs both counters: they run even when their own rows are not reported.
    """

    names: tuple[str, ...]
    """in the order of :data:`~crowdwatch.evaluation.cli_arguments.METHODS`"""
    dense_model: Path | None

    @property
    def detect(self) -> bool:
        return "detect" in self.names

    @property
    def dense(self) -> bool:
        return "dense" in self.names

    @property
    def auto(self) -> bool:
        return "auto" in self.names


def choose_methods(args: argparse.Namespace) -> tuple[Methods, str | None]:
    """``--methods`` and ``--dense-model`` checked; a skip message when dense is left out.

    Without ``--methods`` detect and dense run when the density model exists, else detection
    only with a message.  Asking for ``dense`` or ``auto`` (or naming ``--dense-model``) with
    no model file is an error.

    Raises:
        CrowdwatchError: an unknown method, or the density model is not there.
    """
    explicit = args.methods is not None
    given = args.methods or ",".join(DEFAULT_METHODS)
    names = [m.strip() for m in given.split(",") if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if unknown or not names:
        raise CrowdwatchError(
            f"--methods: expected a comma-separated list of {', '.join(METHODS)}, "
            f"got {args.methods!r}"
        )
    model = Path(args.dense_model) if args.dense_model else default_crowd_counter_path()
    dense = "dense" in names or "auto" in names
    if dense and not model.is_file():
        if explicit or args.dense_model:
            raise CrowdwatchError(
                f"--dense-model: no density model at {model} (train one with "
                "`python -m crowdwatch.training.train_counter` or pass --dense-model PATH)"
            )
        return Methods(names=("detect",), dense_model=None), (
            f"dense: skipped, no density model at {model} (pass --dense-model PATH)"
        )
    chosen = tuple(m for m in METHODS if m in names)
    return Methods(names=chosen, dense_model=model if dense else None), None


def _override(config: DetectorConfig, args: argparse.Namespace) -> DetectorConfig:
    update: dict[str, Any] = {}
    if args.model:
        update["model"] = args.model
    if args.confidence is not None:
        update["confidence"] = args.confidence
    return DetectorConfig.model_validate({**config.model_dump(), **update}) if update else config


def _row(
    dataset: str, method: str, subset: str, settings: str, run: DatasetRun, numbers: set[int]
) -> EvalRow:
    """The errors of ``run`` over the samples ``numbers`` (of an ``auto`` run: what went dense)."""
    errors = run.errors(numbers=numbers)
    return EvalRow(
        dataset=dataset,
        method=method,
        subset=subset,
        numbers=f"{min(numbers)}-{max(numbers)}" if numbers else "",
        settings=settings,
        frames=errors.samples,
        mean_truth=round(errors.mean_truth, 2),
        mae=round(errors.mae, 3),
        rmse=round(errors.rmse, 3),
        mae_pct=round(100 * errors.mae / errors.mean_truth, 1) if errors.mean_truth else 0.0,
        bias=round(errors.bias, 3),
        fps=round(1000 / run.ms_per_frame, 2) if run.ms_per_frame else 0.0,
        ms_per_frame=round(run.ms_per_frame, 1),
        flagged=len(run.flagged & numbers),
        dense_frames=len(run.dense_picked & numbers) if method == "auto" else None,
    )


@dataclass(frozen=True, slots=True)
class BeachDaysReport:
    """``beach_days``: the per-day rows and, per frame, the annotators' counts and ours."""

    rows: list[BeachDayRow]
    frames: list[dict[str, Any]]


def evaluate(
    args: argparse.Namespace, shared_dir: Path
) -> tuple[list[EvalRow], list[str], Methods, BeachDaysReport | None]:
    """Run every requested data set and method.

    Returns:
        The rows, skip messages, methods and the ``beach_days`` report (when asked for).

    The dense counter is never scored on the samples it was trained on
    (:data:`~crowdwatch.evaluation.settings.DENSE_TRAINING_FRAMES`: Mall frames 1-640); where
    it skips some, detection gets one more row on exactly the dense counter's samples, so the
    two are also compared like for like.  ``auto`` is scored on the dense counter's samples,
    from the detection and dense runs of those samples (run even when not reported).
    """
    methods, skip = choose_methods(args)
    rows: list[EvalRow] = []
    skipped = [skip] if skip else []
    given = [n.strip() for n in args.datasets.split(",") if n.strip()]
    names = [part for n in given for part in VEHICLE_SETS.get(n, (n,))]
    for name in names:
        if name not in LOADERS:
            raise CrowdwatchError(
                f"--datasets: unknown data set {name!r}, expected one of "
                f"{', '.join(DATASETS + GENERATED + tuple(VEHICLE_SETS))}"
            )
    counter = DensityCounter(methods.dense_model) if methods.dense_model else None
    subset: Subset = args.subset
    beach: BeachDaysReport | None = None
    for name in names:
        try:
            dataset = LOADERS[name](shared_dir)
            if name == "beach_days":
                beach = _beach_days(dataset, args, shared_dir, methods, counter)
                continue
        except DatasetMissing as exc:
            skipped.append(f"{name}: skipped, {exc}")
            continue
        trained = DENSE_TRAINING_FRAMES.get(name, range(0))
        dense_indices = dataset.select(subset, args.limit, skip=trained) if counter else []
        dense_numbers = {dataset.numbers[i] for i in dense_indices}
        detect_run: DatasetRun | None = None
        if methods.detect or methods.auto:
            detect_rows, detect_run, detect_settings = _detect_rows(
                name, dataset, args, shared_dir, dense_indices
            )
            if methods.detect:
                rows.extend(detect_rows)
        if name in VEHICLE_DATASETS:
            if counter is not None:
                skipped.append(f"{name}: dense and auto skipped, the density map counts people")
        elif counter is not None and methods.dense_model is not None:
            dense_run = run_dense(dataset, counter, dense_indices)
            dense_settings = describe_dense(methods.dense_model)
            # The odd half is no held-out set for the dense counter (nothing tuned on even).
            label = (
                f"{'' if subset == 'all' else subset + ' '}not trained on" if trained else subset
            )
            if methods.dense:
                rows.append(_row(name, "dense", label, dense_settings, dense_run, dense_numbers))
            if methods.auto and detect_run is not None:
                # The rule of `crowdwatch count --mode auto` without a config: edge.dense.auto.
                auto_run = run_auto(detect_run, dense_run, DenseAutoConfig())
                settings = f"auto: {detect_settings} | {dense_settings}"
                rows.append(_row(name, "auto", label, settings, auto_run, dense_numbers))
        if rows:
            logger.info("%s: MAE %.3f over %d samples", name, rows[-1].mae, rows[-1].frames)
    return rows, skipped, methods, beach


def _beach_days(
    dataset: CountDataset,
    args: argparse.Namespace,
    shared_dir: Path,
    methods: Methods,
    counter: DensityCounter | None,
) -> BeachDaysReport:
    """Every requested method on the beach webcam's labelled days, scored per day."""
    frames = load_beach_frames(shared_dir)  # the order of ``dataset``
    indices = dataset.select(args.subset, args.limit)
    predictions: dict[str, list[float]] = {}
    auto_dense: frozenset[int] = frozenset()
    detect_run: DatasetRun | None = None
    if methods.detect or methods.auto:
        config = _override(recommended_detector(dataset.name, shared_dir / "models"), args)
        detect_run = run_dataset(dataset, load_detector(config), indices, config)
        if methods.detect:
            predictions["detect"] = detect_run.predicted
    if counter is not None:
        dense_run = run_dense(dataset, counter, indices)
        if methods.dense:
            predictions["dense"] = dense_run.predicted
        if methods.auto and detect_run is not None:
            auto_run = run_auto(detect_run, dense_run, DenseAutoConfig())
            predictions["auto"], auto_dense = auto_run.predicted, auto_run.dense_picked
    chosen = [frames[i] for i in indices]
    per_frame = [
        {
            "image": frame.path.name,
            "day": frame.day,
            "annotators": frame.counts,
            "mean": frame.mean_count,
            **{method: round(counts[i], 1) for method, counts in predictions.items()},
            **(
                {"auto_by": "dense" if dataset.numbers[indices[i]] in auto_dense else "detect"}
                if "auto" in predictions
                else {}
            ),
        }
        for i, frame in enumerate(chosen)
    ]
    return BeachDaysReport(score_beach_days(chosen, predictions), per_frame)


def _beach_json(report: BeachDaysReport) -> dict[str, Any]:
    rows = [{**asdict(row), "human_mae": row.human_mae} for row in report.rows]
    return {"rows": rows, "frames": report.frames}


def _print_beach(report: BeachDaysReport) -> None:
    print("\nbeach webcam per day, against the annotators' mean (beach_days):")
    print(format_beach_table(report.rows))
    picked = [f["auto_by"] for f in report.frames if "auto_by" in f]
    if picked:
        print(f"auto counted {picked.count('dense')} of {len(picked)} frames by density map")
    held = [f for f in report.frames if f["day"] in TEST_DAYS]
    if held:
        print("held-out frames (annotators' counts; mean; ours):")
        for frame in held:
            ours = ", ".join(
                f"{k} {v:g}" for k, v in frame.items() if k in ("detect", "dense", "auto")
            )
            people = "/".join(str(c) for c in frame["annotators"].values())
            print(f"  {frame['image']} {people}; {frame['mean']:g}; {ours}")


def _detect_rows(
    name: str,
    dataset: CountDataset,
    args: argparse.Namespace,
    shared_dir: Path,
    dense_indices: list[int],
) -> tuple[list[EvalRow], DatasetRun, str]:
    """The detection rows of one data set: the subset, its held-out half, the dense samples.

    Returns:
        The rows, the detection run (on the dense samples too, for ``auto``) and its settings.
    """
    config = _override(recommended_detector(name, shared_dir / "models"), args)
    detector = load_detector(config, classes=recommended_classes(name))
    settings = describe(config)
    if name in VEHICLE_DATASETS:
        detector = VehicleDetector(detector)  # one box per vehicle whatever its COCO class
        settings += " vehicles merged"
    subset: Subset = args.subset
    indices = dataset.select(subset, args.limit)
    # Detection also counts the dense counter's samples, so both are scored on the same ones
    # (and ``auto`` has both views of each); without --limit, or where the dense counter skips
    # nothing, they are among ``indices`` already and cost nothing.
    compare = name in DENSE_TRAINING_FRAMES and bool(dense_indices)
    run = run_dataset(dataset, detector, sorted(set(indices) | set(dense_indices)), config)
    chosen = {dataset.numbers[i] for i in indices}
    parts = [(subset, chosen)]
    if subset == "all" and name in TUNED_ON_EVEN:
        # the held-out half of a set the settings were tuned on
        parts.append(("odd", {n for n in chosen if n % 2}))
    rows = [
        _row(name, "detect", _subset_label(name, part), settings, run, numbers)
        for part, numbers in parts
    ]
    if compare:
        label = f"{'' if subset == 'all' else subset + ' '}as dense"
        numbers = {dataset.numbers[i] for i in dense_indices}
        rows.append(_row(name, "detect", label, settings, run, numbers))
    return rows, run, settings


def _subset_label(dataset: str, subset: str) -> str:
    if dataset in HELD_OUT_SEQUENCES and subset == "all":
        return HELD_OUT_SEQUENCES[dataset]
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
        f"{'data set':<16}{'method':<8}{'samples':<22}{'numbers':<10}{'n':>5}{'mean':>8}"
        f"{'MAE':>8}{'MAE %':>7}{'RMSE':>8}{'bias':>8}{'ms/frame':>10}  settings"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        flagged = f" ({r.flagged} flagged)" if r.flagged else ""
        dense = f" ({r.dense_frames}/{r.frames} dense)" if r.dense_frames is not None else ""
        lines.append(
            f"{r.dataset:<16}{r.method:<8}{r.subset:<22}{r.numbers:<10}{r.frames:>5}"
            f"{r.mean_truth:>8.1f}{r.mae:>8.2f}{r.mae_pct:>7.1f}{r.rmse:>8.2f}{r.bias:>+8.2f}"
            f"{r.ms_per_frame:>10.1f}  {r.settings}{dense}{flagged}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """``crowdwatch eval``: print the table (and the JSON line); 0 when something ran."""
    shared_dir = default_shared_dir()
    rows, skipped, methods, beach = evaluate(args, shared_dir)
    lines: list[dict[str, Any]] = []
    if not args.no_lines and not methods.detect:
        skipped.append("lines: skipped, line crossing follows detected people (--methods detect)")
    elif not args.no_lines:
        lines, skip = evaluate_lines(shared_dir, args.limit)
        if skip:
            skipped.append(skip)
    for message in skipped:
        print(message, file=sys.stderr)
    if rows:
        print(format_table(rows))
    if beach is not None:
        _print_beach(beach)
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
                    "methods": list(methods.names),
                    "dense_model": str(methods.dense_model) if methods.dense_model else None,
                    "datasets": [asdict(r) for r in rows],
                    "lines": lines,
                    "beach_days": _beach_json(beach) if beach is not None else None,
                    "skipped": skipped,
                }
            )
        )
    if not rows and not lines and beach is None:
        print(f"nothing evaluated: no data set found under {shared_dir / 'data'}", file=sys.stderr)
        return 1
    return 0
