"""Services as real processes: started with their environment, stopped by signal."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import httpx

from tests.support.packages import CONTRACT
from tests.support.waiting import NotYet, eventually

REPO = Path(__file__).resolve().parents[2]
TOKEN = "registry-test-token-0123456789"


def start_worker(
    bootstrap: str, model: str, *, index: int = 0, http_port: int = 0, **env: str
) -> subprocess.Popen[bytes]:
    """``python -m modelbus_inference run`` for one worker slot, as a real process."""
    environment = {
        **os.environ,
        "MODELBUS_BOOTSTRAP_SERVERS": bootstrap,
        "MODELBUS_INFERENCE_MODEL": model,
        "MODELBUS_INFERENCE_CONTRACT": CONTRACT,
        "MODELBUS_INFERENCE_HTTP_PORT": str(http_port),
        "MODELBUS_INFERENCE_SESSION_TIMEOUT_MS": "6000",
        # Most tests register a version and serve it with no deployer running.
        "MODELBUS_INFERENCE_SERVE_LATEST_WITHOUT_ROUTES": "true",
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "modelbus_inference", "run", "--worker-index", str(index)],
        env=environment,
        cwd=REPO,
    )


def stop_workers(workers: Iterable[subprocess.Popen[bytes]]) -> None:
    """SIGTERM, then SIGKILL after 20 s."""
    workers = list(workers)
    for worker in workers:
        if worker.poll() is None:
            worker.terminate()
    for worker in workers:
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


@contextlib.contextmanager
def service(
    module: str, env: dict[str, str], cwd: Path, *, ready: Callable[[], None] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m <module> run`` with ``env``, stopped by SIGTERM at the end; log in cwd."""
    log = cwd / f"{module}.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", module, "run"],
            env={**os.environ, **env},
            cwd=cwd,
            stdout=output,
            stderr=subprocess.STDOUT,
        )

    def alive_and_ready() -> None:
        if process.poll() is not None:
            raise RuntimeError(f"{module} exited with {process.returncode}:\n{log.read_text()}")
        if ready is not None:
            ready()

    try:
        eventually(alive_and_ready, timeout_s=120)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def http_ready(url: str) -> Callable[[], None]:
    """A readiness check: ``url`` answers 2xx."""

    def check() -> None:
        try:
            httpx.get(url, timeout=2).raise_for_status()
        except httpx.HTTPError as error:
            raise NotYet(str(error)) from error

    return check


def registry_env(
    bootstrap_servers: str, root: Path, *, port: int, tracking_uri: str, group_id: str
) -> dict[str, str]:
    """Environment of a registry process keeping everything under ``root``.

    Packages are admitted from anywhere under ``root``'s parent (the test's own folder).
    """
    return {
        "MODELBUS_REGISTRY_ARTIFACT_ROOTS": json.dumps([str(root.parent)]),
        "MODELBUS_BOOTSTRAP_SERVERS": bootstrap_servers,
        "MODELBUS_REGISTRY_DB_URL": f"sqlite:///{root / 'registry.db'}",
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MODELBUS_REGISTRY_PACKAGES_DIR": str(root / "packages"),
        "MODELBUS_REGISTRY_GROUP_ID": group_id,
        "MODELBUS_REGISTRY_PORT": str(port),
        "MODELBUS_REGISTRY_API_TOKEN": TOKEN,
    }
