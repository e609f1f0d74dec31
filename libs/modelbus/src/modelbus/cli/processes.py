"""Starting and stopping the services in the background (``modelbus up/down/status``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from modelbus.bus.security import principal_env


@dataclass(frozen=True, slots=True)
class ServiceProcess:
    """One background service: its command, pid file and log file."""

    name: str
    args: tuple[str, ...]
    run_dir: Path
    cwd: Path | None = None
    """Working directory; relative paths in the service's settings resolve under it."""

    @property
    def pid_file(self) -> Path:
        """Where its pid is kept."""
        return self.run_dir / "pids" / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        """Where its output goes."""
        return self.run_dir / "logs" / f"{self.name}.log"

    def pid(self) -> int | None:
        """Its pid while it runs, else None."""
        try:
            pid = int(self.pid_file.read_text())
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        return pid

    def start(self, env: dict[str, str] | None = None) -> int:
        """Start it unless it runs; returns its pid."""
        running = self.pid()
        if running is not None:
            return running
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        if self.cwd is not None:
            self.cwd.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **principal_env(self.name), **(env or {})},
                start_new_session=True,
                cwd=self.cwd,
            )
        self.pid_file.write_text(str(process.pid))
        return process.pid

    def stop(self, timeout_s: float = 20.0) -> bool:
        """SIGTERM, then SIGKILL after ``timeout_s``; True if it was running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.pid() is not None:
            time.sleep(0.2)
        if self.pid() is not None:
            os.killpg(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True
