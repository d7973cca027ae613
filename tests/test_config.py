"""The site config refuses every mistake with one line naming the YAML path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from factories import config_dict, site_dict

from crowdwatch.contracts.config import SiteKind, load_config, parse_config
from crowdwatch.contracts.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_example_district_is_valid_and_complete() -> None:
    config = load_config(REPO / "configs" / "district.example.yaml")
    kinds = [s.kind for s in config.sites]
    assert kinds.count(SiteKind.BUS_STOP) >= 6
    assert kinds.count(SiteKind.ROAD) >= 2
    beaches = [s for s in config.sites if s.kind is SiteKind.BEACH]
    assert len(beaches) >= 4
    assert all(len(b.cameras[0].zones) >= 2 for b in beaches), "beaches are split into sections"
    real = [c for _, c in config.cameras() if not c.simulated]
    assert len(real) == 1 and real[0].source.endswith("pets2009_s2l1/vtest.avi")


def _mutate(path: str, value: Any) -> dict[str, Any]:
    """A valid config dict with one value replaced at a dotted path (``sites.0.capacity``)."""
    data = config_dict(site_dict())
    node: Any = data
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if key.isdigit() else node[key]
    last = keys[-1]
    if last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("sites.0.colour", "blue", r"sites\[0\]\.colour: unknown key"),
        (
            "sites.0.cameras.0.zones.0.polygon",
            [[0, 0], [10, 10]],
            r"sites\[0\]\.cameras\[0\]\.zones\[0\]\.polygon: a polygon needs at least 3 points, got 2",
        ),
        (
            "sites.0.cameras.0.zones.0.polygon",
            [[0, 0], [900, 0], [900, 500]],
            r"sites\[0\]\.cameras\[0\]: zone 'platform' has point \(900, 0\) outside the 768x576 frame",
        ),
        ("sites.0.capacity", 0, r"sites\[0\]\.capacity: Input should be greater than 0"),
        (
            "sites.0.cameras.0.zones.0.capacity",
            -5,
            r"zones\[0\]\.capacity: Input should be greater than 0",
        ),
        ("sites.0.id", "Stop A", r"sites\[0\]\.id: String should match pattern"),
        ("sites.0.kind", "airport", r"sites\[0\]\.kind: Input should be"),
        ("sites.0.location.lat", 123.0, r"sites\[0\]\.location\.lat: Input should be less than"),
        (
            "district.timezone",
            "Mars/Olympus",
            r"district\.timezone: unknown time zone 'Mars/Olympus'",
        ),
        (
            "alerts.rules.0.clear_at",
            0.9,
            r"alerts\.rules\[0\]: clear_at \(0\.9\) must not be above fire_at \(0\.8\)",
        ),
        ("detector.input_size", 650, r"detector\.input_size: input_size must be a multiple of 32"),
        ("sites.0.cameras.0.frame_size", [0, 576], r"frame_size: frame_size must be two positive"),
        (
            "sites.0.cameras.0.dense_model",
            "models/cameras/stop-a/cam1/crowd_counter.pt",
            r"sites\[0\]\.cameras\[0\]\.dense_model: expected the path of an \.onnx file",
        ),
    ],
)
def test_bad_config_names_the_yaml_path(path: str, value: Any, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        parse_config(_mutate(path, value), origin="district.yaml")


def test_duplicate_site_ids_are_refused() -> None:
    with pytest.raises(ConfigError, match="duplicate site id 'stop-a'"):
        parse_config(config_dict(site_dict(), site_dict()))


def test_rule_naming_unknown_site_is_refused() -> None:
    data = config_dict(site_dict())
    data["alerts"]["rules"][0]["sites"] = ["nowhere"]
    with pytest.raises(ConfigError, match=r"unknown site\(s\) \['nowhere'\]"):
        parse_config(data)


def test_real_camera_needs_a_detector() -> None:
    data = config_dict(site_dict(source="/videos/stop.mp4"))
    del data["detector"]
    with pytest.raises(ConfigError, match="'detector' section is required"):
        parse_config(data)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # One line that says where: PyYAML's own message spans lines and quotes the line.
        (
            "district: [unclosed",
            r"not valid YAML: line 1, column 20: expected ',' or ']', but got '<stream end>'$",
        ),
        ("a: b: c\n", "not valid YAML: line 1, column 5: mapping values are not allowed here$"),
        ("- just\n- a list\n", "expected a YAML mapping at the top, got list"),
    ],
)
def test_unreadable_files(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected):
        load_config(path)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read config"):
        load_config(tmp_path / "nope.yaml")


def test_environment_references(monkeypatch: pytest.MonkeyPatch) -> None:
    data = config_dict(site_dict(source="${CAMERA_URL}"))
    monkeypatch.setenv("CAMERA_URL", "rtsp://10.0.0.5/stream1")
    assert parse_config(data).sites[0].cameras[0].source == "rtsp://10.0.0.5/stream1"
    monkeypatch.delenv("CAMERA_URL")
    with pytest.raises(
        ConfigError,
        match=r"sites\[0\]\.cameras\[0\]\.source: environment variable CAMERA_URL is not set",
    ):
        parse_config(data)
    data = config_dict(site_dict(source="${CAMERA_URL:-/videos/default.mp4}"))
    assert parse_config(data).sites[0].cameras[0].source == "/videos/default.mp4"


def test_database_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    config = parse_config(config_dict())
    monkeypatch.delenv("CROWDWATCH_DATABASE_URL", raising=False)
    with pytest.raises(ConfigError, match="set CROWDWATCH_DATABASE_URL"):
        config.database.resolved_url()
    monkeypatch.setenv("CROWDWATCH_DATABASE_URL", "postgresql://db/crowd")
    assert config.database.resolved_url() == "postgresql://db/crowd"


def test_an_unknown_key_with_a_line_break_is_named_on_one_line() -> None:
    raw = config_dict()
    raw["alerts"]["rules"][0]["\n"] = None
    with pytest.raises(ConfigError, match=r"alerts\.rules\[0\]\.'\\n': unknown key$") as caught:
        parse_config(raw)
    assert "\n" not in str(caught.value)


BUS_LINE = {
    "id": "exit-bus",
    "name": {"zh": "出口公交", "en": "Exit buses"},
    "start": [0, 300],
    "end": [768, 300],
    "in_direction": [0, 1],
}


@pytest.mark.parametrize(
    ("line_classes", "camera_classes", "expected"),
    [
        (
            ["coach"],
            ["car", "bus"],
            r"sites\[0\]\.cameras\[0\]\.lines\[0\]: line 'exit-bus': unknown class 'coach' in "
            r"classes, expected one of person, bicycle, car, motorcycle, bus, truck",
        ),
        (
            ["bus"],
            ["person"],
            r"sites\[0\]\.cameras\[0\]: line 'exit-bus' counts bus, which the camera does not "
            r"detect; add it to the camera's classes \(person\) or remove it from the line",
        ),
        ([], ["car", "bus"], r"lines\[0\]\.classes: List should have at least 1 item"),
    ],
)
def test_a_line_by_class_names_the_line_and_the_allowed_classes(
    line_classes: list[str], camera_classes: list[str], expected: str
) -> None:
    data = _mutate("sites.0.cameras.0.lines", [{**BUS_LINE, "classes": line_classes}])
    data["sites"][0]["cameras"][0]["classes"] = camera_classes
    with pytest.raises(ConfigError, match=expected):
        parse_config(data, origin="district.yaml")


def test_a_line_by_class_is_accepted() -> None:
    data = _mutate("sites.0.cameras.0.lines", [{**BUS_LINE, "classes": ["bus"]}])
    data["sites"][0]["cameras"][0]["classes"] = ["car", "bus"]
    (line,) = parse_config(data).sites[0].cameras[0].lines
    assert [c.value for c in line.classes or []] == ["bus"]
