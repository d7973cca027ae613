"""The forecast backtest: the scoring by hand, then a run on simulated history."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from factories import write_config

from crowdwatch.cli import main
from crowdwatch.contracts.config import load_config
from crowdwatch.reports.backtest import STEP, score_day
from crowdwatch.simulator.history import fill_history

EXAMPLE = Path(__file__).resolve().parents[1] / "configs" / "district.example.yaml"
T = datetime(2025, 10, 3, 2)


def test_each_method_scored_by_hand() -> None:
    # today rises 10 people a 15 minutes; the reference day rose 8 (ratio then/now = 2)
    today = {T + STEP * i: 10.0 * i for i in range(9)}
    reference = {T + STEP * i + timedelta(days=-365): 8.0 * i for i in range(9)}
    errors = score_day(today, reference, timedelta(days=-365), 100, 60, 45, [T + STEP * 4])
    # now 40, truth at +60 min 80; persistence 40 off; last holiday 64 -> 16 off;
    # trend 40 + 0.667/min x 60 = 80 and holiday ratio 40 x 64/32 = 80: no error
    assert errors["persistence"] == [40.0]
    assert errors["last_holiday"] == [16.0]
    assert errors["forecast"] == [pytest.approx(0.0, abs=1e-9)]


def test_a_start_without_its_truth_or_reference_is_not_scored() -> None:
    today = {T + STEP * i: 10.0 * i for i in range(6)}  # nothing at +60 min of the last starts
    reference = {T + STEP * i: 8.0 * i for i in range(3)}  # reference ends early
    starts = [T + STEP * i for i in range(6)]
    errors = score_day(today, reference, timedelta(0), 100, 30, 45, starts)
    # only start 0 has the reference at +30 min, and one sample is no trend: nothing scored
    assert errors == {"forecast": [], "persistence": [], "last_holiday": []}


def test_backtest_command_on_simulated_history(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = load_config(EXAMPLE)
    days = [date(2024, 10, 2), date(2024, 10, 3), date(2025, 10, 2), date(2025, 10, 3)]
    fill_history(config, db_url, days, seed=1)
    path = write_config(config, tmp_path / "district.yaml")
    monkeypatch.setenv("CROWDWATCH_DATABASE_URL", db_url)
    code = main(
        ["reports", "backtest", "-c", str(path), "--day", "2025-10-02", "--until", "2025-10-03"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    methods = {(r[0], r[2]): int(r[3]) for r in rows}
    assert {m for _, m in methods} == {"forecast", "persistence", "last_holiday"}
    assert {h for h, _ in methods} == {"60", "120", "180"}
    for horizon in ("60", "120", "180"):  # every method scored on the same cases
        assert (
            len({methods[(horizon, m)] for m in ("forecast", "persistence", "last_holiday")}) == 1
        )
    assert "not a real beach" in out
