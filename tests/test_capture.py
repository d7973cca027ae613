"""`crowdwatch capture`: a camera's frames kept locally (never published), dead cameras in one line."""

from __future__ import annotations

import socket
import stat
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from factories import config_dict, make_config, site_dict, write_config

from crowdwatch.cli import main as crowdwatch_main
from crowdwatch.contracts.errors import SourceError
from crowdwatch.labeling.capture import capture, parse_every


def _clip(path: Path, frames: int = 6) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (320, 240))
    for index in range(frames):
        image = np.full((240, 320, 3), 30 * index, np.uint8)
        writer.write(image)
    writer.release()
    return path


def _config_file(tmp_path: Path, source: str) -> Path:
    site = site_dict("beach-a", source=source)
    site["cameras"][0]["frame_size"] = [320, 240]
    site["cameras"][0]["zones"][0]["polygon"] = [[0, 0], [320, 0], [320, 240]]
    site["cameras"][0]["stall_timeout_s"] = 2
    return write_config(make_config(config_dict(site)), tmp_path / "district.yaml")


def test_capture_keeps_frames_named_by_time_in_an_owner_only_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config_file(tmp_path, str(_clip(tmp_path / "clip.avi")))
    out = tmp_path / "frames" / "beach-a"
    status = crowdwatch_main(
        ["capture", "-c", str(config), "--camera", "beach-a/cam1", "--every", "0.01s", "--count", "3", str(out)]
    )  # fmt: skip
    assert status == 0
    frames = sorted(out.glob("*.jpg"))
    assert len(frames) == 3
    assert all(p.stem.split("-")[0].isdigit() for p in frames)  # unix time, as the shared data
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in frames)
    # Consecutive frames of the clip (each a different grey), as decoded.
    greys = sorted(float(cv2.imread(str(p)).mean()) for p in frames)
    assert greys == pytest.approx([0, 30, 60], abs=3)
    assert capsys.readouterr().out.strip() == f"kept 3 of 3 frames of beach-a/cam1 in {out}"


def test_capture_stops_at_the_end_of_a_file_and_says_so(tmp_path: Path) -> None:
    config = make_config(
        config_dict(site_dict("beach-a", source=str(_clip(tmp_path / "c.avi", 2))))
    )
    camera = config.sites[0].cameras[0]
    result = capture(
        "beach-a/cam1", camera, tmp_path / "out", every_s=0.01, count=5, stop=threading.Event()
    )
    assert len(result.saved) == 2 and result.missed == ["the video file has ended"]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{tmp}/missing.avi", "video file not found: .*missing.avi"),
        (
            "rtsp://admin:s3cret@127.0.0.1:{port}/stream1",
            r"camera beach-a/cam1: cannot open stream rtsp://admin:\*\*\*@127\.0\.0\.1:\d+/stream1.*"
            r"nothing captured — check that the camera is on",
        ),
    ],
    ids=["missing-file", "dead-stream"],
)
def test_a_dead_camera_is_one_line_and_keeps_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], source: str, expected: str
) -> None:
    config = _config_file(tmp_path, source.format(tmp=tmp_path, port=_closed_port()))
    out = tmp_path / "frames"
    status = crowdwatch_main(["capture", "-c", str(config), "--camera", "beach-a/cam1", str(out)])
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("crowdwatch capture: error: ")
    assert __import__("re").search(expected, err[0]), err[0]
    assert "s3cret" not in err[0]
    assert not out.exists() or not list(out.glob("*.jpg"))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--every", "soon"], "--every: expected a duration like 30m, 90s or 2h, got 'soon'"),
        (["--count", "0"], "--count: expected at least 1 frame, got 0"),
        (["--camera", "beach-a/cam9"], "unknown camera 'beach-a/cam9'"),
    ],
    ids=["every", "count", "camera"],
)
def test_bad_arguments_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    config = _config_file(tmp_path, str(_clip(tmp_path / "clip.avi")))
    base = ["capture", "-c", str(config), "--camera", "beach-a/cam1", str(tmp_path / "f")]
    assert crowdwatch_main(base[:-1] + args + base[-1:]) == 2
    assert expected in capsys.readouterr().err


def test_durations() -> None:
    assert [parse_every(t) for t in ("30m", "90s", "2h", "5")] == [1800, 90, 7200, 5]
    with pytest.raises(ValueError, match="got '0m'"):
        parse_every("0m")


def test_a_live_camera_that_sends_nothing_is_a_source_error(tmp_path: Path) -> None:
    config = make_config(
        config_dict(site_dict("beach-a", source=f"rtsp://127.0.0.1:{_closed_port()}/x"))
    )
    with pytest.raises(SourceError, match="nothing captured"):
        capture(
            "beach-a/cam1",
            config.sites[0].cameras[0],
            tmp_path,
            every_s=1,
            count=1,
            stop=threading.Event(),
        )
