"""Who uses the cores during a measurement: CPU time per process, from /proc (Linux).

A paced run reports, in cores (CPU seconds per second of wall time), what the broker, the
workers under test and the load generator (this process: producer and reader) used while it
ran, next to the whole machine's busy time. On 2 shared cores that says whether a level was
CPU-bound and for whom, instead of guessing it from the latencies.

It also reports the broker's JIT compiler threads apart ("broker_jit"): a freshly started
broker compiles its hot paths for minutes under load (on this machine, 0.7 cores in its first
15 s at 387 requests/s, under 0.03 cores after ~75 s), and a measurement taken meanwhile
measures the JVM warming up, not Kafka.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")
TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# /proc/stat's cpu line: user nice system idle iowait irq softirq steal; busy is all but idle
# and iowait.
BUSY_FIELDS = (0, 1, 2, 5, 6, 7)
JIT_THREADS = ("C1 CompilerThre", "C2 CompilerThre")  # HotSpot's names, cut to 15 characters


def process_cpu_s(pid: int, proc: Path = PROC) -> float | None:
    """User + system CPU seconds of a process (all its threads); None once it is gone."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S  # utime, stime


def jit_cpu_s(pid: int, proc: Path = PROC) -> float | None:
    """User + system CPU seconds of a JVM's JIT compiler threads (C1 and C2); None once the
    process is gone."""
    try:
        tasks = list((proc / str(pid) / "task").iterdir())
    except OSError:
        return None
    seconds = 0.0
    for task in tasks:
        try:
            if (task / "comm").read_text().startswith(JIT_THREADS):
                seconds += process_cpu_s(int(task.name), proc / str(pid) / "task") or 0.0
        except OSError:
            continue  # the thread ended between the listing and the read
    return seconds


def machine_busy_s(proc: Path = PROC) -> float | None:
    """CPU seconds every core of the machine spent busy since boot."""
    try:
        first = (proc / "stat").read_text().splitlines()[0].split()
    except OSError:
        return None
    return sum(int(first[1 + index]) for index in BUSY_FIELDS) / TICKS_PER_S


def broker_pid(port: int, proc: Path = PROC) -> int | None:
    """The local ``kafka.Kafka`` process whose server.properties listens on ``port``, if any
    (a broker in a container or on another host has none here)."""
    listens = re.compile(rf"^listeners=.*:{port}\b", re.MULTILINE)
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"kafka.Kafka" not in arguments:
            continue
        try:
            properties = Path(arguments[arguments.index(b"kafka.Kafka") + 1].decode())
            if listens.search(properties.read_text()):
                return int(entry.name)
        except (OSError, IndexError):
            continue
    return None


@dataclass
class CpuMeter:
    """CPU used by named groups of processes between ``start()`` and ``cores()``, and by the
    JIT compilers of the JVMs in ``jit_of`` (as ``<name>_jit``)."""

    groups: dict[str, list[int]]
    jit_of: dict[str, list[int]] = field(default_factory=dict)
    proc: Path = PROC
    _started: float = 0.0
    _before: dict[str, float | None] = field(default_factory=dict)

    def start(self) -> None:
        self._started = time.perf_counter()
        self._before = self._read()

    def cores(self) -> dict[str, float | None]:
        """name -> cores used on average since ``start()`` ("machine": all busy cores); None
        where a process could not be read at both ends."""
        elapsed = time.perf_counter() - self._started
        after = self._read()
        used: dict[str, float | None] = {}
        for name, then in self._before.items():
            now = after.get(name)
            used[name] = None if then is None or now is None else round((now - then) / elapsed, 2)
        return used

    def _read(self) -> dict[str, float | None]:
        read: dict[str, float | None] = {"machine": machine_busy_s(self.proc)}
        for name, pids in self.groups.items():
            read[name] = self._total(process_cpu_s, pids)
        for name, pids in self.jit_of.items():
            read[f"{name}_jit"] = self._total(jit_cpu_s, pids)
        return read

    def _total(self, cpu_s: Callable[[int, Path], float | None], pids: list[int]) -> float | None:
        """``cpu_s`` summed over ``pids``; None if there are none or one could not be read."""
        seconds = [cpu_s(pid, self.proc) for pid in pids]
        return None if not pids or None in seconds else sum(filter(None, seconds))
