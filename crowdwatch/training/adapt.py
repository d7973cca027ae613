"""Teach the shipped crowd counter one camera from a few labelled frames, on the edge box's CPU.

    crowdwatch train counter --adapt DIR --camera SITE/CAM [--out models/cameras/SITE/CAM]

``DIR`` holds the camera's frames and their head marks (``crowdwatch capture`` then ``crowdwatch
label``; or a makesense.ai point export). The recipe is sized for minutes on two cores:

1. the starting counter (``--init``, default the shipped ``models/crowd_counter.onnx``) counts every
   labelled frame as the edge does (ONNX Runtime): the error to beat;
2. ``--method correction`` (and ``auto``): a gain per region of the frame, fitted on those maps
   (:mod:`crowdwatch.training.adapt_correction`), its grid chosen and its error measured by
   leave-one-out over every frame; seconds. Adopted, it is ``OUT/crowd_counter.onnx`` (the
   starting counter, copied) with ``OUT/crowd_counter.correction.json`` beside it, which the edge
   applies to every map of the camera (:mod:`crowdwatch.edge.density_correction`);
3. ``--method finetune`` (and ``auto``): the backbone stays as it is, and its features of each
   frame and its mirror image are computed once (:mod:`crowdwatch.training.adapt_data`); only
   the decoder (~0.1 M weights) trains, on crops of those features and of generated empty
   ground, with train_counter's loss. ``--folds`` K runs each keep one frame out, train on the
   others and count the one kept out: the leave-one-out error. ``--method
   finetune+correction`` (and ``auto``) also fits a correction on those folds' maps of the
   frames they kept out, for the fine-tuned counter;
4. ``auto`` keeps the method with the lowest leave-one-out error on the frames the folds kept
   out; a last run fits it on every frame. Its model is adopted (``OUT/crowd_counter.onnx``,
   which the camera's ``dense_model`` in the site config names) only when its leave-one-out
   error is clearly lower than the shipped counter's on the same frames; otherwise it stays
   ``OUT/candidate.onnx`` (and ``OUT/candidate.correction.json``) and the command exits 1.
   ``OUT/card.md`` and ``OUT/adapt.json`` record the figures and the decision either way.

``--minutes`` (default 20) bounds the whole run: a few timed steps plan how many steps every run
(each fold and the final one alike) gets to fit it, ``--steps`` at most.
``--score DIR2`` also counts another labelled folder of the same camera with both models (what
``tests`` and the model card use to show that adaptation carries over to other days).
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from crowdwatch.edge.dense import DensityMap
from crowdwatch.edge.density_correction import correction_path, save_correction
from crowdwatch.labeling.point_labels import LabelError
from crowdwatch.training.adapt_correction import CorrectionFit, fit_correction, region_counts
from crowdwatch.training.adapt_data import (
    FeatureFrame,
    Features,
    LabelledFrame,
    decode,
    feature_frames,
    load_labelled_frames,
    negative_bank,
    random_crop,
)
from crowdwatch.training.density_net import (
    STRIDE,
    DensityNet,
    export_onnx,
    load_onnx_weights,
    yolo_backbone,
)
from crowdwatch.training.train_counter import learning_rate, loss_terms

DECODER_PREFIXES = ("lateral", "fuse", "head")
"""The parameters adaptation trains; the backbone (``to_p*``) keeps the shipped weights."""
MIN_GAIN_PEOPLE = 0.5
MIN_GAIN_SHARE = 0.05
"""How much lower the leave-one-out MAE must be than the shipped counter's to adopt."""
NEGATIVE_SHARE = 0.125
"""One crop in eight is generated empty ground: what a beach camera mostly shows."""


