"""A road jam end to end on real processes: simulator → mosquitto → ingest → PostgreSQL →
alert engine → a real webhook receiver, each the `crowdwatch` command an operator starts.

The simulator plays a holiday morning from 08:00 at 600x (ten simulated minutes a second):
the inbound peak fills the tunnel exit, its vehicles' mean speed falls through the GB/T
33171-2016 levels, the congestion rule fires for the traffic police and resolves once the
peak has passed.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from cli_processes import crowdwatch
from factories import config_dict, road_dict
from sinks import HttpSink

from crowdwatch.contracts.config import MqttConfig

pytestmark = [pytest.mark.e2e]

KEY = "road-tunnel/carriageway/road-congested"


def start(procs: dict[str, subprocess.Popen[bytes]], tmp_path: Path, name: str, *args: str) -> None:
    log = (tmp_path / f"{name}.log").open("wb")
    procs[name] = subprocess.Popen(
        crowdwatch(name, *args),
        stdout=log,
        stderr=subprocess.STDOUT,
        env={k: v for k, v in os.environ.items() if k != "CROWDWATCH_DATABASE_URL"},
    )
    log.close()


@pytest.fixture
def road_district(
    tmp_path: Path, mqtt_config: MqttConfig, db_url: str, http_sink: HttpSink
) -> Iterator[Path]:
    raw: dict[str, Any] = config_dict(road_dict({"road_class": "arterial"}))
    raw["mqtt"] = mqtt_config.model_dump()
    raw["database"] = {"url": db_url}
    raw["edge"] = {"interval_s": 0.5}
    raw["alerts"] = {
        "evaluate_every_s": 0.3,
        "stale_after_s": 30,
        # The road kind's rule (moderate or worse), its 5 min pending period shortened to
        # real seconds: the alert engine's clock is the wall clock, not the simulator's.
        "rules": [
            {
                "id": "road-congested",
                "metric": "congestion_level",
                "fire_at": 4,
                "clear_at": 4,
                "for_s": 2,
                "severity": "warning",
                "site_kinds": ["road"],
            }
        ],
        "channels": [
            {"id": "police", "type": "webhook", "url": f"{http_sink.url}/police", "timeout_s": 2},
            {"id": "buses", "type": "webhook", "url": f"{http_sink.url}/buses", "timeout_s": 2},
        ],
        "routes": [
            {"departments": ["traffic_police"], "notify": ["police"]},
            {"departments": ["transport"], "notify": ["buses"]},
        ],
        "delivery": {"attempts": 3, "backoff_s": 0.05, "max_backoff_s": 0.2},
    }
    path = tmp_path / "district.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    yield path


def test_a_holiday_jam_reaches_the_traffic_police_and_clears(
    road_district: Path,
    processes: dict[str, subprocess.Popen[bytes]],
    tmp_path: Path,
    db_url: str,
    http_sink: HttpSink,
) -> None:
    upgrade = subprocess.run(
        crowdwatch("db", "upgrade", "--config", str(road_district)),
        capture_output=True,
        text=True,
    )
    assert upgrade.returncode == 0, upgrade.stderr
    config = ("--config", str(road_district))
    for name in ("ingest", "alerts"):
        start(processes, tmp_path, name, *config)
    start(processes, tmp_path, "simulate", *config, "--start", "08:00", "--speed", "600")

    # Fires during the morning peak (09:30 is 9 real seconds in), resolves as it passes.
    [firing, resolved] = http_sink.wait_for("/police", 2, timeout=90)
    logs = {n: (tmp_path / f"{n}.log").read_text()[-1500:] for n in ("alerts", "simulate")}
    assert firing.body["event"] == "firing", logs
    assert resolved.body["event"] == "resolved", logs
    [alert] = firing.body["alerts"]
    assert alert["alert_key"] == KEY
    assert alert["value"] >= 4  # moderate (中度拥堵) or severe
    assert "辆车" in alert["summary_zh"] and "km/h" in alert["summary_en"]
    assert resolved.body["alerts"][0]["value"] < 4
    assert http_sink.on("/buses") == []  # the transport department hears nothing of it

    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT vehicles, mean_speed_kmh, count FROM zone_counts"
            " WHERE site_id = 'road-tunnel' ORDER BY ts"
        ).fetchall()
        stored = conn.execute(
            "SELECT state, value FROM alerts WHERE alert_key = %s", (KEY,)
        ).fetchall()
    # What the alert read is what the road sent: vehicles with speeds, slow at the peak.
    assert rows and all(v is not None and s is not None and c == 0 for v, s, c in rows)
    assert min(s for _, s, _ in rows) <= 20 < max(s for _, s, _ in rows)
    assert stored and stored[0][0] == "resolved"
