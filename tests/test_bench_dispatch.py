"""``crowdwatch bench dispatch``: the simulated afternoon, its invariants and its JSON line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from crowdwatch.bench._dispatch_sim import Policy, SimSettings, simulate


def test_every_policy_sees_the_same_passengers_and_accounts_for_each() -> None:
    settings = SimSettings(seed=3)
    outcomes = {policy: simulate(settings, policy) for policy in Policy}
    assert len({o.passengers for o in outcomes.values()}) == 1
    for outcome in outcomes.values():
        assert 0 < outcome.boarded <= outcome.passengers
        assert outcome.longest_wait_min > 0
    assert outcomes[Policy.TIMETABLE].extra_buses == 0
    assert outcomes[Policy.RECOMMENDATION].recommendations > 0


def test_recommendations_cut_stranded_minutes_and_a_slow_dispatcher_keeps_less() -> None:
    quick = SimSettings(seed=1, delay_min=0)
    slow = SimSettings(seed=1, delay_min=20)
    timetable = simulate(quick, Policy.TIMETABLE)
    followed = simulate(quick, Policy.RECOMMENDATION)
    late = simulate(slow, Policy.RECOMMENDATION)
    assert followed.stranded_passenger_min < timetable.stranded_passenger_min / 2
    assert followed.longest_wait_min < timetable.longest_wait_min
    assert followed.stranded_passenger_min < late.stranded_passenger_min


def test_demand_under_the_timetable_strands_few() -> None:
    # A quiet afternoon (at most 4 arrivals a minute against 12 seats): no extra bus is asked
    # for, and nobody waits past the next bus or two.
    outcome = simulate(SimSettings(seed=0, peak_arrivals_per_min=4), Policy.RECOMMENDATION)
    assert outcome.extra_buses == 0
    assert outcome.longest_wait_min <= 30


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crowdwatch", "bench", "dispatch", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_command_says_it_is_a_simulation_and_ends_with_json() -> None:
    result = bench("--runs", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("SIMULATION (not measured at a real stop)")
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["simulation"] is True
    assert set(figures) >= {"timetable_only", "one_bus_per_route_per_alert", "with_recommendations"}
    with_plan, without = figures["with_recommendations"], figures["timetable_only"]
    assert with_plan["passengers"] == without["passengers"]
    assert figures["stranded_passenger_min_saved_pct"] == pytest.approx(
        100 * (1 - with_plan["stranded_passenger_min"] / without["stranded_passenger_min"]), abs=0.1
    )


@pytest.mark.parametrize("args", [("--runs", "0"), ("--count-error", "1.5"), ("--delay", "-1")])
def test_bad_arguments_are_one_line(args: tuple[str, ...]) -> None:
    result = bench(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "need --runs >= 1" in result.stderr
