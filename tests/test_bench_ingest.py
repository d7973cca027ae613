"""``crowdwatch bench ingest`` runs end to end in a short mode and reports honest figures."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from services import MqttBroker, PgServer

pytestmark = pytest.mark.e2e


def test_bench_ingest_short_run_ends_with_a_json_line(
    pg_server: PgServer, mqtt_broker: MqttBroker
) -> None:
    mqtt_broker.ensure_running()
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "crowdwatch", "--log-level", "WARNING", "bench", "ingest"),
            *("--database-url", pg_server.admin_url),
            *("--broker", f"{mqtt_broker.host}:{mqtt_broker.port}"),
            *("--cameras", "20", "--seconds", "7", "--zones", "3"),
            *("--messages", "400", "--repeats", "1", "--publishers", "2"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])

    throughput, soak = figures["throughput"], figures["soak"]
    assert throughput["rows"] == 400 * 3
    assert throughput["ingest_rows_per_s"] > 0
    assert throughput["copy_rows_per_s"] > 0
    # 20 cameras x 1 msg/s x 7 s, all acknowledged and all stored once.
    assert soak["messages_accepted"] >= 20 * 6
    assert soak["rows_written"] == soak["rows_expected"] == soak["messages_accepted"] * 3
    assert (soak["rows_lost"], soak["duplicate_rows"]) == (0, 0)
    assert soak["lag_samples"] > 0
    assert soak["rss_max_mb"] > 0
