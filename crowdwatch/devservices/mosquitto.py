"""A private mosquitto broker (tests, benchmarks), restartable for fault tests.

The broker keeps its port and its persistence file across :meth:`MosquittoBroker.stop` and
:meth:`MosquittoBroker.start`, so a client with a persistent session finds its queued
messages again after the "outage".
"""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from crowdwatch.devservices.host import (
    ServiceStartError,
    ServiceUnavailable,
    apt_install,
    free_port,
    running_as_root,
    tail_file,
    wait_for_port,
)

logger = logging.getLogger(__name__)

DEBIAN_BINARY = Path("/usr/sbin/mosquitto")
_START_TIMEOUT_S = 15.0
_STOP_TIMEOUT_S = 10.0
_START_ATTEMPTS = 3

_CONFIG = """\
listener {port} {host}
allow_anonymous true
persistence true
persistence_location {folder}/
persistence_file mosquitto.db
log_dest file {folder}/mosquitto.log
log_type error
log_type warning
log_type notice
log_type information
log_timestamp_format %Y-%m-%dT%H:%M:%S
# A persistent session must hold an ingest outage's worth of messages (default 1000 drops more).
max_queued_messages 1000000
"""


def find_binary() -> Path:
    """The Debian mosquitto, installing it when missing.

    Raises:
        ServiceUnavailable: not installed and cannot be installed.
    """
    if not DEBIAN_BINARY.exists():
        on_path = shutil.which("mosquitto")
        if on_path:
            return Path(on_path)
        apt_install("mosquitto")
    if not DEBIAN_BINARY.exists():
        raise ServiceUnavailable(f"mosquitto is not installed ({DEBIAN_BINARY} is missing)")
    return DEBIAN_BINARY


class MosquittoBroker:
    """mosquitto on 127.0.0.1 and a free port, from a temporary folder.

    Args:
        binary: the mosquitto executable.
    """

    host = "127.0.0.1"

    def __init__(self, binary: Path) -> None:
        self.binary = binary
        self.folder = Path(tempfile.mkdtemp(prefix="crowdwatch-mqtt-"))
        self.config_path = self.folder / "mosquitto.conf"
        self.log_path = self.folder / "mosquitto.log"
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the broker; after the first start, on the same port and persistence file.

        Raises:
            ServiceStartError: it exited or did not listen in time; the message has the log tail.
        """
        if self.running:
            return
        if self.port:
            self._launch()
            return
        for attempt in range(1, _START_ATTEMPTS + 1):
            self.port = free_port(self.host)
            try:
                self._launch()
                return
            except ServiceStartError:
                in_use = "Address already in use" in tail_file(self.log_path, 5)
                if not in_use or attempt == _START_ATTEMPTS:
                    self.port = 0
                    raise
                logger.warning("port %s was taken; retrying on another", self.port)

    def stop(self, *, kill: bool = False) -> None:
        """Stop the broker.

        Args:
            kill: SIGKILL, like a crash: no persistence save, no clean disconnects.
                By default SIGTERM, after which mosquitto saves its persistence file.
        """
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                proc.wait(_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                logger.warning("mosquitto ignored SIGTERM for %s s; killing it", _STOP_TIMEOUT_S)
                proc.kill()
                proc.wait()

    def ensure_running(self) -> None:
        """Start the broker again if a test stopped it and did not restart it."""
        if not self.running:
            logger.warning("the test broker was left stopped; restarting it")
            self.start()

    def close(self) -> None:
        """Stop the broker and remove its folder."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def _launch(self) -> None:
        self.config_path.write_text(
            _CONFIG.format(host=self.host, port=self.port, folder=self.folder)
            # Under root mosquitto would switch to its own user, who cannot write our folder.
            + ("user root\n" if running_as_root() else ""),
            encoding="utf-8",
        )
        # Messages from before the log file opens (config errors) go to the same log.
        with self.log_path.open("ab") as early_log:
            proc = subprocess.Popen(
                [str(self.binary), "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=early_log,
                stderr=subprocess.STDOUT,
                cwd=self.folder,
            )
        if not wait_for_port(self.host, self.port, _START_TIMEOUT_S, lambda: proc.poll() is None):
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            raise ServiceStartError(
                f"mosquitto exited with code {proc.returncode} instead of listening on "
                f"{self.host}:{self.port} (waited up to {_START_TIMEOUT_S:g} s)\n"
                f"--- {self.log_path} ---\n{tail_file(self.log_path)}"
            )
        self._proc = proc
        logger.info("private mosquitto on %s:%s in %s", self.host, self.port, self.folder)
