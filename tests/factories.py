"""Small factories for real config and message values (no MagicMock: a mock accepts typos)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from crowdwatch.contracts.config import CrowdwatchConfig, parse_config
from crowdwatch.contracts.messages import CountMessage, ZoneCount

MODEL_PATH = "${CROWDWATCH_SHARED_DIR}/models/yolo11n_coco_640.onnx"
DENSITY_CELL = 8
"""Pixels per side of one cell of :func:`red_density_model`'s density map."""


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


def road_dict(road: dict[str, Any] | None = None, site_id: str = "road-tunnel") -> dict[str, Any]:
    """A road site (traffic police) with one simulated camera over its carriageway; ``road``
    is its ``road:`` settings (road class, own thresholds), none by default."""
    site = site_dict(site_id, capacity=300)
    site |= {
        "kind": "road",
        "department": "traffic_police",
        "name": {"zh": "隧道出口", "en": "Tunnel Exit"},
    }
    site["cameras"][0]["zones"][0] |= {
        "id": "carriageway",
        "name": {"zh": "车行道", "en": "Carriageway"},
    }
    if road is not None:
        site["road"] = road
    return site


APPROACH_CALIBRATION = {
    "image_points": [[0, 0], [768, 0], [768, 576], [0, 576]],
    "ground_points_m": [[0, 0], [15, 0], [15, 120], [0, 120]],
}
"""576 px of a road camera's picture are 120 m of road: a zone over rows 100-576 with its stop
line across the bottom is an approach 99.2 m long."""
APPROACH = {"approach": {"stop_line": [[0, 576], [768, 576]]}}


def approach_road_dict(site_id: str = "road-gate") -> dict[str, Any]:
    """A road whose carriageway ends at a stop line (``APPROACH``): 2 lanes, 99.2 m, holding
    30 vehicles at a standstill (6.7 m each), its capacity."""
    site = road_dict(site_id=site_id)
    camera = site["cameras"][0]
    camera["calibration"] = APPROACH_CALIBRATION
    camera["zones"][0] |= {"lanes": 2, "capacity": 30, **APPROACH}
    return site


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


def write_config(config: CrowdwatchConfig, path: Path) -> Path:
    """``config`` as the YAML file a ``crowdwatch`` process reads, without its database section.

    The process gets the URL from ``CROWDWATCH_DATABASE_URL``, as a deployment would.
    """
    raw: dict[str, Any] = config.model_dump(mode="json", by_alias=True, exclude_none=True)
    raw.pop("database", None)
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


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


def red_density_model(path: Path) -> Path:
    """Save a density model with a known answer: ``density = conv8x8/stride8(R) / 64``.

    Each 8x8 cell's density is the mean red level of its pixels (RGB in [0, 1]), free height
    and width, so a fully red cell holds exactly one person; that pins every count without
    depending on the trained network.  Needs the ``onnx`` package (tests importorskip it).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = np.zeros((1, 3, DENSITY_CELL, DENSITY_CELL), dtype=np.float32)
    weight[0, 0] = 1.0 / (DENSITY_CELL * DENSITY_CELL)  # channel 0 is red: the model reads RGB
    graph = helper.make_graph(
        [
            helper.make_node(
                "Conv", ["images", "w"], ["density"], strides=[DENSITY_CELL, DENSITY_CELL]
            )
        ],
        "red_density",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, "height", "width"])],
        [helper.make_tensor_value_info("density", TensorProto.FLOAT, [1, 1, "rows", "cols"])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
