"""A road camera on real highway footage, as processes: `crowdwatch edge` on NGSIM US-101
frames → mosquitto → `crowdwatch ingest` → PostgreSQL, vehicles per zone in every row.

The detector runs with the road settings chosen on Sequence 1 (320 px tiles, confidence
0.1, vehicle classes merged: MAE 8.5 % of the mean over the sequence, see
``crowdwatch/evaluation/settings.py``); the edge counts vehicles apart from people.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import psycopg
import pytest
import yaml
from factories import MODEL_PATH, config_dict, road_dict

from crowdwatch.contracts.config import MqttConfig
from crowdwatch.evaluation.datasets import load_ngsim
from crowdwatch.evaluation.settings import ROAD_CONFIDENCE, ROAD_TILE

STOP_GRACE_S = 30.0
"""An edge running the detector on real footage may be mid-frame when SIGTERM comes."""

pytestmark = [pytest.mark.e2e, pytest.mark.data]

FRAMES = 20  # 2 s of Sequence 1 at 10 fps: two intervals


@pytest.fixture
def highway(shared_dir: Path, tmp_path: Path) -> tuple[Path, list[int]]:
    """The first frames of NGSIM Sequence 1 as a video file, and their vehicle counts."""
    data = load_ngsim(shared_dir, "Sequence1")
    clip = tmp_path / "us101.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (640, 480))
    try:
        for i in range(FRAMES):
            frame = cv2.imread(
                str(shared_dir / "data" / "ngsim_us101" / "Sequence1" / "images" / data.keys[i])
            )
            assert frame is not None and frame.shape[:2] == (480, 640)
            writer.write(frame)
    finally:
        writer.release()
    return clip, data.truths[:FRAMES]


def test_the_edge_publishes_vehicles_from_highway_footage(
    highway: tuple[Path, list[int]],
    processes: dict[str, subprocess.Popen[bytes]],
    tmp_path: Path,
    mqtt_config: MqttConfig,
    db_url: str,
) -> None:
    clip, truths = highway
    site = road_dict({"road_class": "expressway"}, site_id="road-us101")
    camera = site["cameras"][0]
    camera |= {
        "source": str(clip),
        "loop": True,
        "frame_size": [640, 480],
        "classes": ["car", "bus", "truck", "motorcycle"],
    }
    camera["zones"][0]["polygon"] = [[0, 0], [640, 0], [640, 480], [0, 480]]
    raw: dict[str, Any] = config_dict(site)
    raw["detector"] = {
        "model": MODEL_PATH,
        "confidence": ROAD_CONFIDENCE,
        "tiles": {"size": ROAD_TILE},
    }
    raw["mqtt"] = mqtt_config.model_dump()
    raw["database"] = {"url": db_url}
    raw["edge"] = {"interval_s": 1.0}
    config = tmp_path / "district.yaml"
    config.write_text(yaml.safe_dump(raw, allow_unicode=True))
    command = [sys.executable, "-m", "crowdwatch"]
    upgrade = subprocess.run(
        [*command, "db", "upgrade", "--config", str(config)], capture_output=True, text=True
    )
    assert upgrade.returncode == 0, upgrade.stderr
    env = {k: v for k, v in os.environ.items() if k != "CROWDWATCH_DATABASE_URL"}
    for name in ("ingest", "edge"):
        log = (tmp_path / f"{name}.log").open("wb")
        processes[name] = subprocess.Popen(
            [*command, name, "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()

    rows: list[tuple[Any, ...]] = []
    deadline = time.monotonic() + 240
    with psycopg.connect(db_url, autocommit=True) as conn:
        while len(rows) < 2 and time.monotonic() < deadline:
            time.sleep(1.0)
            rows = conn.execute(
                "SELECT count, vehicles, mean_speed_kmh FROM zone_counts"
                " WHERE site_id = 'road-us101' ORDER BY ts LIMIT 2"
            ).fetchall()
    assert len(rows) == 2, (tmp_path / "edge.log").read_text()[-2000:]
    # Each interval reports the vehicles of its last frame (9 and 19): no people on a highway
    # camera that counts vehicles, and no speed without a calibration.
    for (people, vehicles, speed), truth in zip(rows, (truths[9], truths[19]), strict=True):
        assert people == 0 and speed is None
        assert abs(vehicles - truth) <= max(3, 0.2 * truth), (vehicles, truth)
