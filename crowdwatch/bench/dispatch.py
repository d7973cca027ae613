"""``crowdwatch bench dispatch``: a simulated holiday afternoon at the terminus, with and
without dispatch recommendations.

It is a simulation (``crowdwatch/bench/_dispatch_sim.py``), not a measurement at a real stop:
passengers arrive by the simulator's bus_stop holiday curve, buses come by the timetable with
their capacity, and a dispatcher who follows the recommendation after ``--delay`` minutes sends
extra buses.  Figures: stranded passenger-minutes and the longest wait with and without,
each the mean over ``--runs`` seeds (the same arrivals on both sides of a seed).  The last
stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

SUMMARY = (
    "SIMULATION of a holiday afternoon at a terminus: stranded passenger-minutes and longest "
    "wait with and without dispatch recommendations"
)
EXTRAS = ("server",)  # crowdwatch.analytics brings the alert engine's database driver


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument(
        "--delay", type=float, default=3.0, help="minutes the dispatcher takes to act (default 3)"
    )
    parser.add_argument(
        "--peak", type=float, default=18.0, help="arrivals a minute at the peak (seats: 12/min)"
    )
    parser.add_argument("--fire-at", type=int, default=60, help="people waiting that alert")
    parser.add_argument("--target", type=float, default=15.0, help="clear within, minutes")
    parser.add_argument(
        "--count-error", type=float, default=0.1, help="camera count error, share (default 0.1)"
    )
    parser.add_argument("--runs", type=int, default=5, help="seeds averaged (default 5)")


def run(args: argparse.Namespace) -> int:
    from crowdwatch.bench._dispatch_sim import Policy, SimSettings, gain_pct, simulate

    if args.runs < 1 or args.delay < 0 or args.peak <= 0 or not 0 <= args.count_error < 1:
        print(
            "crowdwatch bench dispatch: need --runs >= 1, --delay >= 0, --peak > 0 and "
            "0 <= --count-error < 1",
            file=sys.stderr,
        )
        return 2
    runs: dict[Policy, list[dict[str, float | int]]] = {p: [] for p in Policy}
    for seed in range(args.runs):
        settings = SimSettings(
            peak_arrivals_per_min=args.peak,
            fire_at=args.fire_at,
            delay_min=args.delay,
            target_min=args.target,
            horizon_min=max(30.0, args.target),
            count_error=args.count_error,
            seed=seed,
        )
        for policy in Policy:
            runs[policy].append(simulate(settings, policy).figures())
    before, naive, after = (_mean(runs[p]) for p in Policy)
    figures = {
        "bench": "dispatch",
        "simulation": True,
        "afternoon": "14:00-20:00",
        "runs": args.runs,
        "delay_min": args.delay,
        "peak_arrivals_per_min": args.peak,
        "scheduled_seats_per_min": 12,
        "timetable_only": before,
        "one_bus_per_route_per_alert": naive,
        "with_recommendations": after,
        "stranded_passenger_min_saved_pct": gain_pct(
            float(before["stranded_passenger_min"]), float(after["stranded_passenger_min"])
        ),
        "stranded_vs_one_per_alert_pct": gain_pct(
            float(naive["stranded_passenger_min"]), float(after["stranded_passenger_min"])
        ),
        "longest_wait_saved_min": round(
            float(before["longest_wait_min"]) - float(after["longest_wait_min"]), 1
        ),
    }
    if not args.json:
        print(
            "SIMULATION (not measured at a real stop): a holiday afternoon at Xiwan Terminus,\n"
            f"K1 (80 seats, every 10 min) and K3 (60 seats, every 15 min), arrivals peaking at\n"
            f"{args.peak:g}/min by the simulator's bus_stop curve, dispatcher acting after "
            f"{args.delay:g} min; mean of {args.runs} seeds.\n"
        )
        print(f"{'':28}{'timetable only':>16}{'1 bus/route/alert':>19}{'recommendations':>17}")
        for key, label in (
            ("stranded_passenger_min", "stranded passenger-minutes"),
            ("longest_wait_min", "longest wait, min"),
            ("mean_wait_min", "mean wait, min"),
            ("extra_buses", "extra buses sent"),
            ("short_turns", "of which short turns"),
            ("passengers", "passengers"),
        ):
            print(f"{label:28}{before[key]:>16g}{naive[key]:>19g}{after[key]:>17g}")
        print(
            f"\nsimulated gain over the timetable alone: "
            f"{figures['stranded_passenger_min_saved_pct']:g}% fewer stranded passenger-minutes, "
            f"longest wait {figures['longest_wait_saved_min']:g} min shorter; over one bus per "
            f"route per alert: {figures['stranded_vs_one_per_alert_pct']:g}% fewer\n"
        )
    print(json.dumps(figures, separators=(",", ":")))
    return 0


def _mean(runs: list[dict[str, float | int]]) -> dict[str, float | int]:
    return {key: round(statistics.fmean(r[key] for r in runs), 1) for key in runs[0]}