@dataclass(frozen=True, slots=True)
class FrameResult:
    """One labelled frame: the annotators' mean, the shipped counter's and the adapted count."""

    name: str
    truth: float
    shipped: float
    adapted: float | None
    """Counted by a run that never saw the frame (its leave-one-out fold); ``None``: no fold."""


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether the adapted counter replaces the shipped one for this camera, and why."""

    adopt: bool
    reason: str
    shipped_mae: float | None
    adapted_mae: float | None


def decide(results: Sequence[FrameResult]) -> Decision:
    """Adopt only when the leave-one-out MAE is clearly below the shipped counter's on the same
    frames: lower by at least ``MIN_GAIN_PEOPLE`` and ``MIN_GAIN_SHARE`` of it (a few frames are
    a noisy measure, and a tie is no reason to replace a counter).

    Example:
        >>> decide([FrameResult("a", 10, 30, 12), FrameResult("b", 0, 8, 1)]).adopt
        True
        >>> decide([FrameResult("a", 10, 12, 20)]).reason
        "refused: leave-one-out MAE 10.0 is not clearly below the shipped counter's 2.0 on the same 1 frame(s)"
    """
    held = [r for r in results if r.adapted is not None]
    if not held:
        return Decision(
            False,
            "refused: no frame was kept out (label at least 2 frames, --folds >= 1), so nothing "
            "shows the adapted counter is better",
            None,
            None,
        )
    shipped = float(np.mean([abs(r.shipped - r.truth) for r in held]))
    adapted = float(np.mean([abs(float(r.adapted or 0.0) - r.truth) for r in held]))
    same = f"on the same {len(held)} frame(s)"
    if adapted <= shipped - max(MIN_GAIN_PEOPLE, MIN_GAIN_SHARE * shipped):
        reason = (
            f"adopted: leave-one-out MAE {adapted:.1f} < the shipped counter's {shipped:.1f} {same}"
        )
        return Decision(True, reason, shipped, adapted)
    reason = (
        f"refused: leave-one-out MAE {adapted:.1f} is not clearly below the shipped counter's "
        f"{shipped:.1f} {same}"
    )
    return Decision(False, reason, shipped, adapted)


def held_out_indices(frames: int, folds: int) -> list[int]:
    """Which frame each fold keeps out: spread evenly over the (sorted) frames.

    Example:
        >>> held_out_indices(10, 5), held_out_indices(3, 5), held_out_indices(1, 5)
        ([0, 2, 4, 6, 8], [0, 1, 2], [])
    """
    if frames < 2 or folds < 1:
        return []
    folds = min(folds, frames)
    return sorted({i * frames // folds for i in range(folds)})


PROBE_STEPS = 6
"""Steps timed before the folds (the first one, which allocates, is not counted)."""
BUDGET_SHARE = 0.9
"""Of the time left, what the planned steps may fill: the rest is margin for a busier box."""


def plan_steps(wanted: int, runs: int, step_s: float, left_s: float) -> int:
    """The steps every run gets: ``wanted``, or as many as ``runs`` runs fit in the time left,
    the same for each run.

    Every fold then trains as long as the final model does, so the folds' leave-one-out error
    (which decides adoption and ``auto``'s choice) measures the model that ships; when each run
    instead filled its share of the clock, a busy box gave the folds 2-3x fewer steps than the
    final run, and the choice between methods turned on the machine's load.

    Example:
        >>> plan_steps(500, 6, 0.25, 1200.0), plan_steps(500, 6, 0.5, 1200.0)
        (500, 360)
        >>> plan_steps(500, 6, 0.0, 1200.0), plan_steps(500, 6, 1.0, -5.0)
        (500, 0)
    """
    if step_s <= 0.0:
        return wanted
    return max(0, min(wanted, int(BUDGET_SHARE * left_s / (runs * step_s))))


def _decoder_parameters(net: DensityNet) -> list[torch.nn.Parameter]:
    chosen = []
    for name, parameter in net.named_parameters():
        trains = name.startswith(DECODER_PREFIXES)
        parameter.requires_grad_(trains)
        if trains:
            chosen.append(parameter)
    return chosen


def _batch(
    frames: Sequence[FeatureFrame],
    negatives: Sequence[Features],
    size: int,
    cells: int,
    rng: random.Random,
) -> tuple[Features, torch.Tensor, torch.Tensor, torch.Tensor]:
    features, targets, masks, counts = [], [], [], []
    for _ in range(size):
        if negatives and rng.random() < NEGATIVE_SHARE:
            features.append(rng.choice(negatives))
            zeros = np.zeros((cells, cells), np.float32)
            targets.append(zeros)
            masks.append(np.ones_like(zeros))
            counts.append(0.0)
            continue
        crop, target, mask, count = random_crop(rng.choice(frames), cells, rng)
        features.append(crop)
        targets.append(target)
        masks.append(mask)
        counts.append(count)
    stacked: Features = (
        torch.cat([f[0] for f in features]),
        torch.cat([f[1] for f in features]),
        torch.cat([f[2] for f in features]),
    )
    return (
        stacked,
        torch.from_numpy(np.stack(targets))[:, None],
        torch.from_numpy(np.stack(masks))[:, None],
        torch.tensor(counts, dtype=torch.float32),
    )


def train_decoder(
    net: DensityNet,
    frames: Sequence[FeatureFrame],
    negatives: Sequence[Features],
    args: argparse.Namespace,
    steps: int,
    budget_s: float,
    seed: int,
) -> int:
    """Train ``net``'s decoder in place on crops of ``frames``; returns the steps it took.

    The schedule (warm-up, cosine decay) follows whichever of ``steps`` and ``budget_s`` runs
    out first: the steps are planned to fit (:func:`plan_steps`), and the clock only cuts a run
    that the box slowed down after the plan, still annealed within its time.
    """
    rng = random.Random(seed)
    torch.manual_seed(seed)
    parameters = _decoder_parameters(net)
    optimiser = torch.optim.AdamW(parameters, lr=args.lr, weight_decay=1e-4)
    started = time.monotonic()
    warmup = max(1, steps // 10)
    step = 0
    net.train()
    while step < steps:
        progress = max(step / steps, (time.monotonic() - started) / max(budget_s, 1e-3))
        if progress >= 1.0:
            break
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(step, progress, args.lr, warmup=warmup)
        features, targets, masks, counts = _batch(frames, negatives, args.batch, args.cells, rng)
        pixel, count = loss_terms(decode(net, features), targets, masks, counts)
        loss = pixel + args.count_weight * count
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 10.0)
        optimiser.step()
        step += 1
    net.eval()
    return step


def time_step(
    base: DensityNet,
    frames: Sequence[FeatureFrame],
    negatives: Sequence[Features],
    args: argparse.Namespace,
) -> float:
    """Seconds one training step takes on this box now (median of ``PROBE_STEPS`` - 1)."""
    net = _fresh(base)
    times = []
    for step in range(PROBE_STEPS):
        begun = time.monotonic()
        train_decoder(net, frames, negatives, args, 1, 1e9, args.seed + 10_000 + step)
        times.append(time.monotonic() - begun)
    return float(np.median(times[1:]))


@torch.no_grad()
def map_frame(net: DensityNet, frame: FeatureFrame, shape: tuple[int, int]) -> DensityMap:
    """The frame's density map as the edge gets it (``shape``: the frame's height, width)."""
    from crowdwatch.edge.dense import FrameQuality

    density = decode(net, frame.features[0])[0, 0].numpy()
    rows, cols = -(-shape[0] // STRIDE), -(-shape[1] // STRIDE)
    cells = np.ascontiguousarray(density[:rows, :cols], dtype=np.float32)
    return DensityMap(cells, shape, FrameQuality(True, None))


def _shipped_maps(model: Path, frames: Sequence[LabelledFrame], threads: int) -> list[DensityMap]:
    from crowdwatch.edge.dense import DensityCounter

    counter = DensityCounter(model, threads=threads or None)
    # The model's own map: a correction fitted here replaces any beside --init, never stacks.
    counter.correction = None
    return [counter.density(frame.image) for frame in frames]


def _fresh(base: DensityNet) -> DensityNet:
    # A copy, not a reload: each fold starts from exactly the counter being adapted.
    net = copy.deepcopy(base)
    net.eval()
    return net


def _score_folder(folder: Path, models: dict[str, Path], threads: int) -> list[dict[str, object]]:
    """Counts of every labelled frame of ``folder`` by each model, with each annotator's count."""
    from crowdwatch.edge.dense import DensityCounter
    from crowdwatch.labeling.point_labels import load_folder

    frames = load_labelled_frames(folder)
    labels = load_folder(folder)
    counters = {
        name: DensityCounter(path, threads=threads or None) for name, path in models.items()
    }
    rows: list[dict[str, object]] = []
    for frame in frames:
        annotators = {who: labels.count(frame.name, who) for who in labels.annotators(frame.name)}
        row: dict[str, object] = {
            "image": frame.name,
            "truth": frame.count,
            "annotators": annotators,
        }
        for name, counter in counters.items():
            row[name] = round(counter.density(frame.image).total(), 2)
        rows.append(row)
    return rows


