"""Small factories for real config and message values (no MagicMock: a mock accepts typos)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from crowdwatch.contracts.config import CrowdwatchConfig, parse_config
from crowdwatch.contracts.messages import CountMessage, ZoneCount

MODEL_PATH = "${CROWDWATCH_SHARED_DIR}/models/yolo11n_coco_640.onnx"


def site_dict(
    site_id: str = "stop-a", *, source: str = "simulated", capacity: int = 50
) -> dict[str, Any]:
    return {
        "id": site_id,
        "kind": "bus_stop",
        "name": {"zh": "甲站", "en": "Stop A"},
        "location": {"lat": 22.5, "lon": 114.5},
        "capacity": capacity,
        "department": "transport",
        "cameras": [
            {
                "id": "cam1",
                "source": source,
                "frame_size": [768, 576],
                "zones": [
                    {
                        "id": "platform",
                        "name": {"zh": "候车区", "en": "Platform"},
                        "polygon": [[0, 100], [768, 100], [768, 576], [0, 576]],
                        "capacity": capacity,
                    }
                ],
                "lines": [],
            }
        ],
    }


def config_dict(*sites: dict[str, Any]) -> dict[str, Any]:
    return {
        "district": {"id": "test", "name": {"zh": "测试区", "en": "Test District"}},
        "detector": {"model": MODEL_PATH},
        "alerts": {
            "rules": [
                {"id": "crowded", "metric": "occupancy_ratio", "fire_at": 0.8, "clear_at": 0.5}
            ]
        },
        "sites": list(sites) or [site_dict()],
    }


def make_config(raw: dict[str, Any] | None = None, **overrides: Any) -> CrowdwatchConfig:
    data = copy.deepcopy(raw) if raw is not None else config_dict()
    data.update(overrides)
    return parse_config(data, origin="test")


def count_message(
    site_id: str = "stop-a", camera_id: str = "cam1", count: int = 3, ts: datetime | None = None
) -> CountMessage:
    return CountMessage(
        site_id=site_id,
        camera_id=camera_id,
        ts=ts or datetime.now(UTC),
        interval_s=5.0,
        frames=50,
        zones=[
            ZoneCount(zone_id="platform", count=count, count_max=count, count_mean=float(count))
        ],
    )
