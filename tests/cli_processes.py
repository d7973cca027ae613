"""Real ``crowdwatch`` processes for the end-to-end tests: how to start one, and a fixture that
stops them all and holds each to a clean exit."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

STOP_GRACE_S = 20.0
"""Seconds a process has to exit after SIGTERM; a test module may set its own
``STOP_GRACE_S`` (an edge busy with a detector on real footage needs longer)."""


def crowdwatch(*args: str) -> list[str]:
    """The command line of ``crowdwatch ARGS`` with this test run's Python."""
    return [sys.executable, "-m", "crowdwatch", *args]


@pytest.fixture
def processes(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """Started processes by name (logs in ``tmp_path/NAME.log``), stopped with SIGTERM
    afterwards; each must exit 0: a clean stop."""
    procs: dict[str, subprocess.Popen[bytes]] = {}
    yield procs
    grace = getattr(request.module, "STOP_GRACE_S", STOP_GRACE_S)
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    codes = {}
    for name, proc in procs.items():
        try:
            codes[name] = proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            codes[name] = proc.wait()
    bad = {n: c for n, c in codes.items() if c != 0}
    logs = "\n".join(f"--- {n}\n{(tmp_path / f'{n}.log').read_text()[-2000:]}" for n in bad)
    assert not bad, f"processes did not stop cleanly: {bad}\n{logs}"