def _mae(counts: dict[int, float], frames: Sequence[LabelledFrame]) -> float | None:
    if not counts:
        return None
    return round(float(np.mean([abs(c - frames[i].count) for i, c in counts.items()])), 2)


METHODS = ("correction", "finetune", "finetune+correction")
"""What ``--method auto`` chooses among; on a tie the first (cheapest) is kept."""


def choose_method(
    method: str, held_out: dict[str, dict[int, float]], frames: Sequence[LabelledFrame]
) -> str:
    """``--method auto``: the lowest leave-one-out MAE on the frames the fine-tune kept out
    (the correction keeps out every frame, at no cost); the correction when the fine-tune kept
    none out.

    Example:
        >>> nobody = (np.zeros((0, 2), np.float32),)  # one annotator, no one marked: truth 0
        >>> frames = [LabelledFrame(str(i), np.zeros((8, 8, 3), np.uint8), nobody) for i in range(3)]
        >>> loo = {"correction": {0: 5.0, 1: 1.0, 2: 0.0}, "finetune": {0: 2.0, 2: 0.0},
        ...        "finetune+correction": {0: 3.0, 2: 0.0}}
        >>> choose_method("auto", loo, frames), choose_method("correction", loo, frames)
        ('finetune', 'correction')
        >>> choose_method("auto", {"correction": {0: 5.0, 1: 1.0}, "finetune": {}}, frames)
        'correction'
    """
    if method != "auto":
        return method
    _, errors = compare_methods(held_out, frames)
    if not errors:
        return "correction"
    return min(errors, key=lambda name: (errors[name], METHODS.index(name)))


