"""CPU and memory of the processes a benchmark drives, read from ``/proc`` (Linux).

A :class:`ProcessGroup` is one process, or a server and its children (PostgreSQL: the
postmaster and its backends, which come and go).  Its CPU time counts the children that
exited meanwhile too (the kernel adds a reaped child's time to its parent's ``cutime`` and
``cstime``), so a web request's short-lived backend is not lost.  Memory is the proportional
set size (PSS: shared pages split between the processes sharing them), so summing a server's
backends does not count its shared buffers once per backend.  Brokers and databases started
elsewhere are found by the TCP port they listen on, when ``/proc`` lets us see them.
:func:`stop_process` ends a process the benchmark started.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

_PROC = Path("/proc")
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_LISTEN = "0A"
"""The TCP state LISTEN in /proc/net/tcp."""


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM (a clean stop, as an operator's), then SIGKILL after ``timeout_s`` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _stat_fields(pid: int) -> list[str] | None:
    """``/proc/PID/stat`` from field 3 (state) on; the name in parentheses may hold spaces."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def cpu_seconds(pid: int, *, reaped_children: bool = False) -> float | None:
    """User + system CPU seconds of a process (and of its exited, reaped children)."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    ticks = int(fields[11]) + int(fields[12])
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _CLK_TCK


def memory_mb(pid: int) -> float | None:
    """Proportional set size in MB (``smaps_rollup``), else the resident set size."""
    for name, key in (("smaps_rollup", "Pss"), ("status", "VmRSS")):
        try:
            text = (_PROC / str(pid) / name).read_text()
        except OSError:
            continue
        match = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
        if match:
            return int(match.group(1)) / 1024
    return None


def children(pid: int) -> list[int]:
    """The live child processes of ``pid``."""
    found = []
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and fields[1] == str(pid):
                found.append(int(entry.name))
    return found


def listener_pid(port: int) -> int | None:
    """The process listening on TCP ``port`` on this machine, or None when not visible."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (_PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[3] == _LISTEN and int(parts[1].rpartition(":")[2], 16) == port:
                inodes.add(f"socket:[{parts[9]}]")
    if not inodes:
        return None
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if str(fd.readlink()) in inodes:
                    return int(entry.name)
            except OSError:
                continue
    return None


@dataclass
class ProcessGroup:
    """One process, or (``tree``) a server with its children, sampled over a window.

    Args:
        name: shown in the table (``ingest``, ``postgres``, ...).
        pids: the processes (several for the simulators); with ``tree`` each one's children
            are included.
        tree: include children, and the CPU time of children that exited meanwhile.
    """

    name: str
    pids: list[int]
    tree: bool = False
    _cpu_start: float | None = None
    _wall_start: float = 0.0
    _cpu_end: float | None = None
    _wall_end: float = 0.0
    _memory: list[float] = field(default_factory=list)

    def _cpu(self) -> float | None:
        total, seen = 0.0, False
        for pid in self.pids:
            own = cpu_seconds(pid, reaped_children=self.tree)
            if own is None:
                continue
            seen = True
            total += own
            if self.tree:
                total += sum(cpu_seconds(c) or 0.0 for c in children(pid))
        return total if seen else None

    def _mem(self) -> float | None:
        pids = list(self.pids)
        if self.tree:
            pids += [c for pid in self.pids for c in children(pid)]
        values = [m for m in (memory_mb(p) for p in pids) if m is not None]
        return sum(values) if values else None

    def start(self) -> None:
        """Begin the CPU window."""
        self._cpu_start, self._wall_start = self._cpu(), time.monotonic()

    def sample(self) -> None:
        """Record the memory now and move the end of the CPU window here."""
        mem = self._mem()
        if mem is not None:
            self._memory.append(mem)
        cpu = self._cpu()
        if cpu is not None:
            self._cpu_end, self._wall_end = cpu, time.monotonic()

    def cpu_used(self) -> float | None:
        """CPU seconds over the window (None when the process was never seen)."""
        if self._cpu_start is None or self._cpu_end is None:
            return None
        return self._cpu_end - self._cpu_start

    def figures(self) -> dict[str, float | int | None]:
        """CPU (% of one core over the window), memory max and last (MB), process count."""
        cpu = None
        wall = self._wall_end - self._wall_start
        if self._cpu_start is not None and self._cpu_end is not None and wall > 0:
            cpu = round(100 * (self._cpu_end - self._cpu_start) / wall, 1)
        return {
            "processes": len(self.pids),
            "cpu_percent": cpu,
            "mem_mb_max": round(max(self._memory), 1) if self._memory else None,
            "mem_mb_end": round(self._memory[-1], 1) if self._memory else None,
        }
