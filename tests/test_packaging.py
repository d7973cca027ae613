"""The wheel an edge box installs carries our crowd counter and finds it without a checkout."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from wheels import PIP, ROOT, build_wheel, clean_env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_the_wheel_carries_the_crowd_counter_and_its_card(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    data = "crowdwatch-0.1.0.data/data/share/crowdwatch/models/"
    assert data + "crowd_counter.onnx" in names
    assert data + "crowd_counter.md" in names
    packed = zipfile.ZipFile(wheel).getinfo(data + "crowd_counter.onnx").file_size
    assert packed == (ROOT / "models" / "crowd_counter.onnx").stat().st_size


def test_the_wheel_carries_the_label_page(wheel: Path) -> None:
    # `crowdwatch label` runs on an edge box installed from the wheel, with no checkout.
    assert "crowdwatch/labeling/static/label.html" in zipfile.ZipFile(wheel).namelist()


def test_an_installed_wheel_finds_its_own_copy_of_the_counter(wheel: Path, tmp_path: Path) -> None:
    env = tmp_path / "edge-box"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    python = env / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    subprocess.run(
        [*PIP, "--python", str(python), "install", "-q", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
        env=clean_env(),
    )
    # pydantic and PyYAML from this environment, appended after the box's own site-packages,
    # so `crowdwatch` is the installed wheel, not this checkout.
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    found = subprocess.run(
        [
            str(python),
            "-c",
            "import crowdwatch.contracts.config as c, sys;"
            " print(c.__file__); print(c.default_crowd_counter_path())",
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=clean_env(),  # PYTHONPATH on this checkout would shadow the installed wheel
    ).stdout.split()
    assert Path(found[0]).is_relative_to(site)
    assert Path(found[1]) == env / "share" / "crowdwatch" / "models" / "crowd_counter.onnx"
    assert Path(found[1]).read_bytes() == (ROOT / "models" / "crowd_counter.onnx").read_bytes()