def compare_methods(
    held_out: dict[str, dict[int, float]], frames: Sequence[LabelledFrame]
) -> tuple[list[int], dict[str, float]]:
    """The frames ``auto`` compares on (the fine-tune's kept-out ones, else the correction's)
    and each method's leave-one-out MAE there."""
    common = sorted(held_out.get("finetune") or held_out.get("correction") or {})
    errors = {
        name: _mae({i: held_out[name][i] for i in common}, frames) or 0.0
        for name in METHODS
        if common and all(i in held_out.get(name, {}) for i in common)
    }
    return common, errors


def _prepare(
    args: argparse.Namespace, frames: Sequence[LabelledFrame]
) -> tuple[DensityNet, list[FeatureFrame], list[Features]]:
    base = DensityNet(yolo_backbone(args.weights))
    load_onnx_weights(base, args.init)
    base.eval()
    cached = feature_frames(base, list(frames))
    smallest = min(min(f.valid.shape) for f in cached)
    args.cells = max(4, min(args.crop // 8, smallest - smallest % 4))
    negatives = negative_bank(base, args.negatives, args.cells * 8, args.seed)
    return base, cached, negatives


def _folds(
    args: argparse.Namespace,
    base: DensityNet,
    cached: list[FeatureFrame],
    negatives: list[Features],
    frames: Sequence[LabelledFrame],
    shipped: Sequence[float],
    adapted: dict[int, float],
    held_maps: dict[int, DensityMap],
    started: float,
) -> list[int]:
    """The fine-tune's leave-one-out folds; fills ``adapted`` (counts) and ``held_maps`` (maps)
    of the frames kept out, returns the steps of each."""
    budget_s = 60.0 * args.minutes
    held = held_out_indices(len(frames), args.folds)
    runs = len(held) + 1
    args.run_steps = args.steps
    if args.steps:
        step_s = time_step(base, cached, negatives, args)
        left_s = budget_s - (time.monotonic() - started)
        args.run_steps = plan_steps(args.steps, runs, step_s, left_s)
        print(
            f"{args.run_steps} steps for each of {runs} runs (a step takes {step_s:.2f} s "
            f"here, {left_s:.0f} s left of --minutes {args.minutes:g})",
            flush=True,
        )
    fold_steps = []
    for fold, index in enumerate(held):
        remaining = budget_s - (time.monotonic() - started)
        net = _fresh(base)
        others = [f for i, f in enumerate(cached) if i != index]
        steps = train_decoder(
            net, others, negatives, args, args.run_steps, remaining / (runs - fold),
            args.seed + fold,
        )  # fmt: skip
        held_maps[index] = map_frame(net, cached[index], frames[index].image.shape[:2])
        adapted[index] = held_maps[index].total()
        fold_steps.append(steps)
        print(
            f"fold {fold + 1}/{len(held)}: kept out {frames[index].name} (truth "
            f"{frames[index].count:.1f}): adapted {adapted[index]:.1f}, shipped "
            f"{shipped[index]:.1f} ({steps} steps)",
            flush=True,
        )
    return fold_steps


def adapt(args: argparse.Namespace) -> int:
    """Run the adaptation described by ``args``; returns the exit status (0 adopted, 1 refused)."""
    started = time.monotonic()
    budget_s = 60.0 * args.minutes
    if args.threads:
        torch.set_num_threads(args.threads)
    out: Path = args.out or Path("models") / "cameras" / args.site / args.camera_id
    out.mkdir(parents=True, exist_ok=True)
    frames = load_labelled_frames(args.adapt)
    maps = _shipped_maps(args.init, frames, args.threads)
    shipped = [m.total() for m in maps]
    corrected = fit_correction(region_counts(maps, frames))
    held = (
        f"leave-one-out MAE {_mae(corrected.held_out, frames)} against the shipped counter's "
        f"{_mae({i: shipped[i] for i in corrected.held_out}, frames)}"
        if corrected.held_out
        else "no frame to keep out"
    )
    print(f"{len(frames)} labelled frames; correction ({corrected.variant}): {held}", flush=True)
    tuned: dict[int, float] = {}
    tuned_maps: dict[int, DensityMap] = {}
    fold_steps: list[int] = []
    on_tuned: CorrectionFit | None = None
    if args.method != "correction":
        base, cached, negatives = _prepare(args, frames)
        print(f"features ready in {time.monotonic() - started:.0f} s", flush=True)
        fold_steps = _folds(
            args, base, cached, negatives, frames, shipped, tuned, tuned_maps, started
        )
    held_out: dict[str, dict[int, float]] = {"correction": corrected.held_out, "finetune": tuned}
    if tuned_maps:
        # The fine-tuned counter's own leftover errors, seen on frames it never trained on.
        kept = sorted(tuned_maps)
        on_tuned = fit_correction(
            region_counts([tuned_maps[i] for i in kept], [frames[i] for i in kept])
        )
        held_out["finetune+correction"] = {kept[k]: c for k, c in on_tuned.held_out.items()}
    method = choose_method(args.method, held_out, frames)
    adapted = held_out.get(method, {})
    common, compared = compare_methods(held_out, frames)
    results = [
        FrameResult(
            f.name,
            f.count,
            round(shipped[i], 2),
            None if i not in adapted else round(adapted[i], 2),
        )
        for i, f in enumerate(frames)
    ]
    decision = decide(results)
    candidate = out / "candidate.onnx"
    model = out / "crowd_counter.onnx"
    final_steps = 0
    correction_path(candidate).unlink(missing_ok=True)
    if method == "correction":
        shutil.copyfile(args.init, candidate)
    else:
        net = _fresh(base)
        remaining = budget_s - (time.monotonic() - started)
        final_steps = train_decoder(
            net, cached, negatives, args, args.run_steps, remaining, args.seed + 1000
        )
        export_onnx(net, candidate)
    fitted = corrected if method == "correction" else on_tuned
    if fitted is not None and method != "finetune":
        save_correction(
            correction_path(candidate),
            fitted.correction,
            {"variant": str(fitted.variant), "camera": f"{args.site}/{args.camera_id}",
             "fitted_on": str(args.adapt), "frames": len(frames), "method": method},
        )  # fmt: skip
    # An earlier adoption (model or correction) must not outlive a refusal or another method.
    model.unlink(missing_ok=True)
    correction_path(model).unlink(missing_ok=True)
    if decision.adopt:
        if correction_path(candidate).is_file():
            correction_path(candidate).replace(correction_path(model))
        candidate.replace(model)
    elapsed = time.monotonic() - started
    report: dict[str, object] = {
        "camera": f"{args.site}/{args.camera_id}",
        "labelled": str(args.adapt),
        "init": str(args.init),
        "frames": [asdict(r) for r in results],
        "method": method,
        "leave_one_out": {
            # What ``auto`` compared, on the same frames; the decision is in "decision".
            "compared_on": [frames[i].name for i in common],
            "shipped": _mae({i: shipped[i] for i in common}, frames),
            **compared,
        },
        "correction": None
        if fitted is None or method == "finetune"
        else {
            "variant": str(fitted.variant),
            "per_fold": {str(i): v for i, v in fitted.chosen_per_fold.items()},
            "gains": fitted.correction.gains.round(3).tolist(),
        },
        "decision": asdict(decision),
        # Each run's steps as planned to fit --minutes on this box (None: nothing fine-tuned).
        "planned_steps": getattr(args, "run_steps", None),
        "fold_steps": fold_steps,
        "final_steps": final_steps,
        "elapsed_s": round(elapsed, 1),
        "settings": {
            k: getattr(args, k)
            for k in (
                "method",
                "steps",
                "lr",
                "batch",
                "crop",
                "folds",
                "minutes",
                "seed",
                "count_weight",
            )
        },
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if args.score:
        models = {"shipped": args.init, "adapted": model if decision.adopt else candidate}
        report["scored"] = {
            "folder": str(args.score),
            "rows": _score_folder(args.score, models, args.threads),
        }
    (out / "adapt.json").write_text(json.dumps(report, indent=1) + "\n")
    from crowdwatch.training.adapt_card import write_card

    write_card(out / "card.md", report)
    print(decision.reason, flush=True)
    print(
        f"wrote {model if decision.adopt else candidate}, {out / 'card.md'} in {elapsed:.0f} s",
        flush=True,
    )
    return 0 if decision.adopt else 1


def add_arguments(parser: argparse.ArgumentParser, shared_dir: Path, shipped: Path) -> None:
    parser.add_argument("--adapt", type=Path, required=True, metavar="DIR", help="labelled frames")
    parser.add_argument("--camera", required=True, metavar="SITE/CAM", help="the camera they show")
    parser.add_argument("--out", type=Path, help="default models/cameras/SITE/CAM")
    parser.add_argument("--init", type=Path, default=shipped, help="the counter to adapt")
    parser.add_argument("--weights", type=Path, default=shared_dir / "models/yolo11n_coco.pt")
    parser.add_argument(
        "--method",
        choices=("auto", *METHODS),
        default="auto",
        help="correction: a gain per region of the frame (seconds); finetune: the decoder "
        "(minutes); finetune+correction: a correction of the fine-tuned counter; auto: "
        "whichever has the lowest leave-one-out error",
    )
    parser.add_argument("--steps", type=int, default=500, help="steps per run (each fold, final)")
    parser.add_argument("--folds", type=int, default=5, help="leave-one-out folds (0: none)")
    parser.add_argument("--minutes", type=float, default=20.0, help="time budget of the whole run")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--crop", type=int, default=256, help="crop side in pixels (x32)")
    parser.add_argument("--negatives", type=int, default=12, help="generated empty-ground crops")
    parser.add_argument("--count-weight", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch/ORT threads (0: default)")
    parser.add_argument(
        "--score", type=Path, metavar="DIR2", help="also count this labelled folder"
    )


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """The adaptation's arguments, checked; errors name the argument and the fix."""
    from crowdwatch.contracts.config import default_crowd_counter_path, default_shared_dir

    parser = argparse.ArgumentParser(prog="crowdwatch train counter --adapt")
    add_arguments(parser, default_shared_dir(), default_crowd_counter_path())
    args = parser.parse_args(argv)
    site, _, camera = args.camera.partition("/")
    if not site or not camera or "/" in camera:
        parser.error(f"--camera: expected SITE/CAM, e.g. beach-north/cam-1, got {args.camera!r}")
    args.site, args.camera_id = site, camera
    if args.steps < 0 or args.folds < 0 or args.minutes <= 0 or args.crop % 32 or args.crop < 64:
        parser.error("--steps/--folds >= 0, --minutes > 0, --crop a multiple of 32 of at least 64")
    for what, path in (("--init", args.init), ("--weights", args.weights)):
        if not path.is_file():
            parser.error(f"{what}: {path} not found")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    import sys

    args = parse(list(argv if argv is not None else sys.argv[1:]))
    try:
        return adapt(args)
    except LabelError as exc:
        print(f"crowdwatch train counter --adapt: error: {exc}", file=sys.stderr)
        return 2
