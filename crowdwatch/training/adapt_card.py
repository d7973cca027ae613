"""The model card of a camera's adapted counter, written from ``adapt.json``'s figures.

Every figure in it comes from the run's own report: the leave-one-out counts per labelled frame,
the decision, and, with ``--score``, each day of another labelled folder of the same camera scored
against the annotators' mean beside the annotators' own disagreement (the honest ceiling: a count
is as good as a second person's when it is as close to the mean as the annotators are).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np


def day_of(image: str) -> str:
    """The UTC day of a frame named by its unix time (as capture and the shared data name them).

    Example:
        >>> day_of("1660284000.jpg"), day_of("beach.jpg")
        ('2022-08-12', 'all')
    """
    stem = image.rsplit(".", 1)[0]
    if not stem.isdigit():
        return "all"
    return datetime.fromtimestamp(int(stem), UTC).date().isoformat()


def day_table(rows: Sequence[Mapping[str, Any]], models: Sequence[str]) -> list[dict[str, Any]]:
    """Per day: frames, mean truth, each model's MAE against the annotators' mean, and the
    largest annotator MAE against that mean (``None`` where one person labelled the day)."""
    days: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        days[day_of(str(row["image"]))].append(row)
    table = []
    for day in sorted(days):
        items = days[day]
        truth = np.array([float(r["truth"]) for r in items])
        entry: dict[str, Any] = {"day": day, "frames": len(items), "mean": float(truth.mean())}
        for model in models:
            entry[model] = float(
                np.mean(np.abs(np.array([float(r[model]) for r in items]) - truth))
            )
        annotators = sorted({who for r in items for who in r["annotators"]})
        human = None
        if all(len(r["annotators"]) >= 2 for r in items):
            human = max(
                float(np.mean([abs(r["annotators"][who] - float(r["truth"])) for r in items]))
                for who in annotators
            )
        entry["annotators"] = human
        table.append(entry)
    return table


def _figure(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _method(report: Mapping[str, Any]) -> str:
    correction = report.get("correction") or {}
    gains = (
        f"a gain per region of the frame ({correction.get('variant')}, chosen by leave-one-out "
        "on the labelled frames)"
    )
    if report["method"] == "correction":
        return f"{gains} applied to the starting counter's map"
    tune = (
        f"decoder fine-tune (backbone kept; crops of the frames' features and generated empty "
        f"ground); {report['fold_steps']} steps per leave-one-out fold, "
        f"{report['final_steps']} for the final model"
    )
    if report["method"] == "finetune":
        return tune
    return f"{tune}; then {gains} fitted on the folds' maps of the frames they kept out"


def write_card(path: Path, report: Mapping[str, Any]) -> None:
    """Write the card of one adaptation run."""
    decision = report["decision"]
    loo = report["leave_one_out"]
    lines = [
        f"# Adapted crowd counter: camera {report['camera']}",
        "",
        f"- **Decision**: {decision['reason']}.",
        f"- **Started from**: `{report['init']}`; labelled frames: `{report['labelled']}`.",
        f"- **Method**: {_method(report)}; settings {report['settings']}; "
        f"{report['elapsed_s']:.0f} s in all.",
        f"- **Methods compared** by leave-one-out MAE on the same "
        f"{len(loo['compared_on'])} frame(s): "
        + ", ".join(
            f"{name} {_figure(loo.get(name))}"
            for name in ("shipped", "correction", "finetune", "finetune+correction")
        )
        + " (– not run).",
        "",
        "## Leave-one-out on the labelled frames",
        "",
        "| frame | annotators' mean | shipped | adapted (frame kept out) |",
        "|---|---|---|---|",
    ]
    for frame in report["frames"]:
        lines.append(
            f"| {frame['name']} | {frame['truth']:.1f} | "
            f"{frame['shipped']:.1f} | {_figure(frame['adapted'])} |"
        )
    lines += [
        "",
        f"MAE on the frames kept out: shipped {_figure(decision['shipped_mae'])}, adapted "
        f"{_figure(decision['adapted_mae'])}.",
    ]
    scored = report.get("scored")
    if scored:
        table = day_table(scored["rows"], ["shipped", "adapted"])
        lines += [
            "",
            f"## Other days of this camera (`{scored['folder']}`, never trained on)",
            "",
            "MAE against the annotators' mean; *annotators*: the larger of the annotators' own MAE "
            "against that mean (– where one person labelled the day).",
            "",
            "| day | frames | mean | shipped | adapted | annotators |",
            "|---|---|---|---|---|---|",
        ]
        for entry in table:
            lines.append(
                f"| {entry['day']} | {entry['frames']} | {entry['mean']:.1f} | "
                f"{entry['shipped']:.1f} | {entry['adapted']:.1f} | {_figure(entry['annotators'])} |"
            )
    lines.append("")
    path.write_text("\n".join(lines))
