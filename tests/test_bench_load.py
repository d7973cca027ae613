"""``crowdwatch bench load`` runs end to end in a short mode and reports real measurements."""

from __future__ import annotations

import pytest
from services import MqttBroker, PgServer
from services.components import run_bench

pytestmark = pytest.mark.e2e

CAMERAS = 20


def test_bench_load_short_run_measures_every_process_and_ends_with_a_json_line(
    pg_server: PgServer, mqtt_broker: MqttBroker
) -> None:
    stdout, figures = run_bench(
        "load",
        *("--cameras", str(CAMERAS), "--minutes", "0.33", "--zones", "2"),
        timeout_s=280,
        pg_server=pg_server,
        mqtt_broker=mqtt_broker,
    )
    assert "highest camera count held" in stdout

    (step,) = figures["steps"]
    assert step["cameras"] == CAMERAS
    assert step["seconds"] >= 19
    # The ingest's own gauge, scraped twice a second: real values, not a constant.
    assert step["lag_samples"] >= 20
    assert 0 < step["lag_p50_s"] <= step["lag_p99_s"] <= step["lag_max_s"]
    # 20 cameras x (count + status) per second, as counted by the ingest.
    assert step["offered_msgs_per_s"] == 2 * CAMERAS
    assert 0.5 * 2 * CAMERAS < step["delivered_msgs_per_s"] < 1.5 * 2 * CAMERAS
    # Every probe either notified (a latency) or was lost; the baseline hop is measured too.
    assert step["alert_probes"] >= 10
    assert 0 < step["alert_p50_ms"] <= step["alert_p99_ms"]
    assert 0 < step["alert_baseline_p50_ms"] <= step["alert_baseline_p99_ms"]
    for path, web in step["web"].items():
        assert web["requests"] > 0, path
        assert web["errors"] == 0, path
        assert 0 < web["p50_ms"] <= web["p99_ms"], path
    assert set(step["web"]) >= {"/api/state", "/api/sites", "/api/alerts", "/healthz"}
    for name in ("ingest", "alerts", "web", "simulate", "mosquitto", "postgres"):
        process = step["processes"][name]
        assert process["cpu_percent"] is not None and process["cpu_percent"] >= 0, name
        assert process["mem_mb_max"] > 1, name
    # The verdict follows from the figures.
    assert step["held"] == (
        step["lag_p99_s"] < 2 and step["alert_p99_ms"] < 1000 and step["alert_lost"] == 0
        and step["delivered_ratio"] >= 0.95 and step["web_errors"] == 0
    )  # fmt: skip
    assert figures["held_cameras"] == (CAMERAS if step["held"] else 0)
