"""crowdwatch's own components, run for a test the way they run for real.

:class:`CrowdwatchProcess` is ``python -m crowdwatch ...`` as a process of its own (what an
operator starts, and what a fault test can SIGKILL); :func:`ingest_running` is ``run_ingest``
on a thread of the test; :func:`run_bench` runs one ``crowdwatch bench`` to its end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from crowdwatch.contracts.config import CrowdwatchConfig
from services.mosquitto import MqttBroker
from services.postgres import PgServer


class CrowdwatchProcess:
    """``python -m crowdwatch --log-level LEVEL ARGV...``, its output appended to ``log_path``.

    Args:
        argv: the command and its options (``["alerts", "--config", path]``).
        log_path: stdout and stderr of every start, one after the other.
        env: set on top of this process's environment (``CROWDWATCH_DATABASE_URL``, secrets).
        log_level: the ``--log-level`` option.
        prefix: what runs the command, e.g. ``["ip", "netns", "exec", NAME]`` to start it
            inside a network namespace (another "host").
    """

    def __init__(
        self,
        argv: list[str],
        log_path: Path,
        *,
        env: dict[str, str] | None = None,
        log_level: str = "INFO",
        prefix: list[str] | None = None,
    ) -> None:
        python = [sys.executable, "-m", "crowdwatch", "--log-level", log_level]
        self._args = [*(prefix or []), *python, *argv]
        self._env = {**os.environ, **(env or {})}
        self._log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self._log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self._args, stdout=log, stderr=subprocess.STDOUT, env=self._env
            )

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def poll(self) -> int | None:
        """The exit status, or None while it runs."""
        assert self._proc is not None
        return self._proc.poll()

    def kill(self) -> None:
        """SIGKILL: no clean stop, whatever it holds is left as it is."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGKILL)
        self._proc.wait()

    def terminate(self) -> int:
        """SIGTERM and wait (30 s, then SIGKILL); its exit status (-9 when it had to be killed)."""
        if self._proc is None or self._proc.poll() is not None:
            return self._proc.returncode if self._proc else 0
        self._proc.send_signal(signal.SIGTERM)
        try:
            return self._proc.wait(30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
            return -9

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of its log, for assertion messages."""
        return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def ingest_running(config: CrowdwatchConfig, name: str) -> Iterator[list[BaseException]]:
    """``run_ingest(config)`` on a thread named ``name`` until the block ends.

    Yields:
        What ``run_ingest`` raised (empty while it runs well); it is stopped and joined on exit.
    """
    from crowdwatch.ingest import run_ingest

    stop = threading.Event()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            run_ingest(config, stop)
        except BaseException as exc:  # pragma: no cover - reported by the test's assert
            errors.append(exc)

    worker = threading.Thread(target=serve, name=name)
    worker.start()
    try:
        yield errors
    finally:
        stop.set()
        worker.join()


def run_bench(
    benchmark: str,
    *args: str,
    timeout_s: float,
    pg_server: PgServer | None = None,
    mqtt_broker: MqttBroker | None = None,
) -> tuple[str, dict[str, Any]]:
    """Run ``crowdwatch bench BENCHMARK ARGS`` to its end; it must exit 0.

    Args:
        benchmark: ``load``, ``ingest``, ``dense``, ...
        args: its options.
        timeout_s: how long it may take.
        pg_server: given, the benchmark creates its scratch databases there.
        mqtt_broker: given (and started when stopped), the benchmark uses it.

    Returns:
        Its stdout, and the figures of its last line (one JSON object).
    """
    services: list[str] = []
    if pg_server is not None:
        services += ["--database-url", pg_server.admin_url]
    if mqtt_broker is not None:
        mqtt_broker.ensure_running()
        services += ["--broker", f"{mqtt_broker.host}:{mqtt_broker.port}"]
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "crowdwatch", "--log-level", "WARNING", "bench", benchmark),
            *services,
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout, json.loads(proc.stdout.strip().splitlines()[-1])
