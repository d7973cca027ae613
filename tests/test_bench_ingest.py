"""``crowdwatch bench ingest`` runs end to end in a short mode and reports honest figures."""

from __future__ import annotations

import pytest
from services import MqttBroker, PgServer
from services.components import run_bench

pytestmark = pytest.mark.e2e


def test_bench_ingest_short_run_ends_with_a_json_line(
    pg_server: PgServer, mqtt_broker: MqttBroker
) -> None:
    _, figures = run_bench(
        "ingest",
        *("--cameras", "20", "--seconds", "7", "--zones", "3"),
        *("--messages", "400", "--repeats", "1", "--publishers", "2"),
        timeout_s=180,
        pg_server=pg_server,
        mqtt_broker=mqtt_broker,
    )

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
    cpu = throughput["cpu_us_per_message"]
    assert cpu["ingest"]["process"] > 0 and cpu["paho_ceiling"]["process"] > 0


def test_bench_ingest_drains_with_several_ingest_processes(
    pg_server: PgServer, mqtt_broker: MqttBroker
) -> None:
    _, figures = run_bench(
        "ingest",
        *("--skip", "soak", "--zones", "2", "--ingest-processes", "2"),
        *("--messages", "300", "--repeats", "1", "--publishers", "2"),
        timeout_s=240,
        pg_server=pg_server,
        mqtt_broker=mqtt_broker,
    )

    throughput = figures["throughput"]
    # The drain ends only when every accepted message's rows are in the database.
    assert throughput["rows"] == 300 * 2
    assert throughput["ingest_rows_per_s"] > 0
    assert throughput["cpu_us_per_message"]["ingest"]["process"] > 0
