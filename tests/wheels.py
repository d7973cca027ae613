"""The built wheel and fresh virtual environments that install it, as a user's box would."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIP = [sys.executable, "-m", "pip"]


def build_wheel(out: Path) -> Path:
    """``crowdwatch-*.whl`` of this checkout, built into ``out`` (no isolated build env)."""
    subprocess.run(
        [*PIP, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    [built] = out.glob("crowdwatch-*.whl")
    return built


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without what would make a venv import this checkout or its config."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "CROWDWATCH_CONFIG")
    }
    env.update(extra)
    return env


@dataclass
class Venv:
    """A virtual environment with no pip of its own: this environment's pip installs into it."""

    path: Path
    extras: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, path: Path) -> Venv:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
        return cls(path)

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def install(self, wheel: Path, extras: str = "") -> None:
        """``pip install 'WHEEL[extras]'``, from the package index as a user's box does."""
        spec = f"{wheel}[{extras}]" if extras else str(wheel)
        done = subprocess.run(
            # --no-compile: byte-compiling SciPy and OpenCV's Python would double the time.
            [*PIP, "--python", str(self.python), "install", "-q", "--no-compile", spec],
            capture_output=True,
            text=True,
            # With PYTHONPATH on this checkout pip would take crowdwatch as installed already.
            env=clean_env(),
        )
        assert done.returncode == 0, f"pip install {spec} failed:\n{done.stderr[-3000:]}"
        if extras:
            self.extras.append(extras)

    def crowdwatch(
        self, *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run the installed ``crowdwatch`` command (the console script pip wrote)."""
        return subprocess.run(
            [str(self.path / "bin" / "crowdwatch"), *args],
            capture_output=True,
            text=True,
            cwd=cwd,
            env=env or clean_env(),
            timeout=timeout,
        )

    def run_python(
        self, code: str, *, cwd: Path, args: tuple[str, ...] = ()
    ) -> subprocess.CompletedProcess[str]:
        """``python -c CODE ARGS`` in the venv; ``cwd`` keeps this checkout off ``sys.path``."""
        return subprocess.run(
            [str(self.python), "-c", code, *args],
            capture_output=True,
            text=True,
            cwd=cwd,
            env=clean_env(),
            timeout=120,
        )
